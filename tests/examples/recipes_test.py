#!/usr/bin/env python3
"""configs/recipes/ run as the README walks through them, shortened: a base
pretrained from configs/tiny.yaml (or examples/multimodal/config.yaml), then
each recipe with only finetune.base, the data paths, the run folder and the
number of steps overridden; the held-out eval loss must fall below the
base's, and the result must export (merged for LoRA).

Usage: recipes_test.py MOXIE REPO_ROOT MULTIMODAL_DATA
"""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import moxie_testing as mt  # noqa: E402
from moxie_testing import expect  # noqa: E402

MOXIE, ROOT, MM = sys.argv[1:4]


def run(program, *args):
    return mt.moxie(program, *args, cwd=ROOT).stdout


def train(config, *sets):
    args = [MOXIE, "train", config, "--set", "train.threads=1"]
    for s in sets:
        args += ["--set", s]
    return run(*args)


def evals(stdout):
    return [float(x) for x in re.findall(r"eval\s+step \d+\s+loss ([0-9.]+)", stdout)]


tmp = tempfile.mkdtemp(prefix="moxie-recipes-")
try:
    base = os.path.join(tmp, "tiny")
    train(os.path.join(ROOT, "configs/tiny.yaml"), f"train.run_dir={base}", "train.steps=60",
          "train.checkpoint_every=60", "train.eval_every=0", "train.micro_batch_size=8")
    sft = os.path.join(tmp, "sft")
    run("bash", os.path.join(ROOT, "examples/sft/make_data.sh"), sft, "600")
    for recipe in ["sft-full", "sft-lora"]:
        out = train(os.path.join(ROOT, "configs/recipes", recipe + ".yaml"),
                    f"finetune.base={base}/checkpoints/step-00000060", f"data.path={sft}/train",
                    f"data.eval_path={sft}/eval", f"train.run_dir={tmp}/{recipe}", "train.steps=60",
                    "train.eval_every=20", "train.checkpoint_every=60", "train.micro_batch_size=8",
                    "train.eval_batches=4")
        e = evals(out)
        expect(len(e) >= 2 and e[-1] < e[0] - 0.1, f"{recipe}: held-out eval loss falls: {e}")
        args = [MOXIE, "export", f"{tmp}/{recipe}/checkpoints/step-00000060", "--hf", f"{tmp}/{recipe}-hf"]
        run(*(args + (["--merge-lora"] if "lora" in recipe else [])))
        expect(os.path.exists(f"{tmp}/{recipe}-hf/model.safetensors"), f"{recipe}: exports")

    mm_base = os.path.join(tmp, "multimodal")
    train(os.path.join(ROOT, "examples/multimodal/config.yaml"), f"train.run_dir={mm_base}",
          f"data.path={MM}/train", f"data.eval_path={MM}/eval", "train.steps=60", "train.checkpoint_every=60",
          "train.eval_every=0")
    out = train(os.path.join(ROOT, "configs/recipes/caption-lora.yaml"),
                f"finetune.base={mm_base}/checkpoints/step-00000060", f"data.path={MM}/caption_train",
                f"data.eval_path={MM}/caption_eval", f"train.run_dir={tmp}/caption", "train.steps=60",
                "train.eval_every=20", "train.checkpoint_every=60")
    e = evals(out)
    expect(len(e) >= 2 and e[-1] < e[0] - 0.1, f"caption-lora: held-out eval loss falls: {e}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
mt.finish()
