#!/usr/bin/env python3
"""Training throughput: moxie against Hugging Face's MixtralForCausalLM.

Runs, in one invocation on the same machine: the matmul peak (torch.mm, the
same library LibTorch uses: fp32 on CPU, bf16 on a GPU), `moxie train` on the
config, and hf_train.py on the same config, on the config's train.device and
train.dtype. Prints tokens/s for both, the ratio, and moxie's achieved FLOP/s
(model FLOPs utilisation) over the measured matmul peak and, on a GPU the
script knows, over the datasheet's peak.

Usage: tests/bench/train_vs_hf.py [--config configs/bench-cpu.yaml]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/bench-cpu.yaml"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternate moxie and HF this many times; report medians")
    ap.add_argument("--moxie", default=os.path.join(ROOT, "build/moxie"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--hf-experts", default="eager", choices=["eager", "grouped_mm", "batched_mm"],
                    help="transformers' expert implementation (eager: its loop over experts)")
    args = ap.parse_args()
    overrides = [x for kv in args.set for x in ("--set", kv)]

    cfg, resolved_path = resolved_config(args.moxie, args.config, overrides)
    device = cfg["train"]["device"]
    tokens_per_step = cfg["train"]["micro_batch_size"] * cfg["data"]["seq_len"]
    thread_args = ["--threads", str(args.threads)] if args.threads else []

    peak = run_json([sys.executable, os.path.join(HERE, "matmul_peak.py"), "--device", device,
                     "--dtype", cfg["train"]["dtype"]] + thread_args)
    # Alternate the two so that machine noise hits both alike; report medians.
    moxie_runs, hf_runs = [], []
    for _ in range(args.repeats):
        step = run_moxie(args.moxie, args.config, args.steps, args.warmup, args.threads, overrides)
        moxie_runs.append(tokens_per_step / step)
        hf_runs.append(run_json([sys.executable, os.path.join(HERE, "hf_train.py"), resolved_path,
                                 "--steps", str(args.steps), "--warmup", str(args.warmup),
                                 "--experts", args.hf_experts]
                                + thread_args))
    moxie_tps = statistics.median(moxie_runs)
    hf = dict(hf_runs[0])
    hf["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in hf_runs)
    hf["step_time_s"] = tokens_per_step / hf["tokens_per_s"]
    fpt = flops_per_token(cfg)
    result = {
        "config": os.path.relpath(args.config, ROOT),
        "tokens_per_step": tokens_per_step,
        "moxie_tokens_per_s": round(moxie_tps, 1),
        "hf_tokens_per_s": round(hf["tokens_per_s"], 1),
        "ratio_moxie_over_hf": round(moxie_tps / hf["tokens_per_s"], 3),
        "flops_per_token": fpt,
        "matmul_peak_flops": peak["matmul_flops"],
        "moxie_achieved_flops": round(fpt * moxie_tps),
        "moxie_fraction_of_matmul_peak": round(fpt * moxie_tps / peak["matmul_flops"], 3),
        "hf_fraction_of_matmul_peak": round(fpt * hf["tokens_per_s"] / peak["matmul_flops"], 3),
        "device": device,
        "dtype": cfg["train"]["dtype"],
        "gpu": peak.get("gpu"),
        "datasheet_peak_flops": peak.get("datasheet_flops"),
        "moxie_fraction_of_datasheet_peak": (round(fpt * moxie_tps / peak["datasheet_flops"], 3)
                                             if peak.get("datasheet_flops") else None),
        "moxie_runs_tokens_per_s": [round(x) for x in moxie_runs],
        "hf_runs_tokens_per_s": [round(r["tokens_per_s"]) for r in hf_runs],
        "hf": hf,
    }
    print(f"moxie {moxie_tps:,.0f} tok/s | HF transformers {hf['tokens_per_s']:,.0f} tok/s | "
          f"ratio {result['ratio_moxie_over_hf']:.2f}x")
    print(f"moxie achieved {fpt * moxie_tps / 1e9:.2f} GFLOP/s = "
          f"{result['moxie_fraction_of_matmul_peak']:.1%} of measured matmul peak "
          f"{peak['matmul_flops'] / 1e9:.1f} GFLOP/s"
          + (f", {result['moxie_fraction_of_datasheet_peak']:.1%} of the datasheet's "
             f"{peak['datasheet_flops'] / 1e12:.0f} TFLOP/s" if peak.get("datasheet_flops") else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
