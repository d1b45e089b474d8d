#!/usr/bin/env python3
"""This machine's fp32 matmul FLOP/s, as the yardstick for moxie's achieved FLOP/s.

torch.mm on square matrices, best of several repetitions per size. LibTorch in
the moxie binary is the same library from the same wheel, so this is the peak
moxie's own matmuls can reach here. Prints one JSON line.

Usage: matmul_peak.py [--threads T]
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = {}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        reps = max(2, int(2e10 / (2 * n ** 3)))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - t0) / reps)
        sizes[n] = 2 * n ** 3 / best
    print(json.dumps({"matmul_flops": max(sizes.values()), "threads": torch.get_num_threads(),
                      "sizes": {str(k): round(v) for k, v in sizes.items()}}))


if __name__ == "__main__":
    main()
