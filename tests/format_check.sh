#!/usr/bin/env bash
# The checked-in .clang-format holds for every C++ and CUDA file of the tree:
# fails naming each file that clang-format would change, and how to fix it.
# Usage: format_check.sh REPO_ROOT
set -euo pipefail
cd "$1"
if ! command -v clang-format >/dev/null; then
  echo "format_check: clang-format is not installed; launch/setup.sh --tests installs it" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
if ((${#files[@]} == 0)); then
  echo "format_check: no C++ files found under $1 (not a git checkout?)" >&2
  exit 1
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  printf 'not formatted: %s\n' "${bad[@]}" >&2
  echo "format_check: run: clang-format -i ${bad[*]}" >&2
  exit 1
fi
echo "format_check: ${#files[@]} files follow .clang-format ($(clang-format --version | head -n 1))"
