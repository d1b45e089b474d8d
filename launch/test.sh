#!/usr/bin/env bash
# Sets up what is missing (with the test extras), builds everything and runs the
# whole test suite through CTest. CI runs exactly this (.ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
launch/setup.sh --tests
launch/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
