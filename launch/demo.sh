#!/usr/bin/env bash
# The main job: set up what is missing, build, and pretrain the tiny MoE model
# on CPU on the Python documentation text. Extra arguments go to `moxie train`,
# e.g. launch/demo.sh --set train.steps=100
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
launch/setup.sh
launch/build.sh moxie
exec build/moxie train configs/tiny.yaml "$@"
