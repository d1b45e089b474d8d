#!/usr/bin/env bash
# Supervised fine-tuning data from installed text: sentences of the Python
# documentation (.data/text, python3-doc), each as an instruction record
#   {"prompt": "Shout: <sentence>", "response": "<SENTENCE IN UPPER CASE>"}
# A task the pretrained model has never seen, that a fine-tuned one can do
# on sentences it never saw: every 10th sentence goes to the held-out
# evaluation set.
# Usage: examples/sft/make_data.sh OUT_DIR [RECORDS]   (default 2000)
set -euo pipefail
out=${1:?usage: make_data.sh OUT_DIR [RECORDS]}
records=${2:-2000}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
moxie="$root/build/moxie"
[ -x "$moxie" ] || { echo "make_data.sh: build/moxie is missing; run launch/build.sh" >&2; exit 1; }
[ -e "$root/.data/text" ] || { echo "make_data.sh: .data/text is missing; run launch/setup.sh" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/raw/train" "$out/raw/eval"
python3 - "$root/.data/text" "$out/raw" "$records" <<'PY'
import json, os, re, sys
src, raw, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
sentences = []
for dirpath, _, files in sorted(os.walk(src, followlinks=True)):
    for name in sorted(files):
        if not name.endswith(".txt"):
            continue
        text = open(os.path.join(dirpath, name), encoding="utf-8", errors="ignore").read()
        for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            # Plain prose of 20-48 ASCII letters, spaces and commas.
            if 20 <= len(s) <= 48 and re.fullmatch(r"[A-Za-z][A-Za-z ,]*[a-z][.!?]", s):
                sentences.append(s)
seen, unique = set(), []
for s in sentences:
    if s not in seen:
        seen.add(s)
        unique.append(s)
unique = unique[:wanted]
with open(os.path.join(raw, "train", "shout.jsonl"), "w") as tr, open(os.path.join(raw, "eval", "shout.jsonl"), "w") as ev:
    for i, s in enumerate(unique):
        (ev if i % 10 == 9 else tr).write(json.dumps({"prompt": "Shout: " + s, "response": s.upper()}) + "\n")
print(f"{len(unique)} records from {src}")
PY
cat >"$out/sources.yaml" <<YAML
sources:
  - {path: '', license: PSF-2.0, creator: "sentences of the Python documentation (Python Software Foundation), upper-cased as responses"}
YAML
"$moxie" data build "$out/raw/train" "$out/train" --sources "$out/sources.yaml"
"$moxie" data build "$out/raw/eval" "$out/eval" --sources "$out/sources.yaml"
