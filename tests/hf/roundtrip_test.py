#!/usr/bin/env python3
"""Hugging Face round trip, for MixtralForCausalLM and (shared experts, dense
layers, q/k/v biases, no top-k renormalisation) Qwen2MoeForCausalLM: a
trained moxie checkpoint exported with `moxie export --hf` loads in
transformers (no download) with the same logits (1e-4); `moxie import --hf`
turns that folder back into a checkpoint with the same logits again, which
fine-tunes under mpiexec at another layout; greedy `moxie generate` and
transformers' greedy `generate` give the same tokens. Then folders that
transformers itself wrote (random weights, sharded with an index, a Qwen2-MoE
with every other layer sparse) import with the same logits. Exit 77 when
transformers is missing.

Usage: roundtrip_test.py MOXIE REPO_ROOT MPIEXEC
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import moxie_testing as mt  # noqa: E402
from moxie_testing import expect  # noqa: E402

MOXIE, ROOT, MPIEXEC = sys.argv[1:4]
mt.skip_unless_importable("torch", "safetensors", "transformers")
import torch  # noqa: E402
from transformers import MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM  # noqa: E402

SETS = mt.SMALL_MOE + ["model.vocab_size=260", "data.seq_len=64", "train.steps=200", "train.eval_every=0",
                       "train.eval_batches=1", "train.log_every=50", "train.threads=1", "train.checkpoint_every=200",
                       "optim.lr=3e-3", f"data.path={os.path.join(ROOT, '.data/text')}"]
PROMPT = [256] + list(b"The function returns the ")


def moxie(*args, ranks=1):
    return mt.moxie(MOXIE, *args, ranks=ranks, mpiexec=MPIEXEC).stdout


def moxie_logits(checkpoint, path):
    return mt.generate(MOXIE, checkpoint, PROMPT, path, max_new=20)


QWEN = ["model.n_layers=3", "model.first_k_dense=1", "model.ffn_hidden=96", "model.qkv_bias=true",
        "moe.num_shared_experts=1", "moe.shared_expert_hidden=40", "moe.renormalize=false"]


def hf_logits_and_tokens(model):
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0].double()
        tokens = model.generate(torch.tensor([PROMPT]), max_new_tokens=20, do_sample=False,
                                eos_token_id=None, pad_token_id=258)[0, len(PROMPT):].tolist()
    return logits, tokens


def roundtrip(name, cls, extra):
    run = os.path.join(tmp, name)
    mt.train(MOXIE, os.path.join(ROOT, "configs/tiny.yaml"), run, SETS + extra)
    checkpoint = os.path.join(run, "checkpoints", "step-00000200")
    hf_dir = os.path.join(tmp, name + "-hf")
    out = moxie("export", checkpoint, "--hf", hf_dir)
    expect(cls.__name__ in out, f"{name}: exported as {cls.__name__}")

    model = cls.from_pretrained(hf_dir, dtype=torch.float32).eval()
    hf_logits, hf_tokens = hf_logits_and_tokens(model)
    ours, our_tokens = moxie_logits(checkpoint, os.path.join(tmp, name + "-a.safetensors"))
    diff = (ours - hf_logits).abs().max().item()
    expect(diff < 1e-4, f"{name}: exported weights in transformers: logits differ by at most {diff:.2e} (< 1e-4)")
    expect(our_tokens == hf_tokens, f"{name}: greedy generate: moxie {our_tokens} vs transformers {hf_tokens}")

    imported = os.path.join(tmp, name + "-imported")
    moxie("import", "--hf", hf_dir, imported, "--set", f"data.path={os.path.join(ROOT, '.data/text')}")
    again, again_tokens = moxie_logits(os.path.join(imported, "checkpoints", "step-00000000"),
                                       os.path.join(tmp, name + "-b.safetensors"))
    diff = (again - hf_logits).abs().max().item()
    expect(diff < 1e-4, f"{name}: imported back: logits differ from transformers by at most {diff:.2e}")
    expect(again_tokens == hf_tokens, f"{name}: imported back: the same greedy tokens")
    return imported


def from_transformers(name, model):
    """A folder transformers writes itself (sharded, with an index), imported."""
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # biases and router too, not only their initial values
    model.eval()
    hf_dir = os.path.join(tmp, name + "-made")
    model.save_pretrained(hf_dir, max_shard_size="100KB")
    expect(os.path.exists(os.path.join(hf_dir, "model.safetensors.index.json")),
           f"{name}: transformers wrote a sharded folder")
    hf_logits, hf_tokens = hf_logits_and_tokens(model)
    imported = os.path.join(tmp, name + "-made-imported")
    moxie("import", "--hf", hf_dir, imported)
    ours, our_tokens = moxie_logits(os.path.join(imported, "checkpoints", "step-00000000"),
                                    os.path.join(tmp, name + "-c.safetensors"))
    diff = (ours - hf_logits).abs().max().item()
    expect(diff < 1e-4, f"{name}: a folder transformers wrote, imported: logits differ by at most {diff:.2e}")
    expect(our_tokens == hf_tokens, f"{name}: and the same greedy tokens")


with mt.scratch_dir("moxie-hf-") as tmp:
    imported = roundtrip("mixtral", MixtralForCausalLM, [])
    roundtrip("qwen2_moe", Qwen2MoeForCausalLM, QWEN)

    # Fine-tune the import at dp2 x ep2 (4 ranks): weights load, optimizer starts fresh.
    out = moxie("train", os.path.join(imported, "config.yaml"), "--set", "parallel.dp=4", "--set", "parallel.ep=2",
                "--set", "train.steps=3", "--set", "train.micro_batch_size=1", "--set", "data.seq_len=64",
                "--set", "train.eval_every=0", "--set", "train.eval_batches=1", "--set", "train.threads=1",
                ranks=4)
    expect("weights-only checkpoint" in out and "resumed from" in out and "at step 0" in out,
           "the import fine-tunes at dp4 x ep2 on 4 ranks")

    common = dict(vocab_size=260, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5)
    from_transformers("mixtral", MixtralForCausalLM(MixtralConfig(
        **common, num_hidden_layers=2, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
        sliding_window=None)))
    from_transformers("qwen2_moe", Qwen2MoeForCausalLM(Qwen2MoeConfig(
        **common, num_hidden_layers=4, intermediate_size=96, moe_intermediate_size=32,
        shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=2,
        qkv_bias=True, norm_topk_prob=True)))
mt.finish()
