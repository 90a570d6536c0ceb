"""bf16 autocast: where it is chosen, that it computes what fp32 computes (to bf16's rounding),
that `--precision fp32` still trains, that a seed and a precision fix a run, and that a failed
torch.compile falls back to eager."""
import os
from dataclasses import replace

import pytest
import torch

import common
import stages
import text
import train
from blocks import attention
from common import PRECISIONS, autocast, load_checkpoint, precision_for
from model import PRESETS, FluxMusic
from pipeline import Pipeline
from vae import VAE, VAEConfig

from conftest import copy_run, run_script

# bf16 keeps 8 significant bits: one rounding is at most 2^-9 = 0.2% relative, and a handful of
# layers, each rounding its inputs and weights, stay within a few percent of fp32 in L2.
BF16_TOLERANCE = 0.03


def relative_error(approx, exact):
    return ((approx.float() - exact.float()).norm() / exact.float().norm()).item()


def randomised(module, seed=0):
    """Every parameter drawn at random: FluxMusic zero-initialises its output layer, and a network
    that outputs exactly zero in both precisions would prove nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5 / (p.shape[-1] if p.dim() else 1) ** 0.5)
    return module.eval()


def test_auto_precision_is_bf16_exactly_where_the_hardware_has_it(monkeypatch):
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(common, "native_bf16", lambda device, native=native: native)
        assert precision_for("auto", "cpu") == expected
        assert precision_for("fp32", "cpu") == "fp32" and precision_for("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        precision_for("fp16", "cpu")
    assert PRECISIONS == ("auto", "bf16", "fp32")


def test_flux_music_in_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    model = randomised(FluxMusic(PRESETS["tiny"]))
    c = model.config
    z, t = torch.randn(2, 8, 16, 16), torch.tensor([0.3, 0.9])
    txt, mask, y = torch.randn(2, 12, c.context_in_dim), torch.ones(2, 12, dtype=torch.bool), torch.randn(2, c.vec_in_dim)
    mask[1, 7:] = False
    with torch.no_grad():
        exact = model.velocity(z, t, txt, mask, y)
        with autocast("cpu", "bf16"):
            approx = model.velocity(z, t, txt, mask, y)
    assert exact.dtype == torch.float32 and approx.dtype == torch.bfloat16  # autocast really ran in bf16
    assert 0 < relative_error(approx, exact) < BF16_TOLERANCE


def test_cpu_attention_runs_in_fp32_under_autocast():
    """The CPU's fused bf16 attention kernel is the slow one: under autocast attention computes in
    fp32 and returns v's dtype, so its only error is bf16's rounding of q, k and v."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 40, 32, generator=generator) for _ in range(3))
    pe = torch.eye(2).expand(2, 1, 40, 16, 2, 2)  # the identity rotation
    rounded = [x.bfloat16().float() for x in (q, k, v)]
    with autocast("cpu", "bf16"):
        out = attention(*(x.bfloat16() for x in (q, k, v)), pe)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), attention(*rounded, pe), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", ["vae", "clap", "t5"])
def test_other_networks_in_bf16_autocast_match_fp32(name):
    torch.manual_seed(0)
    if name == "vae":
        model = randomised(VAE(VAEConfig()))
        inputs = (torch.randn(2, 64, 64),)
        run = lambda: model.decode(model.encode(*inputs, sample=False))
    else:
        tokenizer = text.ByteTokenizer(64)
        ids, mask = tokenizer(["a slow sad piano piece in a minor key", "fast organ, drums"])
        if name == "clap":
            model = randomised(text.CLAP(text.CLAPConfig()))
            run = lambda: model.embed_text((ids, mask))
        else:
            model = randomised(text.T5Encoder(text.T5Config()))
            run = lambda: model(ids, mask)
    with torch.no_grad():
        exact = run()
        with autocast("cpu", "bf16"):
            approx = run()
    assert 0 < relative_error(approx, exact) < BF16_TOLERANCE


def train_flow(smoke_run, run_dir, **overrides):
    run_dir = copy_run(smoke_run, run_dir, frozen_only=True)
    metrics = train.train(run_dir, replace(train.SMOKE, **overrides), ["flow"],
                          device="cpu", progress=False)
    return metrics["flow"], load_checkpoint(os.path.join(run_dir, "flow.pt"))


@pytest.mark.slow  # trains the flow stage three times
def test_fp32_and_bf16_runs_train_close_weights_and_each_repeats_exactly(smoke_run, tmp_path):
    runs = {name: train_flow(smoke_run, tmp_path / name, precision=precision)[1]
            for name, precision in (("fp32", "fp32"), ("bf16", "bf16"), ("bf16_again", "bf16"))}
    assert runs["fp32"]["run_config"]["precision"] == "fp32" and runs["bf16"]["run_config"]["precision"] == "bf16"
    for name, weights in runs["bf16"]["model"].items():
        assert torch.equal(weights, runs["bf16_again"]["model"][name]), name  # same seed, same precision
    losses = {name: [row["loss"] for row in run["history"]] for name, run in runs.items()}
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran ...
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)  # ... and computed the same losses


@pytest.mark.slow  # runs train.py in another process
def test_precision_flag_is_checked_and_the_stage_says_which_it_runs_in(copy_smoke_run):
    run_dir = copy_smoke_run(frozen_only=True)
    result = run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--precision", "fp32",
                        "--device", "cpu")
    assert "[flow]" in result.stdout and "fp32" in result.stdout.split("[flow]")[1].splitlines()[0]
    bad = run_script("train.py", "--smoke", "--run", run_dir, "--precision", "half", check=False)
    # the error line itself, not argparse's usage line (which lists every flag and choice whatever went wrong)
    error = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and "argument --precision: invalid choice" in error
    assert all(choice in error.split("choose from")[1] for choice in PRECISIONS)


def test_failed_compile_falls_back_to_eager(smoke_run, tmp_path, monkeypatch, capsys):
    def broken_compile(module, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C++ compiler found\ndetails")
        return compiled
    monkeypatch.setattr(stages.torch, "compile", broken_compile)
    metrics, checkpoint = train_flow(smoke_run, tmp_path / "run", compile=True, precision="fp32")
    assert "torch.compile failed (no C++ compiler found)" in capsys.readouterr().out
    assert checkpoint["done"] and len(checkpoint["history"]) == train.SMOKE.flow.steps


def test_pipeline_in_bf16_samples_what_fp32_samples(smoke_run):
    pipes = {p: Pipeline(smoke_run, "cpu", precision=p, use_vocoder=False) for p in ("fp32", "bf16")}
    latents = {p: pipe.generate_latents(["a fast organ tune with drums"], seconds=0.64, steps=4, seed=3)
               for p, pipe in pipes.items()}
    assert latents["bf16"].dtype == torch.float32  # the ODE's state stays fp32
    assert 0 < relative_error(latents["bf16"], latents["fp32"]) < BF16_TOLERANCE
