#!/usr/bin/env bash
# `moxie plan --materialize-rank 0` on a trillion-parameter layout: rank 0's
# shard is built and run here, and its parameter, gradient and optimizer bytes
# must be within 5% of the plan's figures, with no parameter missing or of
# another size, while the process never holds more than a fraction of the shard.
# Usage: materialize_test.sh MOXIE CONFIG WORLD [more moxie plan flags, e.g.
# --materialize-blocks N]
set -euo pipefail
moxie=$1 config=$2 world=$3
shift 3
out=$("$moxie" plan "$config" --world "$world" --materialize-rank 0 "$@") || {
  echo "$out"; echo "FAIL: moxie plan --materialize-rank exited non-zero"; exit 1; }
echo "$out"
fail=0
for what in "parameters" "gradients" "optimizer state"; do
  diff=$(echo "$out" | awk -v w="  $what " 'index($0, w) == 1 && /%$/ {print $NF}' | tail -1 | tr -d '%+')
  [ -n "$diff" ] || { echo "FAIL: no '$what' row"; fail=1; continue; }
  if awk -v d="$diff" 'BEGIN {exit !(d < -5 || d > 5)}'; then
    echo "FAIL: $what measured ${diff}% off the plan (limit 5%)"; fail=1
  else
    echo "ok: $what within 5% (${diff}%)"
  fi
done
echo "$out" | grep -q "MISMATCHED" && { echo "FAIL: parameters differ from the plan"; fail=1; }
# Piece by piece: the peak must stay far below the whole shard.
peak=$(echo "$out" | sed -n 's/.*peak resident memory \([0-9.]*\) GB.*/\1/p')
whole=$(echo "$out" | sed -n 's/.*optimizer state: \([0-9.]*\) GB).*/\1/p')
if [ -n "$peak" ] && [ -n "$whole" ]; then
  awk -v p="$peak" -v w="$whole" 'BEGIN {exit !(p < w / 4)}' \
    && echo "ok: peak resident $peak GB against a shard of $whole GB" \
    || { echo "FAIL: peak resident $peak GB is not far below the shard's $whole GB"; fail=1; }
fi
exit $fail
