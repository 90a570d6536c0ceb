"""bench.py: the FLOP count, the explicit attention, the untrained stand-in run, and --quick end to end."""
import json
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import bench
import blocks
from model import PRESETS, FluxMusic
from pipeline import Pipeline
from conftest import run_script


@pytest.mark.parametrize("config", [PRESETS["tiny"],
                                    replace(PRESETS["tiny"], hidden_size=64, num_heads=2, depth=1, depth_single_blocks=3,
                                            mlp_ratio=2.0, context_in_dim=48, vec_in_dim=24)])
def test_model_flops_match_a_flop_counter(config, monkeypatch):
    # the fused CPU attention kernel is invisible to FlopCounterMode; the explicit one is plain matmuls
    monkeypatch.setattr(blocks.F, "scaled_dot_product_attention", bench.explicit_attention)
    torch.manual_seed(0)
    model = FluxMusic(config)
    batch, latent_frames, text_tokens = 2, 16, 12
    z = torch.randn(batch, 8, latent_frames, 16)
    txt, y = torch.randn(batch, text_tokens, config.context_in_dim), torch.randn(batch, config.vec_in_dim)
    with FlopCounterMode(display=False) as counter:
        model.velocity(z, torch.rand(batch), txt, torch.ones(batch, text_tokens, dtype=torch.bool), y)
    n_img = latent_frames // 2 * 8
    assert counter.get_total_flops() == batch * bench.model_flops(config, n_img, text_tokens)


def test_explicit_attention_matches_sdpa_with_a_padding_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(bench.explicit_attention(q, k, v, mask), expected, atol=1e-6)
    # masked keys really are ignored: changing them changes nothing
    v2 = v.clone()
    v2[0, :, 5:] += 100
    assert torch.allclose(bench.explicit_attention(q, k, v2, mask)[0], expected[0], atol=1e-5)


def test_music_tokens_of_a_clip():
    assert bench.tokens_for(2.56) == 256 and bench.tokens_for(10.24) == 1024


def test_untrained_run_loads_into_the_pipeline(tmp_path):
    pipe = Pipeline(bench.untrained_run(str(tmp_path)), "cpu")
    mel, audio = pipe.generate(["a test"], seconds=0.08, steps=1)
    assert mel.shape == (1, 8, 64) and audio.shape == (1, 8 * 160)


@pytest.mark.slow  # runs bench.py in another process
def test_bench_quick_end_to_end(smoke_run, tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("bench.py", "--quick", "--run", smoke_run, "--device", "cpu", "--out", str(out))
    with open(out) as f:
        results = json.load(f)
    assert results["quick"] and results["run"] == smoke_run and list(results["devices"]) == ["cpu"]
    cpu = results["devices"]["cpu"]
    assert cpu["matmul fp32 GFLOP/s"] > 0 and cpu["train tiny: batch"] == 2
    assert 0 < cpu["train tiny: fraction of matmul peak"] and cpu["train tiny: peak memory MB"] > 0
    assert cpu["train tiny compiled bf16: step ms"] == cpu["train tiny-wide compiled bf16: step ms"] == "skipped (--quick)"
    for precision in ("fp32", "bf16"):  # --quick runs both, even where bf16 is emulated
        faster = [v for k, v in cpu.items() if k.startswith(f"text -> WAV {precision}") and k.endswith("real time")]
        assert len(faster) == 1 and faster[0] > 0
        for stage in ("vae", "vocoder warm-up", "vocoder GAN", "vocoder warm-up (waveform head)",
                      "vocoder GAN (waveform head)", "vocoder warm-up (free phase, no pitch losses)",
                      "clap", "t5", "flow"):
            assert cpu[f"step ms: {stage}, {precision}"] > 0
    assert cpu["speed-up: flow, fastest vs fp32 eager"] >= 1
    assert "| benchmark | cpu |" in result.stdout and f"wrote {out}" in result.stdout
