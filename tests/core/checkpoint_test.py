#!/usr/bin/env python3
"""Checkpoints end to end with real `moxie train` runs (and mpiexec):

1. exact resume: 20 steps straight vs 10 + stop + resume 10: the losses of
   steps 11-20 are bitwise identical, in one process and on 4 ranks
   (dp2 x ep2, ZeRO-1);
2. resharding: the dp2 x ep2 checkpoint of step 10 resumed at ep4 (4 ranks),
   in one process, and at tp2 x ep2: steps 11-20 match the straight run
   within fp32 tolerance (rtol 2e-5, as the layout parity tests);
3. kill -9 at 20 random moments of a run that saves every step: afterwards
   --resume latest always loads a committed checkpoint and trains on;
4. a flipped byte and a truncated file are named; --resume latest then falls
   back to the previous committed checkpoint, saying so;
5. damage in each place (the index, the safetensors header, the step and the
   RNG state in moxie.state, a dtype, tensor bytes) is named with the folder
   and file, never resumed from; --resume latest falls back to step 5 and
   trains on with losses bitwise those of an uninterrupted run.

Usage: checkpoint_test.py MOXIE REPO_ROOT MPIEXEC [PARTS]  (PARTS: e.g. 4,5; default all)
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MOXIE, ROOT, MPIEXEC = sys.argv[1:4]
PARTS = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else {"1", "2", "3", "4", "5"}
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
BASE = ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2", "model.vocab_size=260",
        "moe.expert_hidden=48", "moe.num_experts=4", "moe.aux_loss_coef=0.01", "model.qkv_bias=true", "data.seq_len=32",
        "schedule.warmup_steps=2", "optim.lr=3e-3", "train.steps=20", "train.eval_every=0",
        "train.eval_batches=1", "train.log_every=1", "train.threads=1", "train.checkpoint_every=5",
        f"data.path={os.path.join(ROOT, '.data/text')}"]
GLOBAL_BATCH = 4
failures = []


def train(run_dir, ranks=1, dp=1, tp=1, ep=1, extra=(), resume=None, check=True):
    sets = BASE + [f"train.run_dir={run_dir}", f"parallel.dp={dp}", f"parallel.tp={tp}", f"parallel.ep={ep}",
                   f"train.micro_batch_size={GLOBAL_BATCH // dp}"] + list(extra)
    cmd = ([MPIEXEC, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] if ranks > 1 else []) + \
          [MOXIE, "train", os.path.join(ROOT, "configs/tiny.yaml")]
    for s in sets:
        cmd += ["--set", s]
    if resume:
        cmd += ["--resume", resume]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    if check and out.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def losses(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "grad_norm" in r}


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def compare(a, b, what, exact):
    for step in range(11, 21):
        x, y = a[step], b[step]
        same = x == y if exact else abs(x - y) <= 2e-5 * max(abs(x), abs(y))
        expect(same, f"{what}: step {step} loss {x!r} vs {y!r}")


class Skip(Exception):
    pass


def edit_header(path, old, new):
    """Replaces bytes `old` (which must occur once) in the safetensors header of
    `path` by `new` of the same length: the file keeps its size and layout."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        assert header.count(old) == 1, (old, header[:200])
        assert len(old) == len(new)
        f.seek(8)
        f.write(header.replace(old, new))


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def damage_in_each_place():
    """5. Each kind of damage to the newest checkpoint (step 10 of a run saving
    every 5 steps) is named, and --resume latest falls back to step 5 and
    trains on bitwise like a run that was never stopped."""
    straight = os.path.join(tmp, "d_straight")
    train(straight)
    reference = losses(straight)
    pristine = os.path.join(tmp, "d_pristine")
    train(pristine, extra=["train.stop_at=10"])

    def header_of(path):
        with open(path, "rb") as f:
            return f.read(8 + int.from_bytes(f.read(8), "little"))

    def rng_digits(header):
        at = header.index(b'torch_rng\\":\\"') + len(b'torch_rng\\":\\"')
        return at

    cases = []
    # (name, function(folder) that damages step 10, what the error must say)
    cases.append(("index.pb byte flipped", lambda d: flip(os.path.join(d, "index.pb"), 40),
                  ["index.pb", "checksum mismatch"]))
    cases.append(("safetensors header length changed",
                  lambda d: flip(os.path.join(d, "rank-00000.safetensors"), 1),
                  ["rank-00000.safetensors", "header"]))
    cases.append(("moxie.state step 10 -> 15",
                  lambda d: edit_header(os.path.join(d, "rank-00000.safetensors"),
                                        b'\\"step\\":\\"10\\"', b'\\"step\\":\\"15\\"'),
                  ["rank-00000.safetensors", "does not match the checksum"]))

    def rng(d):
        path = os.path.join(d, "rank-00000.safetensors")
        at = rng_digits(header_of(path)) + 20
        with open(path, "r+b") as f:
            f.seek(at)
            c = f.read(1)
            f.seek(at)
            f.write(b"0" if c != b"0" else b"1")
    cases.append(("RNG state hex digit changed", rng, ["rank-00000.safetensors", "does not match the checksum"]))
    cases.append(("a tensor's dtype F32 -> I32 in the header",
                  lambda d: edit_first_dtype(os.path.join(d, "rank-00000.safetensors")),
                  ["rank-00000.safetensors", "does not match the checksum"]))
    cases.append(("one byte of tensor data flipped",
                  lambda d: flip(os.path.join(d, "rank-00000.safetensors"),
                                 os.path.getsize(os.path.join(d, "rank-00000.safetensors")) - 100),
                  ["rank-00000.safetensors", "do not match their checksum"]))
    cases.append(("rank file truncated by 4 bytes",
                  lambda d: os.truncate(os.path.join(d, "rank-00000.safetensors"),
                                        os.path.getsize(os.path.join(d, "rank-00000.safetensors")) - 4),
                  ["rank-00000.safetensors", "truncated"]))
    for k, (name, damage, says) in enumerate(cases):
        run = os.path.join(tmp, f"d_{k}")
        shutil.copytree(pristine, run)
        newest = os.path.join(run, "checkpoints", "step-00000010")
        damage(newest)
        out = train(run, resume=newest, check=False)
        error = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
        print(f"  [{name}] exit {out.returncode}: {error}")
        expect(out.returncode != 0 and newest in out.stderr and all(w in out.stderr for w in says)
               and "resumed from" not in out.stdout, f"{name}: refused, naming the folder, file and {says[-1]!r}")
        out = train(run, resume="latest", check=False)
        expect(out.returncode == 0 and "falling back to the previous committed checkpoint" in out.stdout
               and "at step 5" in out.stdout, f"{name}: --resume latest falls back to step 5")
        if out.returncode == 0:
            got = losses(run)
            same = all(got.get(step) == reference[step] for step in range(6, 21))
            expect(same, f"{name}: steps 6-20 after the fallback are bitwise the uninterrupted run's")

    # An index of format version 1 (no header records; the frame's version
    # field, bytes 8-11, is outside its checksum) still resumes, and says that
    # its headers were not checked.
    run = os.path.join(tmp, "d_v1")
    shutil.copytree(pristine, run)
    with open(os.path.join(run, "checkpoints", "step-00000010", "index.pb"), "r+b") as f:
        f.seek(8)
        f.write((1).to_bytes(4, "little"))
    out = train(run, resume="latest", check=False)
    expect(out.returncode == 0 and "format version 1" in out.stdout and "at step 10" in out.stdout
           and all(losses(run).get(step) == reference[step] for step in range(11, 21)),
           "an index of format version 1 resumes (headers unchecked, said so), bitwise")


