"""flow.py: the straight path, its target, timestep sampling, the ODE samplers and CFG."""
import pytest
import torch

from flow import (cfg_velocity, flow_loss, guided_velocity_fn, interpolate, per_sample_flow_loss,
                  sample, sample_timesteps, shift_timesteps, timestep_schedule, velocity_target)

# ----------------------------------------------------------------------------- path and loss


def time_derivative(f, t, h=1e-6):
    """Central finite difference of f(t) for a (B,) float64 t: exact to ~1e-9 for smooth f."""
    return (f(t + h) - f(t - h)) / (2 * h)


def test_interpolate_endpoints_are_data_and_noise():
    torch.manual_seed(0)
    x0, noise = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    assert torch.equal(interpolate(x0, noise, torch.zeros(4)), x0)
    assert torch.equal(interpolate(x0, noise, torch.ones(4)), noise)
    # each sample gets its own time
    t = torch.tensor([0.0, 1.0, 0.25, 0.5])
    z = interpolate(x0, noise, t)
    assert torch.equal(z[0], x0[0]) and torch.equal(z[1], noise[1])
    assert torch.allclose(z[2], 0.75 * x0[2] + 0.25 * noise[2])


def test_time_derivative_of_the_path_is_the_velocity_target():
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    dz_dt = time_derivative(lambda t: interpolate(x0, noise, t), t)
    assert torch.allclose(dz_dt, velocity_target(x0, noise), atol=1e-8)
    assert torch.equal(velocity_target(x0, noise), noise - x0)


def test_interpolate_rejects_times_of_the_wrong_shape():
    x0 = torch.randn(4, 3)
    with pytest.raises(ValueError, match="one time per sample"):
        interpolate(x0, x0, torch.rand(3))
    with pytest.raises(ValueError, match="one time per sample"):
        interpolate(x0, x0, torch.tensor(0.5))


def test_loss_is_zero_for_the_exact_target_and_the_mse_otherwise():
    torch.manual_seed(0)
    x0, noise = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    exact = noise - x0
    assert flow_loss(exact, x0, noise).item() == 0.0
    v_pred = exact + torch.randn_like(exact)
    assert flow_loss(v_pred, x0, noise) > 0
    assert torch.allclose(flow_loss(v_pred, x0, noise), ((v_pred - exact) ** 2).mean())
    per_sample = per_sample_flow_loss(v_pred, x0, noise)
    assert per_sample.shape == (5,)
    assert torch.allclose(per_sample[2], ((v_pred[2] - exact[2]) ** 2).mean())
    assert torch.allclose(per_sample.mean(), flow_loss(v_pred, x0, noise))


# ----------------------------------------------------------------------------- timesteps


def test_logit_normal_timesteps_have_the_right_logit_mean_and_std():
    generator = torch.Generator().manual_seed(0)
    t = sample_timesteps(50_000, generator=generator)
    assert t.shape == (50_000,)
    assert (t > 0).all() and (t < 1).all()
    assert abs(t.median().item() - 0.5) < 0.01
    logit = torch.logit(t.double())
    assert abs(logit.mean().item()) < 0.02 and abs(logit.std().item() - 1.0) < 0.02
    shifted = torch.logit(sample_timesteps(50_000, mean=1.0, std=0.5, generator=generator).double())
    assert abs(shifted.mean().item() - 1.0) < 0.02 and abs(shifted.std().item() - 0.5) < 0.02


def test_uniform_timesteps_and_generator_reproducibility():
    t = sample_timesteps(50_000, "uniform", generator=torch.Generator().manual_seed(1))
    assert (t >= 0).all() and (t < 1).all()
    assert abs(t.mean().item() - 0.5) < 0.01 and abs(t.var().item() - 1 / 12) < 0.005
    again = sample_timesteps(50_000, "uniform", generator=torch.Generator().manual_seed(1))
    assert torch.equal(t, again)


def test_timestep_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown timestep method"):
        sample_timesteps(4, "cosine")
    with pytest.raises(ValueError, match="std must be positive"):
        sample_timesteps(4, std=0.0)


