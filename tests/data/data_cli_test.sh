#!/usr/bin/env bash
# moxie data end to end on real files: images (PNG and JPEG from ImageMagick),
# speech (espeak-ng), WebDataset tars (and ones with path-traversal names),
# a SentencePiece tokenizer, verify/inspect, training on a dataset under two
# ranks and the provenance report of that run, and damaged input.
# Usage: data_cli_test.sh MOXIE_BINARY REPO_ROOT MPIEXEC PYTHON
set -u
moxie="$1"
root="$2"
mpiexec="$3"
python="$4"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
source "$(dirname "${BASH_SOURCE[0]}")/../launch/expect.sh"

# --- media in a folder: grouped by key --------------------------------------
src="$tmp/src"
mkdir -p "$src/pics" "$src/speech"
convert -size 40x20 xc:'rgb(255,0,0)' "$src/pics/red.png"
printf 'red\n' >"$src/pics/red.txt"
convert -size 20x40 xc:'rgb(0,0,255)' -quality 95 "$src/pics/blue.jpg"
printf 'blue\n' >"$src/pics/blue.txt"
espeak-ng -w "$src/speech/hello.wav" "hello world"
printf 'hello world\n' >"$src/speech/hello.txt"
printf 'just text\n' >"$src/notes.md"
cat >"$tmp/sources.yaml" <<'Y'
sources:
  - {path: pics/, license: CC0-1.0, creator: moxie tests}
  - {path: '', license: MIT}
Y
expect 0 "4 samples, .* 2 images, 1 audio clips" -- data build "$src" "$tmp/media" --sources "$tmp/sources.yaml" --image-size 16 --image-patch 4
expect 0 "every checksum matches" -- data verify "$tmp/media"
expect 0 "CC0-1.0: 4" -- data inspect "$tmp/media"   # sources (files) per licence
# Sorted keys: notes, pics/blue, pics/red, speech/hello.
expect 0 "image: 16x16x3" -- data inspect "$tmp/media" --sample 1
expect 0 "text: 5 tokens: blue" -- data inspect "$tmp/media" --sample 1
expect 0 "via decode libjpeg-turbo" -- data inspect "$tmp/media" --sample 1
expect 0 "via decode libpng" -- data inspect "$tmp/media" --sample 2
expect 0 "audio: [0-9]+ samples at 22050 Hz" -- data inspect "$tmp/media" --sample 3
expect 0 "text: 12 tokens: hello world" -- data inspect "$tmp/media" --sample 3
expect 1 "--image-patch 5 must divide --image-size 16" -- data build "$src" "$tmp/bad_patch" --allow-unknown-license --image-size 16 --image-patch 5
[ ! -e "$tmp/bad_patch" ] && { echo "ok:   nothing written for a refused build"; passed=$((passed + 1)); } ||
  { echo "FAIL: a refused build left $tmp/bad_patch"; failures=$((failures + 1)); }

# A damaged image fails the build, naming the file, and leaves no output.
mkdir -p "$tmp/broken"
head -c 100 "$src/pics/red.png" >"$tmp/broken/cut.png"
expect 1 "cut.png: damaged PNG" -- data build "$tmp/broken" "$tmp/broken_out" --allow-unknown-license
[ ! -e "$tmp/broken_out" ] && { echo "ok:   no output after a failed build"; passed=$((passed + 1)); } ||
  { echo "FAIL: a failed build left $tmp/broken_out"; failures=$((failures + 1)); }

# --- WebDataset tars -----------------------------------------------------------
(cd "$src/pics" && tar -cf "$tmp/pics.tar" blue.jpg blue.txt red.png red.txt)
expect 0 "2 samples, .* 2 images" -- data build "$tmp/pics.tar" "$tmp/tar_ds" --allow-unknown-license --image-size 16 --image-patch 4
expect 0 "source: pics.tar/blue.jpg" -- data inspect "$tmp/tar_ds" --sample 0
"$python" - "$tmp" <<'PY'
import io, sys, tarfile
tmp = sys.argv[1]
for name, member in [("climb", "../../etc/evil.txt"), ("absolute", "/etc/evil.txt"),
                     ("inner", "ok/../../evil.txt")]:
    with tarfile.open(f"{tmp}/{name}.tar", "w") as t:
        data = b"owned\n"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
