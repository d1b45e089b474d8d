#!/usr/bin/env python3
"""Checkpoint save and load throughput against a plain write and read of the
same number of bytes on the same disk, and the training stall an
asynchronous save causes, in one run.

Trains configs/bench-cpu.yaml (one process) for 16 steps with a checkpoint
every 4: each save copies the tensors (training waits), a background thread
writes them while the next step runs, and the commit follows a step later.
Then: `dd` of the same bytes with fsync (plain write; also with
oflag=direct, as moxie writes), a resume (load) and a
plain read of the checkpoint's files, both from disk (page cache dropped
with posix_fadvise). Stall per save = the copy + how much longer the step
that runs beside the write takes than the median step without one.

Usage: tests/bench/checkpoint.py [--repeats 3]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOXIE = os.path.join(ROOT, "build/moxie")


def drop_cache(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def files_in(d):
    return [os.path.join(d, f) for f in sorted(os.listdir(d))]


def run(args):
    out = subprocess.run([MOXIE] + args, capture_output=True, text=True, check=True)
    return out.stdout


def one(tmp, steps=16, every=4):
    run_dir = os.path.join(tmp, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"train.run_dir={run_dir}", f"train.steps={steps}", f"train.checkpoint_every={every}",
            "train.log_every=1", "train.keep_checkpoints=100", f"data.path={os.path.join(ROOT, '.data/text')}"]
    args = ["train", os.path.join(ROOT, "configs/bench-cpu.yaml")]
    for s in sets:
        args += ["--set", s]
    log = run(args)
    saves = [(float(b), float(w), float(c)) for b, w, c in
             re.findall(r"wrote (\d+) bytes in ([0-9.e-]+) s in the background after a ([0-9.e-]+) s copy", log)]
    times = {r["step"]: r["step_time_s"] for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl")))
             if "step_time_s" in r}
    beside_write = {s + 1 for s in range(every, steps, every)}  # the step that runs while the write does
    normal = statistics.median(t for s, t in times.items() if s not in beside_write and s > 2)
    extra = statistics.median(times[s] - normal for s in beside_write if s in times)
    copy = statistics.median(c for _, _, c in saves)
    nbytes = saves[0][0]
    # Saves during training share the cores with it; the last one (after the
    # last step) has the machine to itself.
    write_s = statistics.median(w for _, w, _ in saves[:-1])
    final_write_s = saves[-1][1]

    # Plain write of the same bytes on the same disk: through the page cache
    # with fsync (the reference), and with O_DIRECT (as moxie writes).
    plain = os.path.join(tmp, "plain.bin")
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={plain}", "bs=1M", f"count={int(nbytes) // (1 << 20)}",
                    "conv=fsync"], check=True, capture_output=True)
    dd_s = time.perf_counter() - t0
    dd_bytes = (int(nbytes) // (1 << 20)) << 20
    os.remove(plain)
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={plain}", "bs=16M", f"count={int(nbytes) // (16 << 20)}",
                    "oflag=direct", "conv=fsync"], check=True, capture_output=True)
    dd_direct_s = time.perf_counter() - t0
    dd_direct_bytes = (int(nbytes) // (16 << 20)) << 24

    # Load (resume) and plain read of the same files, from disk.
    ckpt = os.path.join(run_dir, "checkpoints", f"step-{steps:08d}")
    drop_cache(files_in(ckpt))
    resume = run(["train", os.path.join(ROOT, "configs/bench-cpu.yaml"), "--resume", ckpt] +
                 sum((["--set", s] for s in sets[:1] + [f"train.steps={steps + 1}", f"train.checkpoint_every={every}",
                                                         "train.log_every=1", f"train.stop_at={steps + 1}",
                                                         f"data.path={os.path.join(ROOT, '.data/text')}"]), []))
    load_s = float(re.search(r"rank 0 loaded in ([0-9.e-]+) s", resume).group(1))
    ckpt_bytes = sum(os.path.getsize(f) for f in files_in(ckpt))
    drop_cache(files_in(ckpt))
    t0 = time.perf_counter()
    for f in files_in(ckpt):
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    read_s = time.perf_counter() - t0
    os.remove(plain)
    return dict(bytes=nbytes, write_s=write_s, final_write_s=final_write_s, dd_s=dd_s, dd_bytes=dd_bytes,
                dd_direct_s=dd_direct_s, dd_direct_bytes=dd_direct_bytes, load_s=load_s, read_s=read_s,
                ckpt_bytes=ckpt_bytes, copy_s=copy, extra_s=extra, step_s=normal)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="moxie-ckpt-bench-", dir=os.path.join(ROOT, "build"))
    try:
        rs = [one(tmp) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = lambda k: statistics.median(r[k] for r in rs)
    save_mb = med("bytes") / med("write_s") / 1e6
    final_mb = med("bytes") / med("final_write_s") / 1e6
    dd_mb = med("dd_bytes") / med("dd_s") / 1e6
    dd_direct_mb = med("dd_direct_bytes") / med("dd_direct_s") / 1e6
    load_mb = med("ckpt_bytes") / med("load_s") / 1e6
    read_mb = med("ckpt_bytes") / med("read_s") / 1e6
    stall = (med("copy_s") + max(0.0, med("extra_s"))) / med("step_s")
    print(f"checkpoint: {med('bytes') / 1e6:.1f} MB per save (parameters, AdamW moments, step counts); "
          f"{args.repeats} runs, medians")
    print(f"save, background write beside training: {save_mb:.0f} MB/s vs dd with fsync {dd_mb:.0f} MB/s "
          f"-> {save_mb / dd_mb:.2f}")
    print(f"save, the final one (training done): {final_mb:.0f} MB/s -> {final_mb / dd_mb:.2f} of dd "
          f"({final_mb / dd_direct_mb:.2f} of dd oflag=direct at {dd_direct_mb:.0f} MB/s)")
    print(f"load (resume, from disk): {load_mb:.0f} MB/s vs plain read {read_mb:.0f} MB/s -> {load_mb / read_mb:.2f}")
    print(f"stall per save: copy {med('copy_s') * 1e3:.1f} ms + slower step beside the write "
          f"{med('extra_s') * 1e3:.1f} ms over a {med('step_s') * 1e3:.0f} ms step -> {stall * 100:.1f}% of one step")


if __name__ == "__main__":
    main()
