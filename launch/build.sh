#!/usr/bin/env bash
# Configures (once) and builds moxie in build/ with Ninja and ccache.
# Usage: launch/build.sh [ninja targets...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# ccache across precompiled headers needs these; the cache survives fresh clones.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Paths relative to the clone, so a fresh clone elsewhere hits the same cache.
export CCACHE_BASEDIR="$root"

if [ ! -f build/build.ninja ]; then
  prefix=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  mkdir -p build
  echo "[build] configuring build/ (log: build/cmake.log)"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    -DMOXIE_PYTHON="$root/.venv/bin/python" >build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
fi
cmake --build build -- "$@"
