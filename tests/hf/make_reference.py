#!/usr/bin/env python3
"""Hugging Face reference for moxie's parity test (tests/hf/test_hf_parity.cpp).

Builds a small, randomly initialised transformers MixtralForCausalLM in float32
(no download), saves it with save_pretrained (model.safetensors + config.json,
classic Mixtral names), runs a forward and backward pass on random tokens, and
writes reference.safetensors with input_ids, logits, the loss and gradients of
a handful of parameters under their classic names ("grad.<name>").

Usage: make_reference.py OUT_DIR [--seed N]. Exits 77 (CTest: skipped) when
torch, transformers or safetensors cannot be imported.
"""
import argparse
import os
import sys

try:
    import torch
    import torch.nn.functional as F
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError as e:  # the only reason to skip
    print(f"SKIP: cannot import the Hugging Face stack ({e})")
    sys.exit(77)


def build(seed):
    torch.manual_seed(seed)
    config = transformers.MixtralConfig(
        vocab_size=259, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2, rope_theta=1e6, rms_norm_eps=1e-5,
        max_position_embeddings=256, tie_word_embeddings=False, sliding_window=None,
        router_aux_loss_coef=0.0)
    config._attn_implementation = "sdpa"
    model = transformers.MixtralForCausalLM(config).float()
    # Large weights, so routing and attention are far from uniform and any
    # difference in the implementation shows; norms randomly around 1.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    return model


def classic_grads(model):
    """Gradients under classic Mixtral names, split from transformers 5's fused experts."""
    grads = {}
    params = dict(model.named_parameters())
    for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.1.self_attn.o_proj.weight", "model.layers.0.input_layernorm.weight",
                 "model.norm.weight", "lm_head.weight"]:
        grads[name] = params[name].grad
    grads["model.layers.0.block_sparse_moe.gate.weight"] = params["model.layers.0.mlp.gate.weight"].grad
    gate_up = params["model.layers.1.mlp.experts.gate_up_proj"]  # [E, 2I, H]: gate rows, then up
    down = params["model.layers.1.mlp.experts.down_proj"]          # [E, H, I]
    inter = gate_up.shape[1] // 2
    for e in range(gate_up.shape[0]):
        base = f"model.layers.1.block_sparse_moe.experts.{e}."
        grads[base + "w1.weight"] = gate_up.grad[e, :inter]
        grads[base + "w3.weight"] = gate_up.grad[e, inter:]
        grads[base + "w2.weight"] = down.grad[e]
    return grads, gate_up, down, inter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    model = build(args.seed)
    model.save_pretrained(args.out_dir)
    ids = torch.randint(0, 259, (2, 24), generator=torch.Generator().manual_seed(args.seed + 1))
    logits = model(input_ids=ids, output_router_logits=False).logits
    # The convention moxie uses: predict token t+1 from positions <= t, mean over positions.
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    loss.backward()
    grads, gate_up, down, inter = classic_grads(model)

    # The split above must be the one save_pretrained used; fail loudly if a
    # future transformers changes either naming or layout.
    with safe_open(os.path.join(args.out_dir, "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        w1 = "model.layers.1.block_sparse_moe.experts.3.w1.weight"
        assert w1 in keys, f"save_pretrained no longer writes classic names (no {w1})"
        assert torch.equal(f.get_tensor(w1), gate_up[3, :inter].detach())
        assert torch.equal(f.get_tensor(w1.replace("w1", "w3")), gate_up[3, inter:].detach())
        assert torch.equal(f.get_tensor(w1.replace("w1", "w2")), down[3].detach())

    tensors = {"input_ids": ids, "logits": logits.detach().contiguous(),
               "loss": loss.detach().reshape(1)}
    tensors.update({f"grad.{k}": v.contiguous() for k, v in grads.items()})
    save_file(tensors, os.path.join(args.out_dir, "reference.safetensors"))
    print(f"reference: transformers {transformers.__version__}, torch {torch.__version__}, "
          f"loss {loss.item():.6f}, max |logit| {logits.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
