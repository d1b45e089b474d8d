#!/usr/bin/env python3
"""Fine-tuning with LoRA end to end, with real `moxie` runs (and mpiexec):

A base model is pretrained on the docs text; supervised fine-tuning records
("Answer: WORD." after a prompt naming WORD) are built into a dataset, with
held-out words for evaluation. Then:

1. a LoRA run (attention, router and experts adapted) from finetune.base
   trains only adapters: its checkpoints hold adapters and their optimizer
   state only, the exported base weights equal the base's bitwise, and its
   eval loss falls clearly below the base model's on the held-out records;
2. `export --merge-lora` gives the same logits as the unmerged model (moxie
   generate on the run's checkpoint), and transformers reads the merged
   folder with those logits; `export --peft DIR` (attention and router
   adapters) loads with Hugging Face peft onto the exported base with the
   same logits;
3. the same LoRA run at dp2 x ep2 (4 ranks) and at tp2 (2 ranks) matches the
   single-process losses (rtol 2e-5, as the layout parity tests);
4. full fine-tuning with finetune.freeze=[router] leaves every router weight
   bitwise as the base's while the rest moves; finetune.router_lr=1e-6 moves
   the routers a millionth as far; early stopping stops after
   early_stop_patience evaluations without a lower eval loss.
Exit 77 when transformers or peft is missing.

Usage: lora_test.py MOXIE REPO_ROOT MPIEXEC
"""
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import moxie_testing as mt  # noqa: E402
from moxie_testing import expect  # noqa: E402

MOXIE, ROOT, MPIEXEC = sys.argv[1:4]
mt.skip_unless_importable("torch", "peft", "safetensors", "transformers")
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import MixtralForCausalLM  # noqa: E402

MODEL = mt.SMALL_MOE + ["model.vocab_size=264"]
COMMON = ["train.eval_batches=4", "train.log_every=1", "train.threads=1", "optim.lr=3e-3",
          "schedule.warmup_steps=5"]
PROMPT = [256] + list(b"<|user|>\nsay function\n<|assistant|>\n")


def moxie(*args, ranks=1, check=True):
    return mt.moxie(MOXIE, *args, ranks=ranks, mpiexec=MPIEXEC, check=check)


def train(run, sets, ranks=1, config=None):
    return mt.train(MOXIE, config or os.path.join(ROOT, "configs/tiny.yaml"), run, sets, ranks=ranks,
                    mpiexec=MPIEXEC)


def finetune(run, sets, ranks=1):
    """A fine-tuning config has no model or moe section: finetune.base gives them."""
    return train(run, sets, ranks, config=FT_CONFIG)


def losses(run):
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "grad_norm" in r}


def final_eval(stdout):
    return float(re.findall(r"eval loss ([0-9.]+)", stdout)[-1])


def logits(checkpoint, path):
    return mt.generate(MOXIE, checkpoint, PROMPT, path, max_new=1)[0]


