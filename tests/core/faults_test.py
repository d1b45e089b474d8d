#!/usr/bin/env python3
"""Faults during training, with real `moxie train` runs (and mpiexec):

1. a step whose loss is NaN (MOXIE_FAULT_NONFINITE) is skipped: no update,
   so the checkpoints before and after the poisoned steps hold bitwise the
   same tensors; counted in the summary and marked in metrics.jsonl; the run
   trains on. Also on 2 ranks with only rank 1 poisoned: every rank skips.
2. train.max_nonfinite_steps non-finite steps in a row stop the run with an
   error that names the option; the earlier checkpoint stays committed.
3. a failed write (the file-size limit, as a full disk would: EFBIG instead
   of ENOSPC) is an error naming the file and the reason; every earlier
   checkpoint is intact and --resume latest trains on from the newest one.
   As a user other than root also a folder without write permission.

Usage: faults_test.py MOXIE REPO_ROOT MPIEXEC
"""
import json
import os
import resource
import shutil
import signal
import sys
import tempfile

from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import moxie_testing as mt  # noqa: E402
from moxie_testing import expect  # noqa: E402

MOXIE, ROOT, MPIEXEC = sys.argv[1:4]
mt.ENV.pop("MOXIE_FAULT_NONFINITE", None)
BASE = ["model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2", "model.vocab_size=260",
        "moe.expert_hidden=32", "moe.num_experts=4", "data.seq_len=16", "schedule.warmup_steps=1",
        "train.eval_every=0", "train.eval_batches=1", "train.log_every=1", "train.threads=1",
        "train.checkpoint_every=2", "train.keep_checkpoints=10", "train.micro_batch_size=2",
        f"data.path={os.path.join(ROOT, '.data/text')}"]


def train(run_dir, steps, ranks=1, extra=(), env=None, resume=None, preexec=None):
    args = ["train", os.path.join(ROOT, "configs/tiny.yaml")]
    for s in BASE + [f"train.run_dir={run_dir}", f"train.steps={steps}", f"parallel.dp={ranks}"] + list(extra):
        args += ["--set", s]
    if resume:
        args += ["--resume", resume]
    return mt.moxie(MOXIE, *args, ranks=ranks, mpiexec=MPIEXEC, check=False, env=env, preexec_fn=preexec,
                    timeout=300)


def ckpt(run_dir, step):
    return os.path.join(run_dir, "checkpoints", f"step-{step:08d}")


def tensors(run_dir, step):
    d = ckpt(run_dir, step)
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update({f + ":" + k: v for k, v in load_file(os.path.join(d, f)).items()})
    return out


def metrics(run_dir):
    return [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]


tmp = tempfile.mkdtemp(prefix="moxie-faults-")
try:
    # 1. Skipped steps: the tensors of step 2 and step 4 are the same.
    for ranks, spec in [(1, "3,4"), (2, "3,4@1")]:
        run = os.path.join(tmp, f"skip{ranks}")
        out = train(run, 6, ranks=ranks, env={"MOXIE_FAULT_NONFINITE": spec})
        what = f"{ranks} rank(s), NaN loss at steps {spec}"
        expect(out.returncode == 0, f"{what}: the run completes ({out.returncode}: {out.stderr[-300:]})")
        if out.returncode != 0:
            continue
        expect("2 steps skipped" in out.stdout, f"{what}: the summary counts 2 skipped steps")
        expect("step 3 skipped" in out.stdout and "step 4 skipped" in out.stdout, f"{what}: each skip is logged")
        rows = {r["step"]: r for r in metrics(run) if "grad_norm" in r}
        expect([s for s, r in sorted(rows.items()) if r.get("skipped")] == [3, 4],
               f"{what}: metrics.jsonl marks steps 3 and 4 skipped")
        a, b, c = tensors(run, 2), tensors(run, 4), tensors(run, 6)
        expect(a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a),
               f"{what}: all {len(a)} tensors of step 4 equal step 2's bitwise (no update)")
        expect(any((b[k] != c[k]).any() for k in b), f"{what}: steps 5-6 update again")

    # 2. Too many in a row stop the run.
    run = os.path.join(tmp, "diverged")
    out = train(run, 10, extra=["train.max_nonfinite_steps=3"], env={"MOXIE_FAULT_NONFINITE": "3,4,5,6,7,8"})
    expect(out.returncode != 0, f"3 non-finite steps in a row: exit {out.returncode}")
    expect("3 steps in a row" in out.stderr and "train.max_nonfinite_steps" in out.stderr,
           "the error says how many in a row and names train.max_nonfinite_steps: " + out.stderr.strip()[-300:])
    expect(os.path.exists(os.path.join(ckpt(run, 2), "COMMITTED")), "the checkpoint of step 2 stays committed")

    # 3. A write that fails.
    run = os.path.join(tmp, "full")
    out = train(run, 4)
    expect(out.returncode == 0, "4 steps, checkpoints at 2 and 4")
    size = os.path.getsize(os.path.join(ckpt(run, 4), "rank-00000.safetensors"))
    before = {s: tensors(run, s) for s in (2, 4)}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    out = train(run, 6, preexec=limit)
    expect(out.returncode != 0, f"a save past the file-size limit: exit {out.returncode}")
    err = out.stderr.strip()
    expect("checkpoint of step 6 failed" in err and "rank-00000.safetensors" in err and "File too large" in err,
           "the error names the step, the file and the reason: " + err[-400:])
    expect("every earlier committed checkpoint is intact" in err, "the error says earlier checkpoints are intact")
    expect(not os.path.exists(os.path.join(ckpt(run, 6), "COMMITTED")), "step 6 is not committed")
    expect(not any(f.endswith(".tmp") for f in os.listdir(ckpt(run, 6))) if os.path.isdir(ckpt(run, 6)) else True,
           "no partial file is left behind")
    for s in (2, 4):
        after = tensors(run, s)
        expect(after.keys() == before[s].keys() and all((after[k] == before[s][k]).all() for k in after),
               f"checkpoint of step {s}: every tensor unchanged")
    out = train(run, 6, resume="latest")
    expect(out.returncode == 0 and "at step 4" in out.stdout, "--resume latest then loads step 4 and trains to 6")
    expect(os.path.exists(os.path.join(ckpt(run, 6), "COMMITTED")), "and commits step 6")

    if os.geteuid() != 0:
        run = os.path.join(tmp, "readonly")
        train(run, 2)
        os.chmod(os.path.join(run, "checkpoints"), 0o555)
        out = train(run, 4)
        os.chmod(os.path.join(run, "checkpoints"), 0o755)
        expect(out.returncode != 0 and "Permission denied" in out.stderr,
               "a checkpoint folder without write permission: " + out.stderr.strip()[-300:])
        expect(os.path.exists(os.path.join(ckpt(run, 2), "COMMITTED")), "step 2 stays committed")
    else:
        print("note: running as root, which may write anywhere: the permission case is not run")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
mt.finish()
