#!/usr/bin/env python3
"""Training throughput: moxie against Hugging Face transformers.

Runs, in one invocation on the same machine: the matmul peak (torch.mm, the
same library LibTorch uses: fp32 on CPU, bf16 on a GPU), then for each config
`moxie train` and hf_train.py (MixtralForCausalLM, or Qwen2MoeForCausalLM
with a shared expert) with each of transformers' expert implementations
(eager: its loop over experts; grouped_mm: its grouped GEMMs), alternating,
on the config's train.device and train.dtype. Prints tokens/s, the ratios,
and each side's achieved FLOP/s over the measured matmul peak and, on a GPU
the script knows, over the datasheet's peak.

Usage: tests/bench/train_vs_hf.py [--config configs/bench-cpu.yaml]...
         [--steps 10] [--warmup 3] [--threads N] [--moxie build/moxie]
         [--set key.path=value]...   (applied to both; e.g. moe.z_loss_coef=0,
                                      which Mixtral does not have)
GPU: tests/bench/train_vs_hf.py --config configs/gpu-1b.yaml --set moe.z_loss_coef=0
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

def resolved_config(binary, path, overrides):
    """The config with every default filled in, as `moxie config` resolves it.

    Writes it to a temporary file too, so that hf_train.py reads exactly the
    values moxie trains with.
    """
    text = subprocess.run([binary, "config", path] + overrides, check=True, capture_output=True,
                          text=True).stdout
    out = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    out.write(text)
    out.close()
    return yaml.safe_load(text), out.name


def flops_per_token(cfg):
    """Training FLOPs per token, PaLM's convention: 6 N_active + 12 L H hd S.

    N_active counts the matmul weights one token uses: attention projections,
    router, top_k experts and the LM head (the embedding lookup is no matmul).
    The attention term counts QK^T and AV forward and backward, full square.
    """
    m, moe, s = cfg["model"], cfg["moe"], cfg["data"]["seq_len"]
    d, heads, kv = m["d_model"], m["n_heads"], m["n_kv_heads"]
    hd = m["head_dim"] or d // heads
    attn = d * heads * hd * 2 + d * kv * hd * 2
    experts = moe["top_k"] * 3 * d * moe["expert_hidden"]
    if moe["num_shared_experts"]:
        shared = moe["shared_expert_hidden"] or moe["expert_hidden"] * moe["num_shared_experts"]
        experts += 3 * d * shared + d  # the shared SwiGLU and its sigmoid gate
    router = d * moe["num_experts"]
    n_active = m["n_layers"] * (attn + experts + router) + d * m["vocab_size"]
    return 6 * n_active + 12 * m["n_layers"] * heads * hd * s


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_moxie(binary, config, steps, warmup, threads, overrides):
    run_dir = tempfile.mkdtemp(prefix="moxie-bench-")
    cmd = [binary, "train", config] + overrides + ["--set", f"train.steps={steps + warmup}",
           "--set", f"train.run_dir={run_dir}", "--set", "train.eval_every=0",
           "--set", "train.eval_batches=1", "--set", f"train.log_every={steps + warmup}",
           "--set", "train.checkpoint_every=0"]
    if threads:
        cmd += ["--set", f"train.threads={threads}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    times = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "step_time_s" in row and row["step"] > warmup:
                times.append(row["step_time_s"])
    return sum(times) / len(times)


def bench_config(args, config, overrides, peak_flops, thread_args):
    cfg, resolved_path = resolved_config(args.moxie, config, overrides)
    tokens_per_step = cfg["train"]["micro_batch_size"] * cfg["data"]["seq_len"]
    # Alternate moxie and HF so that machine noise hits all alike; report medians.
    runs = {"moxie": []}
    runs.update({impl: [] for impl in args.hf_experts})
    hf_info = {}
    for _ in range(args.repeats):
        step = run_moxie(args.moxie, config, args.steps, args.warmup, args.threads, overrides)
        runs["moxie"].append(tokens_per_step / step)
        for impl in args.hf_experts:
            try:
                r = run_json([sys.executable, os.path.join(HERE, "hf_train.py"), resolved_path,
                              "--steps", str(args.steps), "--warmup", str(args.warmup),
                              "--experts", impl] + thread_args)
            except subprocess.CalledProcessError as e:
                hf_info[impl] = {"error": (e.stderr or "").strip().splitlines()[-1:]}
                continue
            runs[impl].append(r["tokens_per_s"])
            hf_info[impl] = r
    fpt = flops_per_token(cfg)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    result = {
        "config": os.path.relpath(config, ROOT), "tokens_per_step": tokens_per_step,
        "flops_per_token": fpt, "matmul_peak_flops": peak_flops,
        "tokens_per_s": {k: round(v, 1) for k, v in med.items()},
        "fraction_of_matmul_peak": {k: round(fpt * v / peak_flops, 3) for k, v in med.items()},
        "moxie_over": {k: round(med["moxie"] / v, 3) for k, v in med.items() if k != "moxie"},
        "runs_tokens_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
        "hf": hf_info, "device": cfg["train"]["device"], "dtype": cfg["train"]["dtype"],
    }
    for k, v in med.items():
        print(f"{result['config']}: {k:10s} {v:9,.0f} tok/s  {fpt * v / peak_flops:6.1%} of matmul peak"
              + (f"  moxie/this {med['moxie'] / v:.2f}x" if k != "moxie" else ""))
    for k, v in hf_info.items():
        if "error" in v:
            print(f"{result['config']}: HF {k} failed: {v['error']}")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", default=[],
                    help="repeatable; default configs/bench-cpu.yaml and configs/bench-cpu-fine.yaml")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternate moxie and HF this many times; report medians")
    ap.add_argument("--moxie", default=os.path.join(ROOT, "build/moxie"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--hf-experts", default="eager,grouped_mm",
                    help="comma-separated transformers expert implementations "
                         "(eager, grouped_mm, batched_mm)")
    args = ap.parse_args()
    args.hf_experts = [x for x in args.hf_experts.split(",") if x]
    configs = args.config or [os.path.join(ROOT, "configs/bench-cpu.yaml"),
                              os.path.join(ROOT, "configs/bench-cpu-fine.yaml")]
    overrides = [x for kv in args.set for x in ("--set", kv)]
    thread_args = ["--threads", str(args.threads)] if args.threads else []
    cfg0, _ = resolved_config(args.moxie, configs[0], overrides)
    peak = run_json([sys.executable, os.path.join(HERE, "matmul_peak.py"), "--device",
                     cfg0["train"]["device"], "--dtype", cfg0["train"]["dtype"]] + thread_args)
    print(f"measured matmul peak {peak['matmul_flops'] / 1e9:.1f} GFLOP/s"
          + (f" (datasheet {peak['datasheet_flops'] / 1e12:.0f} TFLOP/s)"
             if peak.get("datasheet_flops") else ""))
    results = [bench_config(args, c, overrides, peak["matmul_flops"], thread_args) for c in configs]
    print(json.dumps({"matmul_peak": peak, "configs": results}))


if __name__ == "__main__":
    main()
