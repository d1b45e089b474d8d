#!/usr/bin/env bash
# examples/multimodal learns to use its modalities: on held-out renderings and
# voices, the loss on the text after an image (audio clip) must be clearly
# lower than the same model's loss with that image (clip) blanked.
# Usage: multimodal_test.sh MOXIE_BINARY REPO_ROOT DATA_DIR
set -euo pipefail
moxie="$1"
root="$2"
data="$3"
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
out=$("$moxie" train "$root/examples/multimodal/config.yaml" --set data.path="$data/train" \
      --set data.eval_path="$data/eval" --set train.run_dir="$run" 2>&1) || { echo "$out" | tail -20; exit 1; }
echo "$out" | grep -E "^eval|^done"
status=0
for what in "an image" "audio"; do
  line=$(echo "$out" | grep "text of samples with $what " | tail -1)
  with=$(sed -E 's/.* with [a-z ]+ ([0-9.]+) nats\/token; with it blanked.*/\1/' <<<"$line")
  blanked=$(sed -E 's/.*with it blanked ([0-9.]+) nats\/token.*/\1/' <<<"$line")
  if awk -v a="$with" -v b="$blanked" 'BEGIN { exit !(a + 0.3 < b) }'; then
    echo "ok:   $what: $with nats/token with it, $blanked blanked"
  else
    echo "FAIL: $what: $with nats/token with it is not clearly below $blanked blanked"
    status=1
  fi
done
"$moxie" data provenance "$run" --step 400 | sed -n 1,4p
exit $status
