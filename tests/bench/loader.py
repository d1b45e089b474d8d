#!/usr/bin/env python3
"""Data loader throughput, in one run, against (1) a plain sequential read of
the same shard files and (2) what a training step consumes.

Builds a dataset from the demo corpus (.data/text, copied COPIES times so the
files outweigh fixed costs), runs build/tests/bench/bench_loader (an epoch
through the loader with packing and prefetch on, and plain reads, both from
disk: the files are dropped from the page cache before every timed pass),
then trains configs/tiny.yaml on the same dataset for a few steps and takes
its median tokens/s. Prints the figures and the two ratios.

Usage: tests/bench/loader.py [--copies 8] [--threads 0 1 2] [--seq-len 4095 --rows 8]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seq-len", type=int, default=4095)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()
    moxie = os.path.join(ROOT, "build/moxie")
    bench = os.path.join(ROOT, "build/tests/bench/bench_loader")
    tmp = tempfile.mkdtemp(prefix="moxie-loader-bench-", dir=os.path.join(ROOT, "build"))
    try:
        src = os.path.join(tmp, "src")
        for i in range(args.copies):
            shutil.copytree(os.path.join(ROOT, ".data/text"), os.path.join(src, f"copy{i}"), symlinks=False)
        ds = os.path.join(tmp, "ds")
        subprocess.run([moxie, "data", "build", src, ds, "--allow-unknown-license",
                        "--samples-per-shard", "256"], check=True, capture_output=True)
        results = {}
        for threads in args.threads:
            for verify in (True, False):
                cmd = [bench, ds, "--threads", str(threads), "--seq-len", str(args.seq_len),
                       "--rows", str(args.rows), "--repeats", str(args.repeats)]
                cmd.append("--verify" if verify else "--no-verify")
                results[threads, verify] = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        run = os.path.join(tmp, "run")
        subprocess.run([moxie, "train", os.path.join(ROOT, "configs/tiny.yaml"), "--set", "data.source=dataset",
                        "--set", f"data.path={ds}", "--set", "model.vocab_size=263",
                        "--set", f"train.steps={args.train_steps}", "--set", "train.log_every=1",
                        "--set", "train.eval_every=0", "--set", f"train.run_dir={run}"],
                       check=True, capture_output=True)
        rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
        train_tps = statistics.median(r["tokens_per_s"] for r in rows if "tokens_per_s" in r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r = next(iter(results.values()))
    print(f"dataset: {r['samples']} samples, {r['file_bytes'] / 1e6:.1f} MB in shard files; "
          f"packing seq_len {args.seq_len} x {args.rows} rows; {args.repeats} alternating repeats "
          f"(medians) of a plain sequential read and a loader epoch, both from disk")
    print("| prefetch threads | verify_shards | plain read MB/s | loader MB/s | samples/s | positions/s "
          "| loader / plain | loader / training |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (threads, verify), x in results.items():
        mark = " (defaults)" if x["defaults"] else ""
        print(f"| {threads}{mark} | {str(verify).lower()}{mark} | {x['plain_read_mb_s']:.0f} | {x['loader_mb_s']:.0f} | "
              f"{x['loader_samples_s']:.0f} | {x['loader_positions_s'] / 1e6:.1f}M | "
              f"{x['ratio_loader_over_plain']:.2f} | {x['loader_positions_s'] / train_tps:.0f}x |")
    print(f"training (configs/tiny.yaml on this dataset, median of {args.train_steps} steps): "
          f"{train_tps:.0f} tokens/s")


if __name__ == "__main__":
    main()