with mt.scratch_dir("moxie-lora-") as tmp:
    FT_CONFIG = os.path.join(tmp, "finetune.yaml")
    with open(FT_CONFIG, "w") as f:
        f.write("train:\n  seed: 3\n")
    # The base: pretrained on the docs text.
    base_run = os.path.join(tmp, "base")
    train(base_run, MODEL + COMMON + ["train.steps=150", "train.eval_every=0", "train.checkpoint_every=150",
                                      "data.seq_len=64", f"data.path={os.path.join(ROOT, '.data/text')}"])
    base = os.path.join(base_run, "checkpoints", "step-00000150")

    # SFT records from real words of the docs; held-out words for evaluation.
    text = open(os.path.join(ROOT, ".data/text", sorted(os.listdir(os.path.join(ROOT, ".data/text")))[0]),
                errors="ignore").read()
    words = sorted({w for w in re.findall(r"\b[a-z]{4,9}\b", text)})
    random.Random(5).shuffle(words)
    held_out, train_words = words[:40], words[40:400]
    for name, ws in [("sft", train_words), ("sft_eval", held_out)]:
        src = os.path.join(tmp, name + "_src")
        os.makedirs(src)
        with open(os.path.join(src, "records.jsonl"), "w") as f:
            for w in ws:
                f.write(json.dumps({"prompt": f"say {w}", "response": f"Answer: {w}."}) + "\n")
        moxie("data", "build", src, os.path.join(tmp, name), "--allow-unknown-license")
    data = ["data.source=dataset", f"data.path={os.path.join(tmp, 'sft')}",
            f"data.eval_path={os.path.join(tmp, 'sft_eval')}", "data.seq_len=64"]
    lora = [f"finetune.base={base}", "lora.rank=4", "lora.alpha=8",
            "lora.targets=[q_proj,k_proj,v_proj,o_proj,router,experts]"]

    # 1. LoRA trains adapters only, and learns the task.
    run = os.path.join(tmp, "lora")
    out = finetune(run, COMMON + data + lora + ["train.steps=120", "train.eval_every=0", "train.checkpoint_every=120",
                                             "train.micro_batch_size=8"])
    tuned = final_eval(out)
    before = final_eval(finetune(os.path.join(tmp, "untuned"), COMMON + data + lora + [
        "train.steps=1", "optim.lr=1e-12", "optim.min_lr=0", "train.eval_every=0", "train.micro_batch_size=8"]))
    expect(tuned < before - 0.5, f"held-out eval loss on the responses: {before:.3f} for the base, {tuned:.3f} "
                                 f"after LoRA (must fall by > 0.5 nats/token)")
    ckpt = os.path.join(run, "checkpoints", "step-00000120")
    names = []
    for f in os.listdir(ckpt):
        if f.endswith(".safetensors"):
            names += list(load_file(os.path.join(ckpt, f)).keys())
    model_names = [n for n in names if n.startswith("model/")]
    optim_names = [n for n in names if n.startswith("optim/")]
    expect(model_names and all("lora_" in n for n in model_names),
           f"the run's checkpoint holds only adapter weights ({len(model_names)}), not the frozen base")
    expect(optim_names and all("lora_" in n for n in optim_names),
           f"optimizer state exists only for adapters ({len(optim_names)} tensors)")

    base_hf, merged_hf = os.path.join(tmp, "base_hf"), os.path.join(tmp, "merged_hf")
    moxie("export", base, "--hf", base_hf)
    unmerged_hf, peft_dir = os.path.join(tmp, "unmerged_hf"), os.path.join(tmp, "peft")
    refused = moxie("export", ckpt, "--hf", unmerged_hf, check=False)
    expect(refused.returncode != 0 and "--merge-lora" in refused.stderr,
           "exporting a LoRA checkpoint asks for --merge-lora or --peft")
    out = moxie("export", ckpt, "--hf", unmerged_hf, "--peft", peft_dir, check=False)
    expect(out.returncode != 0 and "--merge-lora" in out.stderr,
           "--peft refuses expert adapters, pointing at --merge-lora: " + out.stderr.strip()[-200:])
    a, b = load_file(os.path.join(base_hf, "model.safetensors")), None

    # 2. Merged export = unmerged model.
    moxie("export", ckpt, "--hf", merged_hf, "--merge-lora")
    ours = logits(ckpt, os.path.join(tmp, "ours.safetensors"))
    merged = MixtralForCausalLM.from_pretrained(merged_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = merged(torch.tensor([PROMPT])).logits[0].double()
    diff = (ours - theirs).abs().max().item()
    expect(diff < 1e-4, f"merged export in transformers vs the unmerged moxie model: logits differ by {diff:.2e}")

    # PEFT: attention and router adapters on the exported base.
    run2 = os.path.join(tmp, "lora_attn")
    finetune(run2, COMMON + data + [f"finetune.base={base}", "lora.rank=4", "lora.alpha=8",
                                 "lora.targets=[q_proj,v_proj,o_proj,router]", "train.steps=40",
                                 "train.eval_every=0", "train.checkpoint_every=40", "train.micro_batch_size=8"])
    ckpt2 = os.path.join(run2, "checkpoints", "step-00000040")
    moxie("export", ckpt2, "--hf", unmerged_hf, "--peft", peft_dir)
    b = load_file(os.path.join(unmerged_hf, "model.safetensors"))
    expect(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
           f"the base weights after LoRA equal the base's bitwise ({len(a)} tensors)")
    ours2 = logits(ckpt2, os.path.join(tmp, "ours2.safetensors"))
    base_model = MixtralForCausalLM.from_pretrained(unmerged_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        plain = base_model(torch.tensor([PROMPT])).logits[0].double()
        adapted = PeftModel.from_pretrained(base_model, peft_dir).eval()
        theirs2 = adapted(torch.tensor([PROMPT])).logits[0].double()
    diff = (ours2 - theirs2).abs().max().item()
    moved = (ours2 - plain).abs().max().item()
    expect(diff < 1e-4 and moved > 1e-3,
           f"peft adapters on the exported base: logits differ by {diff:.2e} from moxie's (the adapters move them "
           f"by {moved:.2e})")

    # 3. Layouts: the same LoRA run at dp2 x ep2 and tp2.
    short = COMMON + data + lora + ["train.steps=6", "train.eval_every=0", "train.micro_batch_size=4"]
    ref_run = os.path.join(tmp, "ref")
    finetune(ref_run, short)
    ref = losses(ref_run)
    for name, ranks, sets in [("dp2xep2", 4, ["parallel.dp=4", "parallel.ep=2", "train.micro_batch_size=1"]),
                              ("tp2", 2, ["parallel.tp=2"])]:
        lay = os.path.join(tmp, name)
        finetune(lay, short + sets, ranks=ranks)
        got = losses(lay)
        worst = max(abs(got[s] - ref[s]) / abs(ref[s]) for s in ref)
        expect(got.keys() == ref.keys() and worst < 2e-5,
               f"LoRA at {name}: losses of {len(ref)} steps match one process (worst relative {worst:.1e})")

    # The base held in bfloat16 (train.dtype): adapters train, the base stays frozen.
    bf_run = os.path.join(tmp, "lora_bf16")
    out = finetune(bf_run, COMMON + data + lora + ["train.dtype=bfloat16", "train.steps=40", "train.eval_every=20",
                                                  "train.checkpoint_every=40", "train.micro_batch_size=8"])
    e = [float(x) for x in re.findall(r"eval\s+step \d+\s+loss ([0-9.]+)", out)]
    bf = load_file(os.path.join(bf_run, "checkpoints", "step-00000040", "rank-00000.safetensors"))
    bf_model = {k: v for k, v in bf.items() if k.startswith("model/")}
    expect(len(e) == 2 and e[1] < e[0] and e[0] < before and
           all("lora_" in k and v.dtype == torch.bfloat16 for k, v in bf_model.items()),
           f"LoRA over a bfloat16 base: eval loss {before:.3f} -> {e}, checkpoint holds {len(bf_model)} bf16 adapters only")

    # 4. Full fine-tuning options.
    def exported(run, step):
        out_dir = os.path.join(tmp, os.path.basename(run) + "_hf")
        moxie("export", os.path.join(run, "checkpoints", f"step-{step:08d}"), "--hf", out_dir)
        return load_file(os.path.join(out_dir, "model.safetensors"))

    full = COMMON + data + [f"finetune.base={base}", "train.steps=10", "train.eval_every=0",
                            "train.checkpoint_every=10", "train.micro_batch_size=8"]
    router = lambda k: ".block_sparse_moe.gate." in k
    frozen_run = os.path.join(tmp, "frozen_router")
    finetune(frozen_run, full + ["finetune.freeze=[router]"])
    f = exported(frozen_run, 10)
    routers = [k for k in a if router(k)]
    expect(routers and all(torch.equal(a[k], f[k]) for k in routers),
           f"finetune.freeze=[router]: all {len(routers)} router weights equal the base's bitwise")
    expect(all(not torch.equal(a[k], f[k]) for k in a if "q_proj" in k), "while the attention weights moved")
    slow_run = os.path.join(tmp, "slow_router")
    finetune(slow_run, full + ["finetune.router_lr=1e-6"])
    g = exported(slow_run, 10)
    router_move = max((g[k] - a[k]).abs().max().item() for k in routers)
    other_move = max((g[k] - a[k]).abs().max().item() for k in a if "q_proj" in k)
    expect(router_move < 1e-6 * 100 * other_move and other_move > 1e-4,
           f"finetune.router_lr=1e-6: routers moved {router_move:.1e}, attention {other_move:.1e}")
    out = finetune(os.path.join(tmp, "early"), COMMON + data + [
        f"finetune.base={base}", "train.steps=20", "optim.lr=1e-12", "optim.min_lr=0", "train.eval_every=2",
        "finetune.early_stop_patience=1", "train.micro_batch_size=8"])
    expect("stopped early after step 4" in out,
           "early_stop_patience=1 with a learning rate too small to move a weight: stopped after step 4 "
           "(evaluations at 2 and 4)")
mt.finish()
