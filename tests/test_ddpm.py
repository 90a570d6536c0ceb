"""flow.py's DDPM baseline: the noise schedule, the noising and its noise regression, and the DDIM sampler."""
import math

import pytest
import torch

from flow import ddim_sample, ddim_step, ddpm_noising, ddpm_schedule, sample_ddpm_timesteps


def test_schedule_is_the_cumulative_product_of_linear_betas():
    abar = ddpm_schedule()
    assert abar.shape == (1000,) and abar.dtype == torch.float64
    assert (abar.diff() < 0).all() and (abar > 0).all()
    assert abar[0].item() == pytest.approx(1 - 1e-4, abs=1e-15)
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    assert abar[-1].item() == pytest.approx(math.prod(1 - b for b in betas), rel=1e-10)
    assert abar[-1].item() == pytest.approx(4.0358e-5, rel=1e-4)  # the value DDPM papers quote
    short = ddpm_schedule(10, 0.1, 0.1)
    assert torch.allclose(short, 0.9 ** torch.arange(1, 11, dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_start"):
        ddpm_schedule(10, 0.02, 1e-4)


def test_noising_mixes_data_and_noise_with_unit_total_variance():
    torch.manual_seed(0)
    abar = ddpm_schedule()
    x0, noise = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    k = torch.tensor([0, 500, 999])
    x = ddpm_noising(x0, noise, k, abar)
    for i in range(3):
        a = abar[k[i]].item()
        assert torch.allclose(x[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i], atol=1e-6)
    # variance preserving: unit-variance data stays unit variance at every k
    big = torch.randn(20000, 1)
    for step in (0, 300, 999):
        ks = torch.full((20000,), step)
        assert ddpm_noising(big, torch.randn(20000, 1), ks, abar).var().item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="one time per sample"):
        ddpm_noising(x0, noise, torch.tensor([1, 2]), abar)


def test_the_noise_regression_is_zero_for_the_true_noise_and_the_mean_square_otherwise():
    """The baseline's loss, as FlowStage.train_step computes it: mean (eps_theta(x_k) - eps)^2 at
    x_k = ddpm_noising(x0, eps, k). A network that recovers eps from x_k scores 0, and one off by 2
    everywhere scores 4 (the step's t = k / K and this path are checked in test_stages.py)."""
    generator = torch.Generator().manual_seed(0)
    abar = ddpm_schedule()
    x0, eps = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    k = torch.tensor([0, 250, 500, 999])
    x_k = ddpm_noising(x0, eps, k, abar)
    a = abar[k].float()[:, None]
    oracle = (x_k - a.sqrt() * x0) / (1 - a).sqrt()  # what a perfect network would answer
    assert ((oracle - eps) ** 2).mean().item() == pytest.approx(0.0, abs=1e-8)
    assert ((oracle + 2.0 - eps) ** 2).mean().item() == pytest.approx(4.0, abs=1e-4)


def test_timesteps_are_uniform_integers():
    k = sample_ddpm_timesteps(50000, generator=torch.Generator().manual_seed(0))
    assert k.dtype == torch.long and k.min() == 0 and k.max() == 999
    assert k.float().mean().item() == pytest.approx(499.5, abs=5)


def test_one_ddim_step_with_the_true_noise_lands_on_the_clean_sample():
    torch.manual_seed(0)
    abar = ddpm_schedule()
    x0, noise = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    k = 700
    x_k = ddpm_noising(x0, noise, torch.full((2,), k), abar)
    seen = []

    def true_eps(x, t):
        seen.append(t)
        return noise

    assert torch.allclose(ddim_sample(true_eps, x_k, steps=1, alphas_cumprod=abar[:k + 1]), x0, atol=1e-12)
    assert torch.allclose(seen[0], torch.full((2,), k / (k + 1), dtype=torch.float64))
    # a step to any lower level j puts the same noise back: exactly the noised x_j
    x_j = ddim_step(noise, x_k, abar[k].item(), abar[200].item())
    assert torch.allclose(x_j, ddpm_noising(x0, noise, torch.full((2,), 200), abar), atol=1e-12)


def test_ddim_visits_evenly_spaced_steps_and_passes_t_as_k_over_1000():
    seen = []
    ddim_sample(lambda x, t: seen.append(t) or torch.zeros_like(x), torch.zeros(3, 2), steps=4)
    assert [round(t[0].item() * 1000) for t in seen] == [999, 666, 333, 0]
    assert all(t.shape == (3,) and t.dtype == torch.float32 for t in seen)
    with pytest.raises(ValueError, match="positive integer"):
        ddim_sample(lambda x, t: x, torch.zeros(2), steps=0)


MU, SIGMA = 1.5, 0.5
SCHEDULE = ddpm_schedule()


def gaussian_eps(x, t):
    """The exact E[eps | x_k] for data x0 ~ N(MU, SIGMA^2): sqrt(1-a)(x - sqrt(a) MU) / (a SIGMA^2 + 1 - a)."""
    a = SCHEDULE[torch.round(t * 1000).long()].to(x.dtype)
    return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * SIGMA**2 + 1 - a)


def test_ddim_with_the_exact_noise_predictor_recovers_a_gaussian():
    noise = torch.randn(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples = ddim_sample(gaussian_eps, noise, steps=100)
    assert samples.mean().item() == pytest.approx(MU, abs=0.02)
    assert samples.std().item() == pytest.approx(SIGMA, abs=0.02)
    # the exact probability-flow map from x_999 ~ N(sqrt(a) MU, a SIGMA^2 + 1 - a) to the data is affine;
    # DDIM is a first-order solver of that flow, so its error shrinks like 1 / steps
    a = ddpm_schedule()[-1]
    exact = MU + SIGMA * (noise - a.sqrt() * MU) / (a * SIGMA**2 + 1 - a).sqrt()
    coarse = (samples - exact).abs().max().item()
    fine = (ddim_sample(gaussian_eps, noise, steps=1000) - exact).abs().max().item()
    assert fine < 0.01 and 7 < coarse / fine < 13
