"""Shared plumbing: device choice, crash-safe checkpoint files, and the checkpoint contract.

Training (`train.py`, `stages.py`) writes one checkpoint per stage and inference
(`pipeline.py`, `evaluate.py`, `bench.py`) reads them back, so what a checkpoint holds and how
it is written live here once:

* a run folder holds one file per stage, `<run>/<stage>.pt`, for the stages in `STAGES`;
  each stores its model's config, so `load_stage` rebuilds the model exactly (`MODEL_CLASSES`),
  whatever preset made it; `checkpoint_dict` is the one place that lays a checkpoint out;
* a checkpoint is written to a temporary file beside its target and then renamed over it.
  A rename within one directory is atomic on POSIX and Windows, so a crash (or Ctrl-C) in
  the middle of a save leaves the previous good file untouched, never half a file;
* checkpoints are read with ``torch.load(..., weights_only=True)``: plain tensors, numbers,
  strings, lists and dicts only, so loading a file cannot run arbitrary code;
* a missing or unreadable checkpoint is a one-line ``CheckpointError`` that says which
  command makes it, never a bare traceback.

Precision. bfloat16 keeps float32's 8 exponent bits and only 7 of its 23 mantissa bits, so it
never overflows where float32 does not, and a product is exact to about 3 significant digits.
Under ``torch.autocast`` the matrix products and convolutions run in bf16 while reductions,
norms, softmax, losses, optimiser state and EMA stay in float32 (weights are stored in float32
and cast on the fly). That halves the bytes a product moves and, on hardware with bf16 units
(CUDA GPUs since Ampere, x86 CPUs with AVX512-BF16 or AMX), multiplies its speed (bench.py
measures by how much, docs/RESULTS.md, "bf16 and compile"). A CPU without
those instructions would emulate bf16, slower than float32, so "auto" uses bf16 only where it
is native (`precision_for`).
"""

import argparse
import functools
import os
import subprocess
import tempfile
from dataclasses import asdict

import torch

STAGES = ("vae", "vocoder", "clap", "t5", "flow")  # training order: each may use the ones before it


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or from another config; the message says the fix."""


def pick_device(name=None):
    """CUDA, then Apple MPS, then CPU, unless ``name`` ('cpu', 'cuda', 'cuda:1', 'mps') says."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"--device {name} is not a device name; use cpu, cuda, cuda:1 or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name} asked for CUDA but none is available; use --device cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name} asked for Apple MPS but it is not available; use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = ("auto", "bf16", "fp32")  # --precision: auto = bf16 where the hardware has it natively


def native_bf16(device):
    """True where bf16 products run on dedicated hardware: CUDA with bf16 support, or a CPU
    that reports AVX512-BF16 or AMX (Linux lists them in /proc/cpuinfo)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU's feature flags as Linux reports them (read once); empty elsewhere, so Apple MPS
    and other platforms keep float32."""
    if not os.path.exists("/proc/cpuinfo"):
        return frozenset()
    with open("/proc/cpuinfo") as f:
        return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))


def precision_for(requested, device):
    """'bf16' or 'fp32' for a requested --precision ('auto', 'bf16' or 'fp32') on `device`."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


def describe_precision(precision, device):
    """One line for the log: which precision, and why."""
    device = torch.device(device)
    if precision == "fp32":
        return "fp32" + ("" if native_bf16(device) else f" (this {device.type.upper()} has no native bf16)")
    where = "this GPU" if device.type == "cuda" else "this CPU"
    return f"bf16 autocast ({where} {'has' if native_bf16(device) else 'EMULATES'} native bf16)"


def autocast(device, precision):
    """The context that runs a forward pass at `precision` ('bf16' or 'fp32')."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def atomic_write(path, write, suffix=".tmp"):
    """Write ``path`` atomically: ``write(binary file)`` into a temporary file beside it, fsync,
    rename; a crash leaves the old file or the new one, never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(obj, path):
    """Write ``obj`` with torch.save to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f), suffix=".pt")


def atomic_write_text(path, text):
    """Write a UTF-8 text file atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load_checkpoint(path, made_by="python train.py --tiny", map_location="cpu"):
    """Read a checkpoint written by ``save_checkpoint``; ``made_by`` names the command that makes it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}: run `{made_by}` first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated/corrupt/foreign file: say so in one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({first_line}); delete it and rerun `{made_by}`"
        ) from None


# ----------------------------------------------------------------------------- the checkpoint contract

def stage_path(run_dir, stage):
    return os.path.join(run_dir, f"{stage}.pt")


def git_commit():
    """(commit hash, whether tracked files have uncommitted changes) of the checkout this file is
    in, or (None, None) outside git: what made a run or a notebook's outputs."""
    here = os.path.dirname(os.path.abspath(__file__))
    git = lambda *args: subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=30).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
    except OSError:  # no git installed
        return None, None
    return (commit, bool(git("status", "--porcelain", "-uno").strip())) if commit else (None, None)


TRAINED_RUN = os.path.join("runs", "tiny")             # where `python train.py --tiny` writes
SHIPPED_RUN = os.path.join("pretrained", "tiny")       # the trained tiny run that comes with the code


def default_run(root=".", log=print):
    """The run to sample from when none is named: your own `runs/tiny` once it exists, else the
    shipped `pretrained/tiny` (export.py); `root` is the repository as seen from the working
    directory (the notebooks pass ".."). Says which in one line."""
    trained = os.path.normpath(os.path.join(root, TRAINED_RUN))  # "runs/tiny", "../runs/tiny"
    if os.path.exists(os.path.join(trained, "flow.pt")):
        log(f"using your trained run {trained}")
        return trained
    shipped = os.path.normpath(os.path.join(root, SHIPPED_RUN))
    if not os.path.isdir(shipped):  # run from another folder: the copy beside this file
        shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), SHIPPED_RUN)
    log(f"no {trained} yet: using the shipped {os.path.relpath(shipped) if root == '.' else shipped} "
        f"(train your own with `python train.py --tiny`)")
    return shipped


def train_command(run_dir, stage=None):
    """The command that makes a stage's checkpoint (without a stage: every missing one, since
    finished stages are skipped), for error messages."""
    run_flag = "" if os.path.normpath(run_dir) == os.path.normpath("runs/tiny") else f" --run {run_dir}"
    return f"python train.py --tiny{run_flag}" + (f" --stage {stage}" if stage else "")


def checkpoint_dict(stage, model, step, done, run_config, history=(), ema=None, metrics=None, **training_state):
    """A stage's checkpoint: what `load_stage` needs (config, weights, EMA weights, done) plus the
    run's settings, the loss history and, while training, whatever resuming needs
    (`training_state`: optimisers, extra modules, RNG)."""
    return {"stage": stage, "done": done, "step": step, "config": asdict(model.config),
            "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "history": list(history), "metrics": metrics or {}, "run_config": run_config, **training_state}


# ----------------------------------------------------------------------------- command-line types

def positive_int(text):
    """argparse type: an integer >= 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