with tarfile.open(f"{tmp}/link.tar", "w") as t:
    info = tarfile.TarInfo("x.txt")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    t.addfile(info)
PY
expect 1 "entry '../../etc/evil.txt' has a '..' component \(path traversal\)" -- data build "$tmp/climb.tar" "$tmp/t1" --allow-unknown-license
expect 1 "entry '/etc/evil.txt' has an absolute path" -- data build "$tmp/absolute.tar" "$tmp/t2" --allow-unknown-license
expect 1 "entry 'ok/../../evil.txt' has a '..' component" -- data build "$tmp/inner.tar" "$tmp/t3" --allow-unknown-license
expect 1 "entry 'x.txt' is a link or special file" -- data build "$tmp/link.tar" "$tmp/t4" --allow-unknown-license
head -c 700 "$tmp/pics.tar" >"$tmp/cut.tar"
expect 1 "cut.tar.*(damaged or truncated|is truncated)" -- data build "$tmp/cut.tar" "$tmp/t5" --allow-unknown-license
for d in t1 t2 t3 t4 t5; do
  [ -e "$tmp/$d" ] && { echo "FAIL: refused tar left $tmp/$d"; failures=$((failures + 1)); }
done

# --- SentencePiece ---------------------------------------------------------------
docs="$root/.data/text"
mapfile -t texts < <(find -L "$docs" -name '*.txt' | sort | sed -n '1,40p')
expect 0 "wrote $tmp/sp.model \(512 ids, sentencepiece:" -- data tokenizer "$tmp/sp" "${texts[@]}" --vocab-size 512
mkdir -p "$tmp/sp_src" && cp "${texts[0]}" "$tmp/sp_src/a.txt" && cp "$src/pics/red.png" "$tmp/sp_src/a.png"
expect 0 "1 samples" -- data build "$tmp/sp_src" "$tmp/sp_ds" --allow-unknown-license --tokenizer "$tmp/sp.model"
expect 0 "tokenizer sentencepiece:[0-9a-f]{64} \(vocabulary 512\)" -- data inspect "$tmp/sp_ds"
# Decoded with the model, the sample reads as the file began (its first word).
first_word=$(grep -oE '[A-Za-z]{4,}' "${texts[0]}" | head -1)
expect 0 "text: [0-9]+ tokens: .*$first_word" -- data inspect "$tmp/sp_ds" --sample 0 --tokenizer "$tmp/sp.model"
expect 0 "pass --tokenizer MODEL to decode" -- data inspect "$tmp/sp_ds" --sample 0
expect 1 "tokenizer model $tmp/none.model does not exist" -- data build "$tmp/sp_src" "$tmp/sp_ds2" --allow-unknown-license --tokenizer "$tmp/none.model"
expect 2 "usage: moxie data tokenizer" -- data tokenizer "$tmp/only_prefix"

# --- training on a dataset on 2 ranks, and its provenance ----------------------------
expect 0 "built" -- data build "$docs" "$tmp/docs_ds" --sources "$root/configs/sources/python3-doc.yaml" --samples-per-shard 64
sets=(--set data.source=dataset --set data.path="$tmp/docs_ds" --set model.vocab_size=263 --set model.d_model=64
      --set model.n_layers=2 --set data.seq_len=64 --set train.steps=6 --set train.micro_batch_size=2
      --set train.log_every=1 --set train.eval_every=0 --set train.eval_batches=1
      --set train.threads=1 --set train.run_dir="$tmp/run")
out=$("$mpiexec" --oversubscribe --bind-to none -n 2 "$moxie" train "$root/configs/tiny.yaml" "${sets[@]}" \
      --set parallel.dp=2 --set data.eval_path="$tmp/docs_ds" 2>&1)
if [ $? -eq 0 ] && grep -q "done: eval loss" <<<"$out"; then
  echo "ok:   moxie train on a dataset under mpiexec -n 2"; passed=$((passed + 1))
else
  echo "FAIL: training on a dataset:"; echo "$out" | tail -20 | sed 's/^/    /'; failures=$((failures + 1))
