#!/usr/bin/env python3
"""This machine's matmul FLOP/s, the yardstick for moxie's achieved FLOP/s.

CPU (default): fp32 torch.mm on square matrices, best of several repetitions
per size. CUDA (--device cuda, bf16 by default): the same on the GPU, timed
with CUDA events after a warm-up, sizes up to 16384. LibTorch in the moxie
binary is the same library from the same wheel, so this is the peak moxie's
own matmuls can reach here. Also prints the datasheet's dense peak for the
GPUs it knows. One JSON line.

Usage: matmul_peak.py [--threads T] [--device cpu|cuda] [--dtype float32|bfloat16]
"""
import argparse
import json
import time

import torch

# Dense (no sparsity) tensor-core peaks from NVIDIA's datasheets, FLOP/s.
DATASHEET = {
    ("H100 80GB HBM3", "bfloat16"): 989.4e12,   # H100 SXM5
    ("H100 PCIe", "bfloat16"): 756.5e12,
    ("H100 NVL", "bfloat16"): 835.5e12,
    ("H200", "bfloat16"): 989.4e12,              # H200 SXM: the H100 SXM's tensor cores
    ("A100-SXM4-80GB", "bfloat16"): 312e12,
    ("A100-SXM4-40GB", "bfloat16"): 312e12,
}


def datasheet_peak(name, dtype):
    for (key, dt), flops in DATASHEET.items():
        if key in name and dt == dtype:
            return flops
    return None


def cpu_peak(dtype):
    sizes = {}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        reps = max(2, int(2e10 / (2 * n ** 3)))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - t0) / reps)
        sizes[n] = 2 * n ** 3 / best
    return sizes


def cuda_peak(dtype):
    sizes = {}
    for n in (4096, 8192, 16384):
        a = torch.randn(n, n, dtype=dtype, device="cuda")
        b = torch.randn(n, n, dtype=dtype, device="cuda")
        for _ in range(3):
            torch.mm(a, b)
        reps = max(3, int(2e14 / (2 * n ** 3)))
        best = float("inf")
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                torch.mm(a, b)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / reps)
        sizes[n] = 2 * n ** 3 / best
        del a, b
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype_name = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    result = {"device": args.device, "dtype": dtype_name, "threads": torch.get_num_threads()}
    if args.device == "cuda":
        sizes = cuda_peak(dtype)
        name = torch.cuda.get_device_name()
        result.update(gpu=name, datasheet_flops=datasheet_peak(name, dtype_name))
    else:
        sizes = cpu_peak(dtype)
    result["matmul_flops"] = max(sizes.values())
    result["sizes"] = {str(k): round(v) for k, v in sizes.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
