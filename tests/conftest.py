"""Shared test plumbing: a helper that runs a CLI, one `train.py --smoke` run per test session
(every test that needs trained checkpoints reads it; none may change it — `copy_smoke_run` makes
a private copy first), a captioned-folder builder, and `one_thread` for tests of tiny models.

The project's modules import as themselves because requirements.txt installs the repository in
editable mode (`pip install -e .`). Tests marked `slow` (the notebooks, torchrun, tests that start
another process or train a stage for real) are left out of the quick loop:
`python -m pytest -m "not slow" tests` (about a minute on 2 cores; the whole suite takes far longer).
"""
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import train
from audio import F_MAX, F_MIN, N_MELS, SAMPLE_RATE, hz_to_mel, mel_to_hz, save_wav
from common import STAGES, load_checkpoint, stage_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, check=True, timeout=300):
    """Run one of the project's scripts from the repository root, on one thread."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def train_stage(run_dir, name, **overrides):
    """Train one stage with exactly the code `train.py` runs, on `train.SMOKE` changed by
    `overrides`; returns (its held-out metrics, its loss history)."""
    metrics = train.train(str(run_dir), replace(train.SMOKE, **overrides), [name], device="cpu", progress=False)
    return metrics[name], load_checkpoint(stage_path(str(run_dir), name))["history"]


def copy_run(src, dst, frozen_only=False):
    """A private copy of the run folder `src` at `dst` (returned as a str): all of it, or with
    frozen_only only the checkpoints of every stage but the flow model (a run about to train it)."""
    dst = str(dst)
    if not frozen_only:
        shutil.copytree(src, dst)
        return dst
    os.makedirs(dst)
    for stage in STAGES[:-1]:
        shutil.copy(stage_path(src, stage), dst)
    return dst


def tone(freq, seconds, sample_rate=SAMPLE_RATE, amplitude=0.5):
    """A pure sine of `freq` Hz."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    return amplitude * torch.sin(2 * math.pi * freq * t)


def peak_frequency(audio, sample_rate=SAMPLE_RATE):
    """The frequency (Hz) of the strongest bin of a 1-D signal's spectrum."""
    spectrum = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64)))
    return np.fft.rfftfreq(len(audio), 1 / sample_rate)[spectrum.argmax()]


def mel_centres():
    """The centre frequency (Hz) of each of the N_MELS mel bands."""
    edges = np.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), N_MELS + 2)
    return mel_to_hz(edges)[1:-1]


def write_captioned_folder(root, clips, seconds=1.0, metadata=False, audio=None, caption=None):
    """`clips` audible clips in the folder `root` (made if missing): clip{i}.wav is `audio(i)` (by
    default a tone of 200 + 50 i Hz lasting `seconds`), captioned `caption(i)` (by default
    "a tone, number {i}") in clip{i}.txt, or with metadata=True in root/metadata.jsonl, one line a
    clip. Returns (root, the metadata lines as str, whether or not they were written)."""
    audio = audio or (lambda i: tone(200.0 + 50 * i, seconds))
    caption = caption or (lambda i: f"a tone, number {i}")
    os.makedirs(root, exist_ok=True)
    lines = []
    for i in range(clips):
        save_wav(os.path.join(root, f"clip{i}.wav"), audio(i))
        lines.append(json.dumps({"file": f"clip{i}.wav", "caption": caption(i)}))
        if not metadata:
            with open(os.path.join(root, f"clip{i}.txt"), "w", encoding="utf-8") as f:
                f.write(caption(i))
    if metadata:
        with open(os.path.join(root, "metadata.jsonl"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return root, lines


@pytest.fixture
def captioned_folder():
    """The builder `write_captioned_folder(root, clips, seconds=1.0, metadata=False, audio=None, caption=None)`."""
    return write_captioned_folder


@pytest.fixture
def one_thread():
    """Tiny models run hundreds of tiny ops: on a busy 2-core machine, OpenMP threads waiting on
    each other cost far more than they gain (a 32-wide Linear took 30 ms with 2 threads, 0.02 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory):
    """(run folder, train.py's output) of the session's one smoke run."""
    run_dir = str(tmp_path_factory.mktemp("smoke") / "run")
    return run_dir, run_script("train.py", "--smoke", "--run", run_dir, "--device", "cpu")


@pytest.fixture(scope="session")
def smoke_run(smoke_training):
    """The folder of the session's smoke run: every stage trained for a few steps. Read only."""
    return smoke_training[0]


@pytest.fixture
def copy_smoke_run(smoke_run, tmp_path):
    """copy_smoke_run(name="run", frozen_only=False) -> a private copy of the smoke run at
    tmp_path/name (see `copy_run`), for a test that writes into its run folder."""
    return lambda name="run", frozen_only=False: copy_run(smoke_run, tmp_path / name, frozen_only)