def test_shift_is_identity_at_one_fixes_the_ends_and_is_monotone():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(shift_timesteps(t, 1.0), t)
    for s in (0.5, 3.0, 10.0):
        shifted = shift_timesteps(t, s)
        assert shifted[0] == 0 and shifted[-1] == 1
        assert (shifted.diff() > 0).all()
        # the shift multiplies the noise-to-signal ratio t / (1 - t) by s
        inner = slice(1, -1)
        assert torch.allclose(shifted[inner] / (1 - shifted[inner]), s * t[inner] / (1 - t[inner]))
    assert (shift_timesteps(t, 3.0) >= t).all()  # s > 1 moves every time towards the noise
    with pytest.raises(ValueError, match="shift must be positive"):
        shift_timesteps(t, 0.0)


def test_schedule_runs_from_one_to_zero():
    schedule = timestep_schedule(8)
    assert schedule.shape == (9,) and schedule[0] == 1 and schedule[-1] == 0
    assert (schedule.diff() < 0).all()
    assert torch.allclose(timestep_schedule(8, shift=3.0), shift_timesteps(schedule, 3.0))


# ----------------------------------------------------------------------------- samplers on a Gaussian

MU, SIGMA = 1.5, 0.5


def gaussian_velocity(z, t):
    """The exact marginal velocity E[eps - x0 | z_t = z] for x0 ~ N(MU, SIGMA^2)."""
    t = t.to(z.dtype)
    variance = (1 - t) ** 2 * SIGMA**2 + t**2
    centred = z - (1 - t) * MU
    expected_x0 = MU + (1 - t) * SIGMA**2 * centred / variance
    expected_noise = t * centred / variance
    return expected_noise - expected_x0


def exact_flow(z1, t):
    """The solution of dz/dt = gaussian_velocity through z1 at t = 1: keeps z_t's mean and std."""
    return (1 - t) * MU + ((1 - t) ** 2 * SIGMA**2 + t**2) ** 0.5 * z1


def test_exact_gaussian_flow_solves_the_ode_and_lands_on_the_data():
    z1 = torch.linspace(-3, 3, 7, dtype=torch.float64)
    for t_value in (0.05, 0.3, 0.7, 0.95):
        t = torch.full((7,), t_value, dtype=torch.float64)
        dz_dt = time_derivative(lambda t: exact_flow(z1, t), t)
        assert torch.allclose(dz_dt, gaussian_velocity(exact_flow(z1, t), t), atol=1e-8)
    assert torch.allclose(exact_flow(z1, torch.zeros(7, dtype=torch.float64)), MU + SIGMA * z1)


def test_euler_on_the_exact_field_reproduces_mean_and_std():
    noise = torch.randn(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample(gaussian_velocity, noise, steps=200, sampler="euler")
    assert abs(x.mean().item() - MU) < 0.02 and abs(x.std().item() - SIGMA) < 0.02
    # and per sample it follows the exact flow map noise -> MU + SIGMA * noise
    assert (x - (MU + SIGMA * noise)).abs().max() < 0.02


def sampling_error(sampler, steps, shift=1.0):
    noise = torch.linspace(-3, 3, 101, dtype=torch.float64)
    x = sample(gaussian_velocity, noise, steps=steps, sampler=sampler, shift=shift)
    return (x - (MU + SIGMA * noise)).abs().max().item()


def test_heun_beats_euler_and_both_converge_at_their_order():
    euler_10, heun_10 = sampling_error("euler", 10), sampling_error("heun", 10)
    assert heun_10 < euler_10 / 5
    # halving the step: first order halves the error, second order (once h is small) quarters it
    assert 1.7 < euler_10 / sampling_error("euler", 20) < 2.3
    assert 3.4 < sampling_error("heun", 20) / sampling_error("heun", 40) < 4.6


def test_shifted_schedule_solves_the_same_ode():
    assert sampling_error("heun", 100, shift=3.0) < 1e-3


def test_heun_step_by_hand_and_calls_per_step():
    calls = []

    def velocity_fn(z, t):
        calls.append(t)
        return z * t.view(-1, 1)

    z1 = torch.tensor([[1.0, 2.0]])
    # one step from t = 1 to 0: slope z*1 at the start, then at z_hat = z - z = 0 the slope is 0
    assert torch.allclose(sample(velocity_fn, z1, steps=1, sampler="heun"), z1 - 0.5 * z1)
    assert len(calls) == 2
    calls.clear()
    sample(velocity_fn, torch.ones(3, 2), steps=4, sampler="heun")
    assert len(calls) == 8 and all(t.shape == (3,) and t.dtype == torch.float32 for t in calls)
    calls.clear()
    sample(velocity_fn, torch.ones(3, 2), steps=4, sampler="euler")
    assert len(calls) == 4 and [t[0].item() for t in calls] == [1.0, 0.75, 0.5, 0.25]


def test_return_path_starts_at_noise_and_ends_at_the_sample():
    noise = torch.randn(6, 2, 3)
    path = sample(lambda z, t: -z, noise, steps=5, return_path=True)
    assert path.shape == (6, 6, 2, 3)
    assert torch.equal(path[0], noise)
    assert torch.equal(path[-1], sample(lambda z, t: -z, noise, steps=5))


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps must be a positive integer"),
    (dict(steps=2.5), "steps must be a positive integer"),
    (dict(sampler="rk4"), "unknown sampler"),
    (dict(shift=-1.0), "shift must be positive"),
])
def test_sample_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(lambda z, t: z, torch.zeros(2, 3), **kwargs)


# ----------------------------------------------------------------------------- guidance


def test_cfg_scale_zero_is_unconditional_one_is_conditional():
    torch.manual_seed(0)
    v_cond, v_uncond = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(cfg_velocity(v_cond, v_uncond, 0.0), v_uncond)
    assert torch.allclose(cfg_velocity(v_cond, v_uncond, 1.0), v_cond)
    assert torch.allclose(cfg_velocity(v_cond, v_uncond, 3.0), 3 * v_cond - 2 * v_uncond)


class TinyConditionalModel:
    """A per-sample model_fn(z, t, cond) with text, mask and pooled inputs; records its batch sizes."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.w_txt = torch.randn(6, 4, generator=generator)
        self.w_y = torch.randn(5, 4, generator=generator)
        self.batch_sizes = []

    def __call__(self, z, t, cond):
        self.batch_sizes.append(z.shape[0])
        mask = cond["txt_mask"].unsqueeze(-1).float()
        txt = (cond["txt"] * mask).sum(1) / mask.sum(1)  # masked mean over the caption
        return z * (1 + t.view(-1, 1)) + txt @ self.w_txt + cond["y"] @ self.w_y


def make_condition(batch, length, generator):
    mask = torch.rand(batch, length, generator=generator) < 0.7
    mask[:, 0] = True
    return {"txt": torch.randn(batch, length, 6, generator=generator), "txt_mask": mask,
            "y": torch.randn(batch, 5, generator=generator)}


def test_guided_velocity_is_one_batched_forward_equal_to_two_passes():
    generator = torch.Generator().manual_seed(0)
    model = TinyConditionalModel()
    cond, uncond = make_condition(3, 7, generator), make_condition(3, 7, generator)
    z, t = torch.randn(3, 4, generator=generator), torch.rand(3, generator=generator)
    guided = guided_velocity_fn(model, cond, uncond, scale=4.0)(z, t)
    assert model.batch_sizes == [6]
    expected = cfg_velocity(model(z, t, cond), model(z, t, uncond), 4.0)
    assert torch.allclose(guided, expected, atol=1e-5)

    model.batch_sizes.clear()
    plain = guided_velocity_fn(model, cond, uncond, scale=1.0)(z, t)
    assert model.batch_sizes == [3]
    assert torch.equal(plain, model(z, t, cond))


def test_guided_velocity_accepts_tuples_and_none_and_samples():
    def model(z, t, cond):
        txt, mask = cond
        assert mask is None
        return txt.mean(1) - z

    cond, uncond = (torch.ones(2, 3, 4), None), (torch.zeros(2, 3, 4), None)
    velocity_fn = guided_velocity_fn(model, cond, uncond, scale=2.0)
    z = torch.randn(2, 4)
    assert torch.allclose(velocity_fn(z, torch.rand(2)), 2.0 - z)  # 2*(1 - z) - (0 - z)
    assert sample(velocity_fn, z, steps=3).shape == (2, 4)


def test_guided_velocity_rejects_mismatched_conditions():
    model = TinyConditionalModel()
    generator = torch.Generator().manual_seed(0)
    cond = make_condition(3, 7, generator)
    with pytest.raises(ValueError, match="same keys"):
        guided_velocity_fn(model, cond, {"txt": cond["txt"]}, 2.0)
    with pytest.raises(ValueError, match="same batch size"):
        guided_velocity_fn(model, cond, make_condition(1, 7, generator), 2.0)
    with pytest.raises(ValueError, match="both be None"):
        guided_velocity_fn(model, (torch.ones(2, 1), None), (torch.ones(2, 1), torch.ones(2, 1)), 2.0)