def edit_first_dtype(path):
    """Changes the first "F32" dtype of the header to "I32" (same size, same
    length): the bytes would be read as integers if nothing noticed."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        at = header.index(b'"dtype":"F32"') + len(b'"dtype":"')
        f.seek(8 + at)
        f.write(b"I")


tmp = tempfile.mkdtemp(prefix="moxie-ckpt-")
try:
    # 1. exact resume, one process and dp2 x ep2 with ZeRO-1.
    for name, layout in [("single", dict()), ("dp2xep2_zero1", dict(ranks=4, dp=4, ep=2))] * ("1" in PARTS or "2" in PARTS):
        extra = ["parallel.zero1=true"] if name != "single" else []
        straight, split = os.path.join(tmp, name + "_straight"), os.path.join(tmp, name + "_split")
        train(straight, extra=extra, **layout)
        train(split, extra=extra + ["train.stop_at=10"], **layout)
        out = train(split, extra=extra, resume="latest", **layout)
        expect("resumed from" in out.stdout and "at step 10" in out.stdout, f"{name}: resumed at step 10")
        compare(losses(straight), losses(split), f"exact resume {name}", exact=True)

    # 2. resharding the dp2 x ep2 (ZeRO-1) checkpoint of step 10.
    source = os.path.join(tmp, "dp2xep2_zero1_split", "checkpoints", "step-00000010")
    reference = losses(os.path.join(tmp, "dp2xep2_zero1_straight")) if "2" in PARTS else {}
    for name, layout in [("ep4", dict(ranks=4, dp=4, ep=4)), ("single", dict()),
                         ("tp2xep2", dict(ranks=2, dp=1, tp=2, ep=2))] * ("2" in PARTS):
        run = os.path.join(tmp, "reshard_" + name)
        out = train(run, resume=source, **layout)
        expect("at step 10" in out.stdout, f"reshard to {name}: resumed at step 10")
        compare(reference, losses(run), f"dp2xep2 -> {name}", exact=False)

    # 3. kill -9 during saves (one every step).
    run = os.path.join(tmp, "killed")
    rng = random.Random(7)
    for attempt in range(20 * ("3" in PARTS)):
        sets = BASE + [f"train.run_dir={run}", "train.micro_batch_size=4", "train.steps=100000",
                       "train.checkpoint_every=1", "train.keep_checkpoints=2"]
        cmd = [MOXIE, "train", os.path.join(ROOT, "configs/tiny.yaml")]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        time.sleep(rng.uniform(1.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = sorted(d for d in os.listdir(os.path.join(run, "checkpoints"))
                           if os.path.exists(os.path.join(run, "checkpoints", d, "COMMITTED")))
        if not committed:
            continue  # killed before the first commit: nothing to resume yet
        latest = int(committed[-1].split("-")[1])
        out = train(run, extra=["train.steps=100000", "train.checkpoint_every=1", "train.keep_checkpoints=2",
                                f"train.stop_at={latest + 1}"], resume="latest", check=False)
        expect(out.returncode == 0 and f"at step {latest}" in out.stdout,
               f"kill -9 #{attempt + 1}: resumed from committed step {latest} and trained on"
               + ("" if out.returncode == 0 else f" (exit {out.returncode}: {out.stderr[-500:]})"))

    # 4. damage: a flipped byte, a truncated file.
    run = os.path.join(tmp, "damaged")
    if "4" not in PARTS:
        raise Skip()
    train(run, extra=["train.stop_at=10"])
    newest = os.path.join(run, "checkpoints", "step-00000010")
    rank_file = os.path.join(newest, "rank-00000.safetensors")
    size = os.path.getsize(rank_file)
    with open(rank_file, "r+b") as f:
        f.seek(size - 100)
        b = f.read(1)
        f.seek(size - 100)
        f.write(bytes([b[0] ^ 0x10]))
    out = train(run, resume=newest, check=False)
    expect(out.returncode != 0 and "rank-00000.safetensors" in out.stderr and "checksum" in out.stderr,
           "flipped byte: error names the file and the checksum")
    out = train(run, resume="latest", check=False)
    expect(out.returncode == 0 and "falling back to the previous committed checkpoint" in out.stdout
           and "at step 5" in out.stdout, "flipped byte: --resume latest falls back to step 5")
    run = os.path.join(tmp, "truncated")
    train(run, extra=["train.stop_at=10"])
    newest = os.path.join(run, "checkpoints", "step-00000010")
    rank_file = os.path.join(newest, "rank-00000.safetensors")
    os.truncate(rank_file, os.path.getsize(rank_file) // 2)
    out = train(run, resume=newest, check=False)
    expect(out.returncode != 0 and "rank-00000.safetensors" in out.stderr, "truncated file: error names it")
    uncommitted = os.path.join(run, "checkpoints", "step-00000099")
    shutil.copytree(os.path.join(run, "checkpoints", "step-00000005"), uncommitted)
    os.remove(os.path.join(uncommitted, "COMMITTED"))
    out = train(run, resume=uncommitted, check=False)
    expect(out.returncode != 0 and "never committed" in out.stderr, "a folder without a commit marker is refused")
    out = train(run, resume=os.path.join(tmp, "nowhere"), check=False)
    expect(out.returncode != 0 and "does not exist" in out.stderr, "a missing folder is named")
except Skip:
    pass
try:
    if "5" in PARTS:
        damage_in_each_place()
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
