#!/usr/bin/env bash
# Builds a small, real multimodal dataset from installed Debian packages:
#   - words: the most frequent words of the Python documentation (python3-doc);
#   - images: each word rendered by ImageMagick in the DejaVu Sans font at a
#     few sizes and places (fonts-dejavu-core);
#   - speech: each word spoken by espeak-ng at a few speeds and pitches.
# Every image or clip is followed by its word as text, so predicting that text
# needs the medium. Training data is a WebDataset tar (key.png|key.wav +
# key.txt); the held-out evaluation set uses renderings and voices the
# training set never has.
# Also caption_train/ and caption_eval/: each picture with the instruction
# record {"prompt": "Read the picture.", "response": WORD} (SFT: only the
# word is a target), for configs/recipes/caption-lora.yaml.
# Usage: examples/multimodal/make_data.sh OUT_DIR [WORDS]   (default 32 words)
set -euo pipefail
export LC_ALL=C
out=${1:?usage: make_data.sh OUT_DIR [WORDS]}
n_words=${2:-32}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
moxie="$root/build/moxie"
docs=/usr/share/doc/python3-doc/html/_sources
[ -d "$docs" ] || docs=$(ls -d /usr/share/doc/python3*/html/_sources | head -1)
for tool in convert espeak-ng tar "$moxie"; do
  command -v "$tool" >/dev/null || { echo "make_data.sh: $tool is missing; run launch/setup.sh and launch/build.sh" >&2; exit 1; }
done

rm -rf "$out"
mkdir -p "$out/raw/train" "$out/raw/eval" "$out/raw/caption_train" "$out/raw/caption_eval"
# Distinct lower-case words of 4 to 7 letters, most frequent first.
find -L "$docs" -name '*.txt' -print0 | sort -z | xargs -0 cat | tr -cs 'A-Za-z' '\n' |
  grep -E "^[a-z]{4,7}$" | sort | uniq -c | sort -k1,1nr -k2 | sed -n "1,${n_words}p" |
  awk '{print $2}' >"$out/words.txt"

# Variants: (point size, x offset, y offset) for images, (speed, pitch) for speech.
image_variants=("22 -8 0" "26 0 -3" "20 6 4" "24 -4 3" "23 3 -2")
audio_variants=("150 40" "175 60" "130 30" "190 70" "160 50")
key=0
while read -r word; do
  for v in 0 1 2 3 4; do
    split=train; [ "$v" -eq 4 ] && split=eval
    read -r size dx dy <<<"${image_variants[$v]}"
    read -r speed pitch <<<"${audio_variants[$v]}"
    k=$(printf '%06d' $key); key=$((key + 1))
    convert -size 96x48 xc:white -font DejaVu-Sans -pointsize "$size" -fill black \
      -gravity center -annotate "+$dx+$dy" "$word" "$out/raw/$split/$k.png"
    printf '%s\n' "$word" >"$out/raw/$split/$k.txt"
    # The same picture as a captioning record (configs/recipes/caption-lora.yaml).
    cp "$out/raw/$split/$k.png" "$out/raw/caption_$split/$k.png"
    printf '{"prompt": "Read the picture.", "response": "%s"}\n' "$word" >"$out/raw/caption_$split/$k.json"
    k=$(printf '%06d' $key); key=$((key + 1))
    espeak-ng -s "$speed" -p "$pitch" -w "$out/raw/$split/$k.wav" "$word"
    printf '%s\n' "$word" >"$out/raw/$split/$k.txt"
  done
done <"$out/words.txt"

# Training data as a WebDataset shard: a key's files are adjacent.
(cd "$out/raw/train" && ls | sort | tar -cf "$out/train.tar" -T -)
cat >"$out/sources.yaml" <<YAML
sources:
  - {path: train.tar/, license: PSF-2.0 AND Bitstream-Vera AND GPL-3.0-or-later,
     creator: "words from the Python documentation (PSF); rendered with ImageMagick in DejaVu Sans; spoken by espeak-ng"}
  - {path: '', license: PSF-2.0 AND Bitstream-Vera AND GPL-3.0-or-later,
     creator: "words from the Python documentation (PSF); rendered with ImageMagick in DejaVu Sans; spoken by espeak-ng"}
YAML
opts=(--sources "$out/sources.yaml" --image-size 48 --image-patch 12 --audio-frame 512 --samples-per-shard 128)
"$moxie" data build "$out/train.tar" "$out/train" "${opts[@]}"
"$moxie" data build "$out/raw/eval" "$out/eval" "${opts[@]}"
"$moxie" data build "$out/raw/caption_train" "$out/caption_train" "${opts[@]}"
"$moxie" data build "$out/raw/caption_eval" "$out/caption_eval" "${opts[@]}"
