#!/usr/bin/env bash
# Builds libFuzzer targets with clang in build-fuzz/ and runs each for SECONDS
# (default 60) from a seed corpus of valid inputs: fuzz_shard_reader's from
# fuzz_shard_seed, the others' written by the target itself into an empty
# corpus folder. Exit 0 when no input crashed any; a crashing input is kept in
# build-fuzz/crashes/NAME/, the log in build-fuzz/NAME.log.
# Usage: tests/fuzz/run.sh [SECONDS] [NAME...]   (default: fuzz_shard_reader)
set -euo pipefail
seconds=${1:-60}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fuzz_shard_reader)
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
targets=("${names[@]}")
for name in "${names[@]}"; do [ "$name" = fuzz_shard_reader ] && targets+=(fuzz_shard_seed); done
cmake --build $dir --target "${targets[@]}" >/dev/null
failed=0
for name in "${names[@]}"; do
  corpus=$dir/corpus/$name crashes=$dir/crashes/$name
  rm -rf "$corpus" "$crashes" && mkdir -p "$corpus" "$crashes"
  [ "$name" = fuzz_shard_reader ] && $dir/tests/fuzz/fuzz_shard_seed "$corpus"
  set +e
  $dir/tests/fuzz/$name "$corpus" -max_total_time="$seconds" -max_len=4096 \
    -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$crashes/" -print_final_stats=1 >$dir/$name.log 2>&1
  rc=$?
  set -e
  echo "== $name"
  grep -E "^#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|ERROR|SUMMARY" $dir/$name.log || true
  echo "corpus: $(ls "$corpus" | wc -l) inputs"
  # libFuzzer exits non-zero and leaves an artifact when an input crashed it.
  if [ $rc -ne 0 ] || ls "$crashes"/* >/dev/null 2>&1; then
    echo "fuzz: $name crashed (exit $rc); inputs in $crashes/, log in $dir/$name.log"
    failed=1
  fi
done
[ $failed -eq 0 ] || exit 1
echo "fuzz: no crash in $seconds s each (${names[*]})"
