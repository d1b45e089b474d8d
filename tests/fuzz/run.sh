#!/usr/bin/env bash
# Builds the shard reader's libFuzzer target with clang in build-fuzz/ and runs
# it for SECONDS (default 60) from a seed corpus of valid shards. Exit 0 when
# no input crashed it; a crashing input is kept in build-fuzz/crashes/.
# Usage: tests/fuzz/run.sh [SECONDS]
set -euo pipefail
seconds=${1:-60}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
command -v clang++ >/dev/null || { echo "fuzz: clang++ is not installed (apt-get install clang)"; exit 77; }
probe=$(mktemp -d)
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe/p.cpp"
clang++ -fsanitize=fuzzer,address "$probe/p.cpp" -o "$probe/p" 2>/dev/null ||
  { rm -rf "$probe"; echo "fuzz: clang++ cannot link libFuzzer (apt-get install libclang-rt-dev)"; exit 77; }
rm -rf "$probe"
dir=build-fuzz
if [ ! -f $dir/build.ninja ]; then
  prefix=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  CC=clang CXX=clang++ cmake -S . -B $dir -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOXIE_FUZZ=ON \
    -DMOXIE_TESTS=OFF -DMOXIE_WITH_CUDA=OFF -DCMAKE_PREFIX_PATH="$prefix" >$dir.log 2>&1 ||
    { cat $dir.log; exit 1; }
fi
cmake --build $dir --target fuzz_shard_reader fuzz_shard_seed >/dev/null
rm -rf $dir/corpus && mkdir -p $dir/corpus $dir/crashes
$dir/tests/fuzz/fuzz_shard_seed $dir/corpus
set +e
$dir/tests/fuzz/fuzz_shard_reader $dir/corpus -max_total_time="$seconds" -max_len=4096 \
  -rss_limit_mb=2048 -timeout=10 -artifact_prefix=$dir/crashes/ -print_final_stats=1 >$dir/fuzz.log 2>&1
rc=$?
set -e
grep -E "^#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|ERROR|SUMMARY" $dir/fuzz.log
# libFuzzer exits non-zero and leaves an artifact when an input crashed it.
if [ $rc -ne 0 ] || ls $dir/crashes/* >/dev/null 2>&1; then
  echo "fuzz: crashed (exit $rc); inputs in $dir/crashes/, log in $dir/fuzz.log"; exit 1
fi
echo "fuzz: no crash in $seconds s"
