#!/usr/bin/env bash
# The moxie command line: bad input gives one clear message and exit code 2,
# good input works. Usage: cli_test.sh MOXIE_BINARY REPO_ROOT
set -u
moxie="$1"
root="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

cat >"$tmp/typo.yaml" <<'Y'
model:
  dmodel: 64
Y
cat >"$tmp/bad_type.yaml" <<'Y'
moe:
  top_k: two
Y
cat >"$tmp/impossible.yaml" <<'Y'
moe:
  num_experts: 4
  top_k: 6
Y
printf 'model: [1, 2\n' >"$tmp/syntax.yaml"

expect 2 "model.dmodel.*did you mean 'model.d_model'" -- train "$tmp/typo.yaml"
expect 2 "moe.top_k" -- train "$tmp/bad_type.yaml"
expect 2 "moe.top_k.*moe.num_experts" -- train "$tmp/impossible.yaml"
expect 2 "syntax.yaml" -- train "$tmp/syntax.yaml"
expect 2 "nope.yaml" -- train "$tmp/nope.yaml"
expect 2 "unknown command 'trian'" -- trian configs/tiny.yaml
expect 2 "needs a CONFIG" -- train
expect 2 "unknown option '--steps'" -- train "$root/configs/tiny.yaml" --steps 3
expect 2 "model.d_modle.*did you mean" -- config "$root/configs/tiny.yaml" --set model.d_modle=3
expect 2 "--set needs a value" -- config "$root/configs/tiny.yaml" --set
expect 0 "d_model: 256" -- config "$root/configs/tiny.yaml" --set model.d_model=256
expect 2 "train.device.*one of: cpu, cuda" -- config "$root/configs/tiny.yaml" --set train.device=gpu
# A GPU run where none is visible (CI): one clear error naming the key, no crash.
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect 2 "train.device=cuda, but no CUDA device is visible.*train.device=cpu" -- \
    train "$root/configs/tiny.yaml" --set train.device=cuda --set train.run_dir="$tmp/cuda-run"
fi
# A data path that does not exist: a runtime error naming it, exit 1, no crash.
expect 1 "$tmp/no-corpus" -- train "$root/configs/tiny.yaml" --set data.path="$tmp/no-corpus" --set train.run_dir="$tmp/run"

expect 2 "needs -n N" -- launch "$root/configs/tiny.yaml"
expect 2 "must be a positive integer" -- launch -n zero "$root/configs/tiny.yaml"
# A real two-rank run through the mpirun line that `moxie launch` builds.
expect 0 "layout: world 2 = pp1 x dp2" -- launch -n 2 "$root/configs/tiny.yaml" --set parallel.dp=2 \
  --set train.steps=2 --set train.micro_batch_size=2 --set data.path="$root/.data/text" \
  --set train.run_dir="$tmp/launched" --set train.eval_batches=1
# A layout that does not match the rank count: one sentence, exit 2.
expect 2 "does not match the world size 2" -- launch -n 2 "$root/configs/tiny.yaml" --set parallel.dp=4

# moxie plan on the reference trillion-parameter layouts.
expect 0 "1.028T total.*" -- plan "$root/configs/kimi-k2-like-1024.yaml" --world 1024
expect 0 "total .* of 80.00 GB: fits" -- plan "$root/configs/kimi-k2-like-2048.yaml" --world 2048
expect 2 "needs --world N" -- plan "$root/configs/kimi-k2-like-1024.yaml"
expect 2 "does not match the world size 512" -- plan "$root/configs/kimi-k2-like-1024.yaml" --world 512
expect 2 "rank 9 is not in a job of --world 8 ranks" -- plan "$root/configs/tiny.yaml" --world 8 --set parallel.dp=8 --materialize-rank 9
expect 2 "expected a rank, 0 or more" -- plan "$root/configs/tiny.yaml" --world 1 --materialize-rank -1
expect 0 "parameter elements: planned ([0-9]+), built \\1" -- plan "$root/configs/tiny.yaml" --world 4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4 --set model.vocab_size=260 --materialize-rank 3

# moxie data: licences checked before anything is written, checksums verified.
expect 1 "no licence for about.rst.txt" -- data build "$root/.data/text" "$tmp/ds_refused"
[ ! -e "$tmp/ds_refused" ] || { echo "FAIL: a refused build left $tmp/ds_refused"; failures=$((failures + 1)); }
expect 0 "PSF-2.0: [0-9]+ samples" -- data build "$root/.data/text" "$tmp/ds" \
  --sources "$root/configs/sources/python3-doc.yaml" --samples-per-shard 200
expect 0 "every checksum matches" -- data verify "$tmp/ds"
expect 0 "licence PSF-2.0, by Python Software Foundation" -- data inspect "$tmp/ds" --sample 3
expect 1 "already holds a dataset" -- data build "$root/.data/text" "$tmp/ds" \
  --sources "$root/configs/sources/python3-doc.yaml"
printf 'X' | dd of="$tmp/ds/shard-00001.shard" bs=1 seek=100 conv=notrunc status=none
expect 1 "shard-00001.shard: sha256 differs" -- data verify "$tmp/ds"
expect 2 "takes build, tokenizer, verify, inspect or provenance" -- data frobnicate

# Checkpoints, export, import, generate: usage and bad input.
expect 2 "usage: moxie export CHECKPOINT --hf OUT_DIR" -- export "$tmp/nothing"
expect 1 "no run config .*config.yaml beside the checkpoint" -- export "$tmp/nothing" --hf "$tmp/hf"
expect 2 "usage: moxie import --hf HF_DIR OUT_RUN_DIR" -- import "$tmp/run"
expect 1 "cannot open Hugging Face config" -- import --hf "$tmp/nothing" "$tmp/fresh_run"
expect 2 "usage: moxie generate CHECKPOINT \(--prompt TEXT \| --tokens IDS\)" -- generate "$tmp/ck"
expect 2 "--top-p 2: expected a number in \(0, 1\]" -- generate "$tmp/ck" --prompt hi --top-p 2
expect 2 "--temperature -1: expected a number >= 0" -- generate "$tmp/ck" --prompt hi --temperature -1
expect 1 "--resume latest: no committed checkpoint in $tmp/empty_run/checkpoints" -- train "$root/configs/tiny.yaml" --resume --set train.run_dir="$tmp/empty_run"
expect 1 "checkpoint folder $tmp/nowhere does not exist" -- train "$root/configs/tiny.yaml" --resume "$tmp/nowhere" --set train.run_dir="$tmp/empty_run"
expect 2 "train.stop_at needs train.checkpoint_every > 0" -- train "$root/configs/tiny.yaml" --set train.stop_at=3 --set train.checkpoint_every=0

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