fi
expect 0 "steps 1-6 \(6 logged\): [0-9]+ samples from [0-9]+ sources" -- data provenance "$tmp/run" --step 6
expect 0 "PSF-2.0: [0-9]+ samples, [0-9]+ sources" -- data provenance "$tmp/run" --step 6
expect 1 "records steps up to 6; --step 7 is not among them" -- data provenance "$tmp/run" --step 7
expect 1 "no provenance log" -- data provenance "$tmp" --step 1
expect 2 "usage: moxie data provenance" -- data provenance "$tmp/run"
expect 1 "model.vocab_size=259 is smaller than the vocabulary of the dataset's tokenizer \(byte, 263 ids\)" -- train "$root/configs/tiny.yaml" "${sets[@]}" --set model.vocab_size=259
expect 2 "data.on_corrupt" -- train "$root/configs/tiny.yaml" "${sets[@]}" --set data.on_corrupt=ignore
expect 1 "holds no dataset" -- train "$root/configs/tiny.yaml" "${sets[@]}" --set data.path="$tmp/nothing"

# A flipped byte: verify names the shard; training skips and logs, or fails.
# 30 short documents, so that 40 steps read every one of them.
mkdir -p "$tmp/short"
for f in "${texts[@]:0:30}"; do head -c 300 "$f" >"$tmp/short/$(basename "$f")"; done
"$moxie" data build "$tmp/short" "$tmp/flipped" --allow-unknown-license >/dev/null
shard="$tmp/flipped/shard-00000.shard"
"$python" - "$shard" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(os.path.getsize(p) // 3)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))
PY
expect 1 "shard-00000.shard.*(sha256 differs|checksum mismatch)" -- data verify "$tmp/flipped"
flip=(--set data.path="$tmp/flipped" --set train.micro_batch_size=16 --set train.steps=40)
expect 0 "skipped sample [0-9]+ \(shard .*shard-00000.shard, byte [0-9]+, source .*\): .*checksum mismatch" -- train "$root/configs/tiny.yaml" "${sets[@]}" "${flip[@]}" --set train.run_dir="$tmp/run_skip"
expect 1 "data: sample [0-9]+ \(shard .*shard-00000.shard, byte [0-9]+, source .*\).*data.on_corrupt=skip" -- train "$root/configs/tiny.yaml" "${sets[@]}" "${flip[@]}" --set data.on_corrupt=fail --set data.verify_shards=false --set train.run_dir="$tmp/run_fail"

# --- bad input on the command line and in SRC --------------------------------
expect 0 "symbolic links in SRC are followed to regular files inside SRC" -- data build "$src" "$tmp/policy" --sources "$tmp/sources.yaml" --image-size 16 --image-patch 4
expect 2 "--samples-per-shard abc: expected a whole number" -- data build "$src" "$tmp/x1" --samples-per-shard abc
expect 2 "--samples-per-shard 99999999999999999999: expected a whole number" -- data build "$src" "$tmp/x2" --samples-per-shard 99999999999999999999
expect 2 "--samples-per-shard 2.5: expected a whole number" -- data build "$src" "$tmp/x3" --samples-per-shard 2.5
expect 1 "--image-size 100000 is more than 4096" -- data build "$src" "$tmp/x4" --image-size 100000 --image-patch 4
mkdir -p "$tmp/linked"
printf 'inside\n' >"$tmp/linked/a.txt"
printf 'outside\n' >"$tmp/secret.txt"
ln -s "$tmp/secret.txt" "$tmp/linked/b.txt"
expect 1 "source $tmp/linked/b.txt is a symbolic link that leads out of $tmp/linked" -- data build "$tmp/linked" "$tmp/x5" --allow-unknown-license
rm "$tmp/linked/b.txt" && mkfifo "$tmp/linked/pipe.txt"
expect 1 "source $tmp/linked/pipe.txt is a FIFO" -- data build "$tmp/linked" "$tmp/x6" --allow-unknown-license
rm "$tmp/linked/pipe.txt" && ln -s a.txt "$tmp/linked/c.txt"
# A link to a file inside SRC is read: both files' 7 bytes ("inside\n") count.
expect 0 " 14 tokens" -- data build "$tmp/linked" "$tmp/x7" --allow-unknown-license
mkdir -p "$tmp/conf.yaml"
expect 2 "config $tmp/conf.yaml is a directory" -- config "$tmp/conf.yaml"
expect 2 "train.threads=100000 is more than 1024" -- config "$root/configs/tiny.yaml" --set train.threads=100000

echo "data_cli_test: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
