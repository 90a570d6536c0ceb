"""Shared plumbing: device choice and crash-safe checkpoint files.

Every stage of the project saves and loads checkpoints the same way, so the rules live here
once:

* a checkpoint is written to a temporary file beside its target and then renamed over it.
  A rename within one directory is atomic on POSIX and Windows, so a crash (or Ctrl-C) in
  the middle of a save leaves the previous good file untouched, never half a file;
* checkpoints are read with ``torch.load(..., weights_only=True)``: plain tensors, numbers,
  strings, lists and dicts only, so loading a file cannot run arbitrary code;
* a missing or unreadable checkpoint is a one-line ``CheckpointError`` that says which
  command makes it, never a bare traceback.
"""

import os
import tempfile

import torch


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


def save_checkpoint(obj, path):
    """Write ``obj`` with torch.save to ``path`` atomically (temporary file, fsync, rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
