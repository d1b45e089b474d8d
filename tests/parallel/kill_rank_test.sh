#!/usr/bin/env bash
# A rank killed mid-run (SIGKILL) makes the whole job exit non-zero within 60
# seconds, with a message naming the rank, instead of hanging.
# Usage: kill_rank_test.sh MOXIE REPO_ROOT MPIEXEC
set -u
moxie="$1"; root="$2"; mpiexec="$3"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
"$mpiexec" -n 2 --oversubscribe --bind-to none "$moxie" train "$root/configs/tiny.yaml" \
  --set parallel.dp=2 --set train.steps=100000 --set train.micro_batch_size=2 \
  --set data.path="$root/.data/text" --set train.run_dir="$run/out" >"$run/log" 2>&1 &
job=$!
# Wait for training to be under way (first metrics line), at most 60 s.
for _ in $(seq 600); do
  [ -s "$run/out/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$run/out/metrics.jsonl" ] || { echo "FAIL: training never started"; cat "$run/log"; kill -9 $job; exit 1; }
# Rank 1: the moxie process whose environment says so.
victim=""
for pid in $(pgrep -f "$run/out"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
    victim=$pid
  fi
done
[ -n "$victim" ] || { echo "FAIL: rank 1 not found"; kill -9 $job; exit 1; }
start=$(date +%s)
kill -9 "$victim"
for _ in $(seq 600); do
  kill -0 $job 2>/dev/null || break
  sleep 0.1
done
if kill -0 $job 2>/dev/null; then
  echo "FAIL: the job still runs 60 s after rank 1 was killed"
  pkill -9 -f "$run/out"
  exit 1
fi
wait $job
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "job exited with $rc, ${elapsed}s after rank 1 was killed"
grep -iE "rank 1" "$run/log" | head -3
if [ "$rc" -ne 0 ] && grep -qiE "rank 1" "$run/log"; then
  echo "1 passed, 0 failed"
else
  echo "FAIL: expected a non-zero exit and a message naming rank 1"; cat "$run/log"
  echo "0 passed, 1 failed"; exit 1
fi
