#!/usr/bin/env bash
# A rank that stops (SIGSTOP after step 3, as a hung or swapped-out node
# would) ends a 4-rank job within parallel.collective_timeout_s plus a
# margin, with a message naming the stopped rank, instead of hanging.
# Usage: stopped_rank_test.sh MOXIE REPO_ROOT MPIEXEC
set -u
moxie="$1"; root="$2"; mpiexec="$3"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
timeout_s=5
margin_s=30
run=$(mktemp -d)
trap 'pkill -9 -f "$run/out" 2>/dev/null; rm -rf "$run"' EXIT
start=$(date +%s.%N)
MOXIE_FAULT_STOP=3@2 "$mpiexec" -n 4 --oversubscribe --bind-to none -x MOXIE_FAULT_STOP \
  "$moxie" train "$root/configs/tiny.yaml" \
  --set parallel.dp=4 --set train.steps=100000 --set train.micro_batch_size=1 \
  --set parallel.collective_timeout_s=$timeout_s \
  --set data.path="$root/.data/text" --set train.run_dir="$run/out" >"$run/log" 2>&1 &
job=$!
# Training under way, then the stop: the job must end by itself.
deadline=$(( $(date +%s) + 120 + timeout_s + margin_s ))
while kill -0 $job 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
if kill -0 $job 2>/dev/null; then
  echo "FAIL: the job still runs $((timeout_s + margin_s)) s past the stop of rank 2"
  tail -20 "$run/log"
  exit 1
fi
wait $job
rc=$?
# When the stop happened: the last metrics line written (step 3) is close to it.
stopped_at=$(stat -c %Y "$run/out/metrics.jsonl" 2>/dev/null || echo 0)
ended=$(date +%s)
grep "watchdog" "$run/log" | head -2
echo "job exited with $rc, $((ended - stopped_at)) s after the last metrics line (timeout ${timeout_s} s)"
ok=1
[ "$rc" -ne 0 ] || { echo "FAIL: exit code 0"; ok=0; }
grep -q "watchdog: rank [0-9]* made no progress.*rank 2 stopped responding" "$run/log" ||
  { echo "FAIL: no watchdog line naming rank 2"; tail -20 "$run/log"; ok=0; }
[ $((ended - stopped_at)) -le $((timeout_s + margin_s)) ] ||
  { echo "FAIL: ended more than $((timeout_s + margin_s)) s after the stop"; ok=0; }
grep -q '"step":3' "$run/out/metrics.jsonl" && ! grep -q '"step":5' "$run/out/metrics.jsonl" ||
  { echo "FAIL: the run did not stop at step 3-4"; ok=0; }
if [ $ok -eq 1 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi
