"""Checkpoint files are written atomically and read safely."""
import os

import pytest
import torch

import common


def test_save_then_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    state = {"step": 3, "weights": torch.arange(5.0), "config": {"width": 8}}
    common.save_checkpoint(state, path)
    loaded = common.load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["config"] == {"width": 8}
    assert torch.equal(loaded["weights"], state["weights"])
    assert os.listdir(tmp_path / "sub") == ["ckpt.pt"], "temporary file left behind"


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    common.save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        common.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert common.load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(common.CheckpointError, match="run `python train.py --stage vae`"):
        common.load_checkpoint(tmp_path / "nope.pt", made_by="python train.py --stage vae")


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(common.CheckpointError) as error:
        common.load_checkpoint(path)
    assert "\n" not in str(error.value) and "unreadable" in str(error.value)


def test_pick_device_defaults_and_rejects_missing_cuda():
    assert common.pick_device("cpu").type == "cpu"
    assert common.pick_device().type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            common.pick_device("cuda")
