"""Shared pieces of the Python end-to-end tests: running moxie (alone or under
mpiexec), a small MoE model's settings, reading logits from `moxie generate`,
a scratch folder, recording checks, and the exit status CTest reads.

    import moxie_testing as mt
    mt.skip_unless_importable("torch", "transformers")
    with mt.scratch_dir("moxie-x-") as tmp:
        mt.train(MOXIE, config, f"{tmp}/run", mt.SMALL_MOE + ["train.steps=3"], ranks=4, mpiexec=MPIEXEC)
        mt.expect(loss < 2.0, "the loss falls")
    mt.finish()
"""
import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

# One thread per rank; Open MPI refuses root without these (CI runs as root).
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
failures = []

# A small MoE transformer (2 layers, 4 experts) that trains in seconds on one
# CPU thread; each test adds its model.vocab_size.
SMALL_MOE = ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
             "moe.expert_hidden=48", "moe.num_experts=4"]


def skip_unless_importable(*modules):
    """Exits 77 (CTest's skip) naming the first of `modules` that cannot be imported."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            print(f"skipped: {e}")
            sys.exit(77)


@contextlib.contextmanager
def scratch_dir(prefix):
    """A fresh temporary folder, removed with everything in it afterwards."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def moxie(binary, *args, ranks=1, mpiexec=None, check=True, cwd=None, env=None, preexec_fn=None, timeout=600):
    """Runs `binary args` (under `mpiexec -n ranks` when ranks > 1); exits the
    test with the command's output when it fails and `check` is set."""
    cmd = ([mpiexec, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] if ranks > 1 else []) + \
          [binary, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **(env or {})), timeout=timeout,
                         cwd=cwd, preexec_fn=preexec_fn)
    if check and out.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def set_args(sets):
    """`--set KEY=VALUE` for each override, in order (a later one wins)."""
    return [arg for s in sets for arg in ("--set", s)]


def train(binary, config, run, sets, ranks=1, mpiexec=None):
    """`moxie train config` with the overrides and train.run_dir=run; its stdout."""
    return moxie(binary, "train", config, *set_args(list(sets) + [f"train.run_dir={run}"]), ranks=ranks,
                 mpiexec=mpiexec).stdout


def generate(binary, checkpoint, prompt, logits_path, max_new):
    """Greedy `moxie generate` from the prompt's token ids: the prompt's logits
    (float64, written to logits_path) and the new tokens."""
    from safetensors.torch import load_file  # only the tests that generate need torch

    out = moxie(binary, "generate", checkpoint, "--tokens", ",".join(map(str, prompt)), "--max-new",
                str(max_new), "--logits", logits_path).stdout
    tokens = [int(t) for t in out.split("tokens:")[1].split("\n")[0].strip().split(",") if t]
    return load_file(logits_path)["logits"].double(), tokens


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def finish():
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)
