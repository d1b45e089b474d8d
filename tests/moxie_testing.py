"""Shared pieces of the Python end-to-end tests: running moxie (alone or under
mpiexec), recording checks, and the exit status CTest reads.

    import moxie_testing as mt
    mt.moxie(MOXIE, "train", config, "--set", "train.steps=3", ranks=4, mpiexec=MPIEXEC)
    mt.expect(loss < 2.0, "the loss falls")
    mt.finish()
"""
import os
import subprocess
import sys

# One thread per rank; Open MPI refuses root without these (CI runs as root).
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
failures = []


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


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def finish():
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)
