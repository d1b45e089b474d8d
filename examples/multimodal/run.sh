#!/usr/bin/env bash
# The multimodal walkthrough: build the dataset (make_data.sh), train on it,
# and show where the samples came from.
# Usage: examples/multimodal/run.sh [--set key=value]...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
launch/setup.sh
launch/build.sh moxie
[ -f .data/multimodal/train/manifest.pb ] || examples/multimodal/make_data.sh "$root/.data/multimodal"
sets=()
for arg in "$@"; do sets+=("$arg"); done
build/moxie train examples/multimodal/config.yaml "${sets[@]}"
run_dir=$(build/moxie config examples/multimodal/config.yaml "${sets[@]}" | sed -n 's/^  run_dir: //p')
build/moxie data provenance "$run_dir" --step 10
