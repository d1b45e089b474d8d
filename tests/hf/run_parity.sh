#!/usr/bin/env bash
# Hugging Face parity: make the reference with transformers, then compare in C++.
# Usage: run_parity.sh PYTHON TEST_BINARY OUT_DIR. Exit 77 (skipped) only when
# transformers cannot be imported.
set -u
python="$1"; binary="$2"; out="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out"
"$python" "$here/make_reference.py" "$out"
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
MOXIE_HF_REFERENCE="$out" exec "$binary"
