#!/usr/bin/env python3
"""Multi-rank parity: `moxie train` under mpiexec at a layout computes the same
per-step losses and gradient norms as one process on the same global batch.

Usage: layout_parity.py MOXIE REPO_ROOT MPIEXEC DP TP EP [KEY=VALUE...]
(NP = DP * TP ranks)
(extra config overrides for both runs)

The single-process run uses micro_batch_size = DP * per-rank micro batch, so
both see the same global batch (data order is a function of the seed alone).

Tolerance: losses rtol 2e-5, gradient norms rtol 1e-4, over 6 steps. Both runs
are fp32; they differ only in summation order (a per-rank mean then an
all-reduce average, against one mean over all tokens; experts' gradients
summed across ranks), which moves results by a few float32 ulps per step,
and Adam's normalised updates carry that into later steps. Any real error in
the layout (a wrong slice, a missing or doubled gradient, a token at the
wrong expert) moves the loss by orders of magnitude more.
"""
import json
import os
import subprocess
import sys
import tempfile

PER_RANK_BATCH = 2
STEPS = 6
MODEL = ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
         "moe.expert_hidden=48", "moe.aux_loss_coef=0", "moe.z_loss_coef=0",
         "data.seq_len=32", "schedule.warmup_steps=1", "optim.lr=3e-3",
         f"train.steps={STEPS}", "train.eval_every=0", "train.eval_batches=1",
         "train.log_every=1", "train.threads=1"]


def run(cmd, run_dir, sets):
    args = []
    for s in sets + [f"train.run_dir={run_dir}"]:
        args += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd + args)} exited {out.returncode}\n{out.stdout}\n{out.stderr}")
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [r for r in rows if "grad_norm" in r]


def close(a, b, rtol):
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def main():
    moxie, root, mpiexec, dp, tp, ep = sys.argv[1:7]
    extra = sys.argv[7:]
    dp, tp, ep = int(dp), int(tp), int(ep)
    np_ = dp * tp
    config = os.path.join(root, "configs/tiny.yaml")
    base = MODEL + [f"data.path={os.path.join(root, '.data/text')}"] + extra
    tmp = tempfile.mkdtemp(prefix="moxie-parity-")

    single = run([moxie, "train", config], os.path.join(tmp, "single"),
                 base + [f"train.micro_batch_size={PER_RANK_BATCH * dp}"])
    multi = run([mpiexec, "-n", str(np_), "--oversubscribe", "--bind-to", "none",
                 moxie, "train", config], os.path.join(tmp, "multi"),
                base + [f"train.micro_batch_size={PER_RANK_BATCH}", f"parallel.dp={dp}",
                        f"parallel.tp={tp}", f"parallel.ep={ep}"])
    assert len(single) == len(multi) == STEPS, (len(single), len(multi))
    failures = 0
    for s, m in zip(single, multi):
        ok = close(s["loss"], m["loss"], 2e-5) and close(s["grad_norm"], m["grad_norm"], 1e-4)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} step {s['step']}: loss {s['loss']:.7f} vs {m['loss']:.7f}, "
              f"grad norm {s['grad_norm']:.6f} vs {m['grad_norm']:.6f}")
    # The losses must have moved, or the comparison would prove little; with a
    # capacity factor, tokens must actually have been dropped.
    assert single[-1]["loss"] < single[0]["loss"] - 0.05, "training did not move the loss"
    dropped = max(r["dropped_frac"] for r in single)
    print(f"largest dropped fraction: {dropped:.4f}")
    if any(e.startswith("moe.capacity_factor=") for e in extra):
        assert dropped > 0, "capacity test dropped no tokens"
    print(f"{STEPS - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
