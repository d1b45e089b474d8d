#!/usr/bin/env python3
"""Training tokens/s at 1, 2 and 4 ranks on the same global batch, in one run.

Each world size n trains configs/bench-cpu.yaml with dp = ep = n (experts split
over the ranks), per-rank micro batch = global batch / n, through mpiexec with
one thread per rank (the single-process reference gets all cores). Prints
global tokens/s and the ratio to the single process. On a machine with fewer
cores than ranks the ranks share cores: this measures the framework's
overhead at a layout, not a speed-up.

Usage: tests/bench/scaling.py [--moxie build/moxie] [--ranks 1 2 4] [--steps 8]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moxie", default=os.path.join(ROOT, "build/moxie"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/bench-cpu.yaml"))
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--global-batch", type=int, default=8)
    args = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    results = {}
    for n in args.ranks:
        run_dir = tempfile.mkdtemp(prefix=f"moxie-scale{n}-")
        sets = [f"train.steps={args.steps + args.warmup}", "train.eval_every=0",
                "train.eval_batches=1", f"train.micro_batch_size={args.global_batch // n}",
                f"parallel.dp={n}", f"parallel.ep={n}", f"train.run_dir={run_dir}"]
        cmd = [args.moxie, "train", args.config] + [a for s in sets for a in ("--set", s)]
        if n > 1:
            cmd = ["mpiexec", "-n", str(n), "--oversubscribe", "--bind-to", "none",
                   "-x", "OMP_NUM_THREADS=1"] + cmd
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
        rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
        times = [r["step_time_s"] for r in rows if "step_time_s" in r and r["step"] > args.warmup]
        resolved = subprocess.run([args.moxie, "config", args.config], check=True,
                                  capture_output=True, text=True).stdout
        seq = yaml.safe_load(resolved)["data"]["seq_len"]
        results[n] = args.global_batch * seq / statistics.median(times)
    for n, tps in results.items():
        print(f"{n} rank(s): {tps:8.0f} tokens/s  ({tps / results[args.ranks[0]]:.2f}x of {args.ranks[0]})")
    print(json.dumps({str(k): round(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
