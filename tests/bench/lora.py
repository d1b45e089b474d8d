#!/usr/bin/env python3
"""LoRA against full fine-tuning of the same model in the same run: peak
memory (the process's maximum resident set) and step time.

The model is configs/bench-cpu.yaml's (13.5M parameters; vocabulary 264 for
the byte-level dataset); a base checkpoint of it is saved once, then full
fine-tuning, LoRA rank 8 on q/k/v/o and the experts, and LoRA rank 8 on
q/k/v/o alone alternate, each for
the same steps on examples/sft's records, --repeats times each. Medians of
the per-run median step time (steps 3 and later) and of the peak RSS.

Usage: tests/bench/lora.py [--repeats 3] [--steps 12]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOXIE = os.path.join(ROOT, "build/moxie")


def moxie(args, cwd=ROOT):
    """Runs moxie under /usr/bin/time; returns (stdout, peak RSS in bytes)."""
    out = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb %M", MOXIE] + args, capture_output=True, text=True,
                         cwd=cwd, check=True)
    rss = int(re.search(r"peak_rss_kb (\d+)", out.stderr).group(1)) * 1024
    return out.stdout, rss


def sets(pairs):
    out = []
    for p in pairs:
        out += ["--set", p]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="moxie-lora-bench-", dir=os.path.join(ROOT, "build"))
    try:
        base_run = os.path.join(tmp, "base")
        moxie(["train", "configs/bench-cpu.yaml"] + sets([
            f"train.run_dir={base_run}", "train.steps=1", "train.checkpoint_every=1", "model.vocab_size=264",
            "data.path=.data/text"]))
        data = os.path.join(tmp, "sft")
        subprocess.run(["bash", "examples/sft/make_data.sh", data, "2000"], cwd=ROOT, check=True,
                       capture_output=True)
        ft_config = os.path.join(tmp, "finetune.yaml")
        with open(ft_config, "w") as f:
            f.write("train:\n  seed: 1\n")
        common = [f"finetune.base={base_run}/checkpoints/step-00000001", "data.source=dataset",
                  f"data.path={data}/train", "data.seq_len=128", f"train.steps={args.steps}",
                  "train.micro_batch_size=8", "train.eval_every=0", "train.eval_batches=1", "train.log_every=1",
                  "optim.lr=1e-3", "optim.min_lr=1e-4", "schedule.warmup_steps=2"]
        kinds = {"full": [],
                 "lora": ["lora.rank=8", "lora.alpha=16", "lora.targets=[q_proj,k_proj,v_proj,o_proj,experts]"],
                 "lora-attn": ["lora.rank=8", "lora.alpha=16", "lora.targets=[q_proj,k_proj,v_proj,o_proj]"]}
        results = {k: [] for k in kinds}
        trainable = {}
        for r in range(args.repeats):
            for kind, extra in kinds.items():
                run_dir = os.path.join(tmp, f"{kind}{r}")
                log, rss = moxie(["train", ft_config] + sets(common + extra + [f"train.run_dir={run_dir}"]))
                times = [json.loads(l)["step_time_s"] for l in open(os.path.join(run_dir, "metrics.jsonl"))
                         if "step_time_s" in l][2:]
                results[kind].append((statistics.median(times), rss))
                m = re.search(r"(\d+) of (\d+) parameters on this rank train", log)
                trainable[kind] = (int(m.group(1)), int(m.group(2))) if m else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in results.items()}
    ft, fm = med["full"]
    print(f"LoRA vs full fine-tuning, configs/bench-cpu.yaml model, {args.steps} steps of 8 x 128, "
          f"{args.repeats} alternating runs each, medians")
    print(f"full: step {ft * 1e3:.0f} ms, peak RSS {fm / 2**20:.0f} MiB")
    for kind in ["lora", "lora-attn"]:
        lt, lm = med[kind]
        what = "q/k/v/o + experts" if kind == "lora" else "q/k/v/o"
        n = f"{trainable[kind][0]:,} of {trainable[kind][1]:,} parameters train" if trainable[kind] else ""
        print(f"{kind} ({what}; {n}): step {lt * 1e3:.0f} ms -> {lt / ft:.2f} of full; "
              f"peak RSS {lm / 2**20:.0f} MiB -> {lm / fm:.2f} of full")


if __name__ == "__main__":
    main()
