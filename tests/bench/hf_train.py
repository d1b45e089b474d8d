#!/usr/bin/env python3
"""Hugging Face side of the training-throughput benchmark (train_vs_hf.py).

Builds the transformers model equivalent to a moxie config (same widths,
experts, top-k, router aux loss; sdpa attention; fp32): MixtralForCausalLM,
or with one shared expert Qwen2MoeForCausalLM (routed experts plus a
sigmoid-gated shared SwiGLU expert, as moxie's MoELayer; qkv_bias and
norm_topk_prob set to moxie's values), and trains it
eagerly with torch.optim.AdamW and clip_grad_norm_ on random tokens, on the
config's train.device and train.dtype (a GPU run: bf16 parameters, eager
experts; the optimizer is PyTorch's default foreach AdamW). W untimed warm-up
steps, then N timed steps (whole step: forward, backward, clip, optimizer;
synchronised with the GPU). Prints one JSON line.

Usage: hf_train.py RESOLVED_CONFIG --steps N --warmup W [--threads T]
RESOLVED_CONFIG: every key present, as `moxie config CONFIG` prints it.
"""
import argparse
import json
import time

import torch
import transformers
import yaml

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--experts", default="eager", choices=["eager", "grouped_mm", "batched_mm"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    # Only compare like with like: refuse what MixtralForCausalLM cannot express.
    m, moe = cfg["model"], cfg["moe"]
    shared = moe["num_shared_experts"]
    unlike = {"model.first_k_dense": m["first_k_dense"] != 0, "model.moe_every": m["moe_every"] != 1,
              "moe.num_shared_experts": shared > 1,
              "moe.score_func": moe["score_func"] != "softmax", "moe.renormalize": not moe["renormalize"],
              "moe.capacity_factor": moe["capacity_factor"] != 0, "moe.z_loss_coef": moe["z_loss_coef"] != 0,
              "moe.bias_update_rate": moe["bias_update_rate"] != 0,
              "model.qkv_bias": m.get("qkv_bias", False) and not shared}
    bad = [k for k, v in unlike.items() if v]
    if bad:
        raise SystemExit(f"hf_train.py: Mixtral / Qwen2-MoE have no equivalent of {', '.join(bad)}; "
                         "benchmark a config that leaves them at their Mixtral values "
                         "(or one shared expert, for Qwen2-MoE)")
    m, moe, o = cfg["model"], cfg["moe"], cfg["optim"]
    common = dict(
        vocab_size=m["vocab_size"], hidden_size=m["d_model"],
        num_hidden_layers=m["n_layers"], num_attention_heads=m["n_heads"],
        num_key_value_heads=m["n_kv_heads"], head_dim=m["head_dim"] or m["d_model"] // m["n_heads"],
        num_experts_per_tok=moe["top_k"], rms_norm_eps=m["norm_eps"],
        max_position_embeddings=m["max_seq_len"], tie_word_embeddings=m["tie_embeddings"],
        output_router_logits=True, router_aux_loss_coef=moe["aux_loss_coef"])
    if shared:
        hidden = moe["shared_expert_hidden"] or moe["expert_hidden"]
        hf_config = transformers.Qwen2MoeConfig(
            **common, moe_intermediate_size=moe["expert_hidden"], intermediate_size=hidden,
            shared_expert_intermediate_size=hidden, num_experts=moe["num_experts"],
            norm_topk_prob=True, qkv_bias=bool(m.get("qkv_bias", False)), use_sliding_window=False,
            rope_theta=m["rope_theta"])
        model_class = transformers.Qwen2MoeForCausalLM
    else:
        hf_config = transformers.MixtralConfig(
            **common, intermediate_size=moe["expert_hidden"], num_local_experts=moe["num_experts"],
            rope_theta=m["rope_theta"], sliding_window=None)
        model_class = transformers.MixtralForCausalLM
    hf_config._attn_implementation = "sdpa"
    if hasattr(hf_config, "_experts_implementation"):
        # eager: the loop over experts; grouped_mm: transformers' own grouped GEMMs.
        hf_config._experts_implementation = args.experts
    device = cfg["train"]["device"]
    dtype = torch.bfloat16 if cfg["train"]["dtype"] == "bfloat16" else torch.float32
    torch.manual_seed(0)
    model = model_class(hf_config).to(device=device, dtype=dtype).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]),
                                  eps=o["eps"], weight_decay=o["weight_decay"])
    batch, seq = cfg["train"]["micro_batch_size"], cfg["data"]["seq_len"]
    gen = torch.Generator().manual_seed(1)

    def step():
        ids = torch.randint(0, m["vocab_size"], (batch, seq + 1), generator=gen).to(device)
        out = model(input_ids=ids[:, :-1], labels=ids[:, :-1], output_router_logits=True)
        out.loss.backward()  # cross-entropy + router_aux_loss_coef * load-balancing loss
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    step_time = (time.perf_counter() - t0) / args.steps

    total = sum(p.numel() for p in model.parameters())
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    if hasattr(model.config, "_experts_implementation"):
        impl = model.config._experts_implementation
        if impl != args.experts:
            raise SystemExit(f"hf_train.py: asked for experts {args.experts}, transformers ran {impl}")
    active = total - experts + experts * moe["top_k"] // moe["num_experts"]
    print(json.dumps({
        "impl": model_class.__name__, "transformers": transformers.__version__,
        "device": device, "dtype": str(dtype).replace("torch.", ""), "experts": args.experts,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "tokens_per_step": batch * seq, "step_time_s": step_time,
        "tokens_per_s": batch * seq / step_time, "params_total": total, "params_active": active}))


if __name__ == "__main__":
    main()
