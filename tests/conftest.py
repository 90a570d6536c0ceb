"""Shared test plumbing: the flat project modules on sys.path, a helper that runs a CLI, and
one `train.py --smoke` run per test session (every test that needs trained checkpoints reads
it; none may change it — copy its files into tmp_path first)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_script(script, *args, check=True, timeout=300):
    """Run one of the project's scripts from the repository root, on one thread."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def copy_frozen_stages(src, dst):
    """A new run that already has every stage but the flow model."""
    import shutil

    from common import STAGES
    os.makedirs(dst)
    for stage in STAGES[:-1]:
        shutil.copy(os.path.join(src, f"{stage}.pt"), dst)


def train_stage(run_dir, name, **overrides):
    """Train one stage with exactly the code `train.py` runs, on `train.SMOKE` changed by
    `overrides`; returns (its held-out metrics, its loss history)."""
    from dataclasses import replace

    import train
    from common import load_checkpoint, stage_path
    metrics = train.train(str(run_dir), replace(train.SMOKE, **overrides), [name], device="cpu", progress=False)
    return metrics[name], load_checkpoint(stage_path(str(run_dir), name))["history"]


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory):
    """(run folder, train.py's output) of the session's one smoke run."""
    run_dir = str(tmp_path_factory.mktemp("smoke") / "run")
    return run_dir, run_script("train.py", "--smoke", "--run", run_dir, "--device", "cpu")


@pytest.fixture(scope="session")
def smoke_run(smoke_training):
    """The folder of the session's smoke run: every stage trained for a few steps."""
    return smoke_training[0]
