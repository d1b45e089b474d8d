#!/usr/bin/env bash
# SIGTERM to `moxie launch` reaches every rank: the 2-rank job agrees on a
# step, saves a committed checkpoint there and stops; resuming it gives the
# same loss and gradient norm, bit for bit, as a run never interrupted.
# Usage: sigterm_test.sh MOXIE REPO_ROOT MPIEXEC
set -u
moxie="$1"; root="$2"; mpiexec="$3"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MOXIE_MPIRUN="$mpiexec"
run=$(mktemp -d)
trap 'pkill -9 -f "$run/" 2>/dev/null; rm -rf "$run"' EXIT
steps=60
sets=(--set parallel.dp=2 --set train.steps=$steps --set train.micro_batch_size=2
      --set train.checkpoint_every=1000 --set train.eval_every=0 --set data.path="$root/.data/text")

"$moxie" launch -n 2 "$root/configs/tiny.yaml" "${sets[@]}" --set train.run_dir="$run/full" \
  >"$run/full.log" 2>&1 || { echo "FAIL: the uninterrupted run failed"; tail "$run/full.log"; exit 1; }

"$moxie" launch -n 2 "$root/configs/tiny.yaml" "${sets[@]}" --set train.run_dir="$run/cut" \
  >"$run/cut.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  n=$(grep -c '"loss"' "$run/cut/metrics.jsonl" 2>/dev/null)
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
done
kill -TERM $job
wait $job
echo "launcher exited with $? after SIGTERM"
ckpt=$(ls -d "$run/cut/checkpoints"/step-* 2>/dev/null | tail -1)
ok=1
grep -q "stopped by a signal" "$run/cut.log" || { echo "FAIL: no stop by the signal"; tail "$run/cut.log"; ok=0; }
[ -n "$ckpt" ] || { echo "FAIL: no checkpoint saved"; ok=0; }
stopped=$(basename "${ckpt:-step-0}" | sed 's/step-0*//')
echo "checkpoint at step ${stopped:-none} of $steps"
if [ $ok -eq 1 ] && [ "${stopped:-0}" -ge "$steps" ]; then
  echo "FAIL: the run finished before the signal; nothing was tested"; ok=0
fi
if [ $ok -eq 1 ]; then
  "$moxie" launch -n 2 "$root/configs/tiny.yaml" "${sets[@]}" --set train.run_dir="$run/cut" \
    --set train.resume=latest >"$run/resume.log" 2>&1 ||
    { echo "FAIL: resume failed"; tail "$run/resume.log"; ok=0; }
  pick() { python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r: print(r["step"], repr(r["loss"]), repr(r["grad_norm"]))' "$1"; }
  diff <(pick "$run/full/metrics.jsonl") <(pick "$run/cut/metrics.jsonl") >"$run/diff" ||
    { echo "FAIL: the resumed run differs from the uninterrupted one"; head "$run/diff"; ok=0; }
  [ "$(pick "$run/full/metrics.jsonl" | wc -l)" -eq "$steps" ] || { echo "FAIL: not $steps steps"; ok=0; }
fi
if [ $ok -eq 1 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi
