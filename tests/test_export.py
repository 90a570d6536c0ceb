"""export.py and the shipped pretrained/tiny: inference weights only, the same samples, and the
default run that sample.py, evaluate.py and the notebooks fall back to."""
import json
import os
import subprocess
import sys

import pytest
import torch

import common
import export
from common import SHIPPED_RUN, STAGES, load_checkpoint, stage_path
from pipeline import Pipeline, load_stage

from conftest import ROOT, run_script

SHIPPED = os.path.join(ROOT, SHIPPED_RUN)


def test_export_keeps_the_ema_weights_and_drops_the_training_state(smoke_run, tmp_path):
    out = str(tmp_path / "exported")
    export.export(smoke_run, out, torch.float32)
    for stage in STAGES:
        run, exported = load_checkpoint(stage_path(smoke_run, stage)), load_checkpoint(stage_path(out, stage))
        assert exported["history"] == [] and exported["ema"] is None
        assert not {"optimizers", "extra", "rng"} & set(exported)
        weights = run.get("ema") or run["model"]
        assert weights.keys() == exported["model"].keys()
        assert all(torch.equal(weights[k], exported["model"][k]) for k in weights)
        assert exported["metrics"] == run["metrics"] and exported["config"] == run["config"]
    assert not os.path.exists(os.path.join(out, "flow_cache.pt"))
    # the exported folder is a run folder: it samples exactly what the run samples
    clips = [Pipeline(folder, "cpu", precision="fp32").generate_latents(["slow piano"], seconds=0.64, steps=3, seed=1)
             for folder in (smoke_run, out)]
    assert torch.equal(*clips)


def test_export_stores_weights_in_bf16_by_default_and_they_load_widened(smoke_run, tmp_path):
    out = str(tmp_path / "exported")
    export.export(smoke_run, out)
    for stage in STAGES:
        run, exported = load_checkpoint(stage_path(smoke_run, stage)), load_checkpoint(stage_path(out, stage))
        weights = run.get("ema") or run["model"]
        for name, tensor in exported["model"].items():
            expected = weights[name].to(torch.bfloat16) if weights[name].is_floating_point() else weights[name]
            assert tensor.dtype == expected.dtype and torch.equal(tensor, expected), name
        model = load_stage(out, stage)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(torch.equal(p, weights[name].to(torch.bfloat16).float()) for name, p in model.state_dict().items()
                   if p.is_floating_point() and name in weights)


@pytest.mark.slow  # runs export.py in another process
def test_export_refuses_unfinished_runs_and_exporting_in_place(smoke_run, tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    for stage in STAGES:
        checkpoint = load_checkpoint(stage_path(smoke_run, stage))
        common.save_checkpoint({**checkpoint, "done": stage != "flow"}, stage_path(run_dir, stage))
    result = run_script("export.py", "--run", run_dir, "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 1 and "flow.pt is an unfinished training checkpoint" in result.stderr
    result = run_script("export.py", "--run", run_dir, "--out", run_dir, check=False)
    assert result.returncode == 2 and "--out must differ from --run" in result.stderr


def test_default_run_prefers_your_own_training_and_says_which(tmp_path):
    messages = []
    assert common.default_run(str(tmp_path), messages.append) == SHIPPED  # the copy beside the code
    assert "no " in messages[0] and "shipped" in messages[0] and "python train.py --tiny" in messages[0]
    own = tmp_path / "runs" / "tiny"
    own.mkdir(parents=True)
    (own / "flow.pt").write_bytes(b"")
    assert common.default_run(str(tmp_path), messages.append) == str(own)
    assert "your trained run" in messages[-1]


@pytest.mark.slow  # runs sample.py in another process
def test_the_shipped_run_is_small_complete_and_plays_music(tmp_path):
    files = os.listdir(SHIPPED)
    assert {f"{stage}.pt" for stage in STAGES} <= set(files)
    assert sum(os.path.getsize(os.path.join(SHIPPED, f)) for f in files) < 25 * 2**20
    with open(os.path.join(SHIPPED, "made_by.json")) as f:
        made_by = json.load(f)
    assert made_by["command"].startswith("python train.py") and len(made_by["commit"]) == 40
    out = str(tmp_path / "clip.wav")
    result = run_script("sample.py", "--run", SHIPPED, "--prompt", "a fast organ tune with drums", "--steps", "4",
                        "--seconds", "1.28", "--out", out)
    assert os.path.getsize(out) > 1000 and "audio:" in result.stdout


@pytest.mark.slow  # runs sample.py in another process
def test_sample_without_a_run_falls_back_to_the_shipped_one_and_says_so(tmp_path):
    """A fresh clone has no runs/tiny: sample.py (run here from a folder without one) uses pretrained/tiny."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "sample.py"), "--prompt", "slow bells", "--steps", "2",
                             "--seconds", "0.64", "--out", "a.wav"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "no runs/tiny yet: using the shipped" in result.stdout and (tmp_path / "a.wav").exists()
