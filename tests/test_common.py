"""Checkpoint files are written atomically and read safely; the device is the best there is, or the one asked for."""
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


@pytest.mark.parametrize("cuda, mps, best", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, best):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert common.pick_device() == torch.device(best)
    assert common.pick_device("cpu") == torch.device("cpu")  # asked for: always


def test_pick_device_rejects_a_device_the_machine_lacks_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # so this runs on a GPU machine too
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name, lacks in (("cuda", "CUDA but none is available"), ("cuda:1", "CUDA but none is available"),
                        ("mps", "Apple MPS but it is not available")):
        with pytest.raises(ValueError) as error:
            common.pick_device(name)
        assert str(error.value) == f"--device {name} asked for {lacks}; use --device cpu"
    with pytest.raises(ValueError, match="is not a device name; use cpu, cuda, cuda:1 or mps"):
        common.pick_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common.pick_device("cuda:1") == torch.device("cuda", 1)  # a CUDA machine takes it as asked
