"""vae.py: latent shapes, the KL closed form, the scale factor, bad input, and that a briefly
trained VAE reconstructs held-out clips better than the mean mel does."""
import pytest
import torch

from conftest import train_stage
from train import StageSize
from vae import VAE, VAEConfig, kl_divergence, random_crops, training_batch


def small_vae(**changes):
    torch.manual_seed(0)
    return VAE(VAEConfig(**{"channels": (8, 16, 16), "groups": 4, **changes})).eval()


@pytest.mark.parametrize("frames", [256, 1024])  # 2.56 s and 10.24 s
def test_latent_and_reconstruction_shapes(frames):
    vae = small_vae()
    mel = torch.randn(2, frames, 64) - 5
    with torch.no_grad():
        latent = vae.encode(mel)
        assert latent.shape == (2, 8, frames // 4, 16)
        assert vae.decode(latent).shape == (2, frames, 64)


def test_default_config_shapes():
    vae = VAE(VAEConfig()).eval()
    with torch.no_grad():
        assert vae.encode(torch.zeros(1, 256, 64)).shape == (1, 8, 64, 16)


def test_bad_shapes_are_clear_errors():
    vae = small_vae()
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.encode(torch.zeros(1, 30, 64))
    with pytest.raises(ValueError, match="64"):
        vae.encode(torch.zeros(1, 32, 80))
    with pytest.raises(ValueError, match="latent"):
        vae.decode(torch.zeros(1, 4, 8, 16))
    with pytest.raises(ValueError, match="groups"):
        VAEConfig(channels=(8, 12, 16), groups=8)


def test_kl_of_a_standard_normal_posterior_is_zero():
    zeros = torch.zeros(3, 8, 4, 16)
    assert kl_divergence(zeros, zeros).item() == 0.0


def test_kl_matches_the_closed_form_and_is_positive_otherwise():
    torch.manual_seed(0)
    mean, logvar = torch.randn(2, 8, 4, 16, dtype=torch.float64), torch.randn(2, 8, 4, 16, dtype=torch.float64)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).mean()
    assert torch.allclose(kl_divergence(mean, logvar), expected)
    # a unit-variance posterior shifted by mu costs exactly mu^2 / 2 per element
    assert torch.isclose(kl_divergence(torch.full((5,), 2.0), torch.zeros(5)), torch.tensor(2.0))


def test_scale_factor_gives_unit_variance_and_is_saved():
    vae = small_vae()
    mels = torch.randn(6, 32, 64) * 3 - 5
    scale = vae.measure_scale_factor(mels)
    with torch.no_grad():
        assert vae.encode(mels).std().item() == pytest.approx(1.0, rel=1e-4)
        unscaled_std = vae.posterior(mels)[0].std().item()
    assert scale == pytest.approx(1.0 / unscaled_std, rel=1e-5)
    state = vae.state_dict()
    assert state["scale_factor"].item() == pytest.approx(scale)
    fresh = small_vae()
    fresh.load_state_dict(state)
    assert fresh.scale_factor.item() == pytest.approx(scale)


def test_scale_factor_cancels_between_encode_and_decode():
    vae = small_vae()
    mel = torch.randn(1, 16, 64) - 5
    with torch.no_grad():
        before = vae.decode(vae.encode(mel))
        vae.scale_factor.fill_(0.37)
        after = vae.decode(vae.encode(mel))
    assert torch.allclose(before, after, atol=1e-5)


def test_sampled_encoding_differs_from_the_mean_by_the_posterior_spread():
    vae = small_vae()
    mel = torch.randn(2, 16, 64) - 5
    with torch.no_grad():
        mean, logvar = vae.posterior(mel)
        torch.manual_seed(1)
        sample = vae.encode(mel, sample=True)
    torch.manual_seed(1)
    expected = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    assert torch.allclose(sample, expected)
    assert torch.equal(vae.encode(mel), mean)


def test_loss_is_l1_plus_weighted_kl():
    vae = small_vae(kl_weight=0.5)
    mel = torch.randn(2, 16, 64) - 5
    loss, logs = vae.loss(mel)
    assert loss.item() == pytest.approx(logs["l1"] + 0.5 * logs["kl"], rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in vae.parameters())


def test_random_crops_are_windows_of_the_clips():
    mels = torch.arange(3 * 20 * 64, dtype=torch.float32).reshape(3, 20, 64)
    crops = random_crops(mels, 5, 8, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 8, 64)
    for crop in crops:
        clip, frame = divmod(int(crop[0, 0]) // 64, 20)
        assert torch.equal(crop, mels[clip, frame:frame + 8])


def test_training_batch_draws_crops_and_posterior_noise_reproducibly():
    mels, config = torch.randn(3, 40, 64), VAEConfig()
    crops, noise = training_batch(mels, 5, 16, config, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 16, 64) and noise.shape == (5, config.latent_channels, 4, 16)
    again = training_batch(mels, 5, 16, config, torch.Generator().manual_seed(0))
    assert torch.equal(crops, again[0]) and torch.equal(noise, again[1])


@pytest.mark.slow  # trains the VAE stage for real
def test_the_vae_stage_beats_the_mean_mel_on_held_out_clips(one_thread, tmp_path):
    """The recipe train.py runs (training_batch -> VAE.loss -> AdamW), briefly, on short clips."""
    metrics, history = train_stage(tmp_path, "vae", num_clips=12, num_val_clips=4, seconds=0.64,
                                   vae=StageSize(80, 4, 2e-3), vae_crop_frames=32)
    assert len(history) == 80 and {"loss", "l1", "kl"} <= set(history[-1])
    assert metrics["val_mel_l1"] < 0.5 * metrics["mean_mel_baseline_l1"]
    assert metrics["scale_factor"] > 0
