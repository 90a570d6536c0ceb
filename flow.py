"""Rectified flow: how FluxMusic turns noise into music latents.

The path. Take a data sample x0 (a music latent) and a noise sample eps ~ N(0, I) of the same
shape, and join them with a straight line in time t in [0, 1]:

    z_t = (1 - t) * x0 + t * eps            t = 0: data,  t = 1: pure noise

Why a straight line? It is the simplest path with the right two ends, and along it the
velocity is constant:

    d z_t / dt = eps - x0                   (the same vector for every t)

so the network has one fixed vector to predict for each pair, and if the paths it learns
were perfectly straight a single Euler step would carry noise to data exactly. The DDPM path
z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps curves, so its solvers need many small steps.

Why the velocity target. We regress a network v_theta(z, t) onto that velocity:

    L(theta) = E_{x0, eps, t} || v_theta(z_t, t) - (eps - x0) ||^2

Many different pairs (x0, eps) pass through the same point z at time t, each with its own
velocity. A least-squares regressor cannot tell them apart, so its optimum is their average,
the *marginal* velocity

    v(z, t) = E[ eps - x0 | z_t = z ].

This average field is exactly what we need: particles that start as noise at t = 1 and move
along dz/dt = v(z, t) have, at every t, the same distribution as z_t -- at t = 0, the data
distribution. Trajectories of an ODE never cross, so where the straight per-pair lines would
cross the learned trajectories bend; "rectified" flow is trained to make them as straight
as the data allows (FluxMusic trains once and does not "reflow").

Sampling is an ODE solve, backwards in time from t = 1 to t = 0, on a grid
1 = t_0 > t_1 > ... > t_N = 0 (so each step dt = t_{k+1} - t_k is negative):

    Euler:  z_{k+1} = z_k + dt * v(z_k, t_k)                                  1 call a step
    Heun:   z_hat   = z_k + dt * v(z_k, t_k)              (Euler as predictor)
            z_{k+1} = z_k + dt * (v(z_k, t_k) + v(z_hat, t_{k+1})) / 2      2 calls a step

Euler's error at t = 0 shrinks like 1/N, Heun's like 1/N^2. We keep Heun's corrector on the
last step too: our update never divides by t (unlike EDM's denoiser form, which is why EDM
skips it), so t = 0 is an ordinary point of the solve and every step stays second order.

A worked example the tests check: for 1-D data x0 ~ N(mu, sigma^2), z_t is Gaussian with mean
(1 - t) mu and variance V_t = (1 - t)^2 sigma^2 + t^2, and

    E[x0 | z]  = mu + (1 - t) sigma^2 (z - (1 - t) mu) / V_t
    E[eps | z] =           t          (z - (1 - t) mu) / V_t
    v(z, t)    = E[eps | z] - E[x0 | z]

whose exact flow is z_t = (1 - t) mu + sqrt(V_t) * z_1: noise eps lands on mu + sigma * eps.

Which t to train on. `sample_timesteps` draws t = sigmoid(m + s * n), n ~ N(0, 1), the
logit-normal of Esser et al. (SD3), which FluxMusic uses with m = 0, s = 1. Near t = 0 the
best guess of eps is just its mean and near t = 1 the best guess of x0 is the data mean: both
ends are easy. The middle, where the network must decide what the music is, gets most samples.

Timestep shift. Sampling with a schedule shifted towards the noisy end,

    t' = s t / (1 + (s - 1) t),   equivalently   t' / (1 - t') = s * t / (1 - t),

multiplies the noise-to-signal ratio by s. A long sequence of correlated tokens is still
recognisable at a noise level that would wipe out a short one, so with many tokens (long
clips) a shift s > 1 spends more steps where the coarse structure is still being decided.
s = 1 leaves the schedule unchanged.

Classifier-free guidance (CFG). Training drops the caption 10% of the time, so one network
learns both the conditional field v(z, t | c) and the unconditional one v(z, t | empty).
Sampling extrapolates from the second towards (and past) the first:

    v = v_u + w * (v_c - v_u)

w = 0 ignores the caption, w = 1 is the plain conditional model, w > 1 (the paper uses 7)
trades diversity for adherence to the caption. A "negative prompt" simply replaces the empty
caption in v_u. Both passes run as one forward on a doubled batch.

The whole training step is four lines, written out in `stages.FlowStage.train_step`: draw
t and eps, z_t = interpolate(x0, eps, t), v = v_theta(z_t, t, caption), loss = mean (v - (eps - x0))^2.
This file holds its pieces and the samplers: training (path, target, loss, timesteps),
sampling (schedule and ODE steps), guidance, and the classic DDPM/DDIM baseline (its noising,
which the same training step uses with the noise as target, and its sampler), so the two can
share one network.

References
- Fei et al., "FLUX that Plays Music" (FluxMusic), arXiv 2409.00587
- Liu, Gong, Liu, "Flow Straight and Fast: Learning to Generate and Transfer Data with
  Rectified Flow", arXiv 2209.03003; Lipman et al., "Flow Matching for Generative Modeling",
  arXiv 2210.02747
- Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis"
  (SD3: logit-normal t, timestep shift), arXiv 2403.03206
- Ho & Salimans, "Classifier-Free Diffusion Guidance", arXiv 2207.12598
- Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", arXiv 2006.11239;
  Song, Meng, Ermon, "Denoising Diffusion Implicit Models", arXiv 2010.02502
- Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM,
  Heun's method), arXiv 2206.00364
"""

import torch

# ----------------------------------------------------------------------------- training


def _per_sample(t, x):
    """Reshape a (B,) tensor of times so it broadcasts over the other dims of x (B, ...)."""
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample; got {tuple(t.shape)}")
    return t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def interpolate(x0, noise, t):
    """z_t = (1 - t) x0 + t noise, with t of shape (B,) giving each sample its own time."""
    t = _per_sample(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0, noise):
    """d z_t / dt along the straight path: noise - x0 (independent of t)."""
    return noise - x0


def per_sample_flow_loss(v_pred, x0, noise):
    """Squared error between predicted and target velocity, averaged over all but the batch dim: (B,)."""
    error = (v_pred - velocity_target(x0, noise)) ** 2
    return error.flatten(1).mean(dim=1)


def flow_loss(v_pred, x0, noise):
    """The rectified-flow training loss: mean squared error over every element, a scalar."""
    # every sample has the same number of elements, so the mean of per-sample means is the global mean
    return per_sample_flow_loss(v_pred, x0, noise).mean()


def sample_timesteps(n, method="logit_normal", mean=0.0, std=1.0, generator=None, device=None):
    """n training times in (0, 1): logit-normal sigmoid(mean + std * N(0,1)) or uniform on [0, 1).

    A ``generator`` must live on ``device``.
    """
    if method == "logit_normal":
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    if method == "uniform":
        return torch.rand(n, generator=generator, device=device)
    raise ValueError(f"unknown timestep method {method!r}; use 'logit_normal' or 'uniform'")


# ----------------------------------------------------------------------------- sampling


def shift_timesteps(t, shift):
    """t' = s t / (1 + (s - 1) t): multiplies the noise-to-signal ratio t / (1 - t) by s."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def timestep_schedule(steps, shift=1.0):
    """The (steps + 1,) grid of times a sampler visits, from 1 down to 0, in float64."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def _time_batch(t, z):
    # at least float32 even for a bf16 z: the model embeds 1000*t, which bf16 would round
    dtype = torch.promote_types(z.dtype, torch.float32)
    return torch.full((z.shape[0],), t, dtype=dtype, device=z.device)


def euler_step(velocity_fn, z, t, t_next):
    """One Euler step of dz/dt = v(z, t) from t to t_next (< t)."""
    return z + (t_next - t) * velocity_fn(z, _time_batch(t, z))


def heun_step(velocity_fn, z, t, t_next):
    """One Heun step: Euler predictor, then the average of the slopes at both ends."""
    v = velocity_fn(z, _time_batch(t, z))
    z_guess = z + (t_next - t) * v
    v_next = velocity_fn(z_guess, _time_batch(t_next, z))
    return z + (t_next - t) * 0.5 * (v + v_next)


SAMPLERS = {"euler": euler_step, "heun": heun_step}


@torch.no_grad()
def sample(velocity_fn, noise, steps=50, sampler="euler", shift=1.0, return_path=False, keep=None):
    """Integrate dz/dt = velocity_fn(z, t) from z = noise at t = 1 to t = 0 and return z.

    velocity_fn(z, t) gets t as a (B,) tensor. With return_path=True, return instead the
    (steps + 1, B, ...) stack of z at every time of the schedule (noise first, sample last).
    keep(z, t), if given, rewrites z before every step and at t = 0: inpainting puts the frames
    it already knows back on their own path there (longform.py).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use one of {sorted(SAMPLERS)}")
    step, keep = SAMPLERS[sampler], keep or (lambda z, t: z)
    times = timestep_schedule(steps, shift).tolist()
    z = noise
    path = [z]
    for t, t_next in zip(times[:-1], times[1:]):
        z = keep(step(velocity_fn, keep(z, t), t, t_next), t_next)
        path.append(z)
    return torch.stack(path) if return_path else z


# ----------------------------------------------------------------------------- guidance


def cfg_velocity(v_cond, v_uncond, scale):
    """Classifier-free guidance: v_u + scale * (v_c - v_u)."""
    return v_uncond + scale * (v_cond - v_uncond)


def _stack_conditions(cond, uncond):
    """Concatenate two conditions (a tensor, or a dict / tuple of tensors or None) along dim 0."""
    if isinstance(cond, dict):
        if cond.keys() != uncond.keys():
            raise ValueError(f"cond and uncond need the same keys, got {sorted(cond)} and {sorted(uncond)}")
        return {key: _stack_conditions(cond[key], uncond[key]) for key in cond}
    if isinstance(cond, (tuple, list)):
        if len(cond) != len(uncond):
            raise ValueError(f"cond and uncond need the same length, got {len(cond)} and {len(uncond)}")
        return type(cond)(_stack_conditions(c, u) for c, u in zip(cond, uncond))
    if cond is None or uncond is None:
        if cond is not uncond:
            raise ValueError("cond and uncond must both be None or both be tensors")
        return None
    if cond.shape[0] != uncond.shape[0]:
        raise ValueError(f"cond and uncond must have the same batch size, got {cond.shape[0]} and {uncond.shape[0]}")
    return torch.cat([cond, uncond], dim=0)


def guided_velocity_fn(model_fn, cond, uncond, scale):
    """A velocity_fn(z, t) for `sample` that applies CFG to model_fn(z, t, cond).

    cond and uncond have the same structure (a tensor, or a dict / tuple of tensors batched
    along dim 0, e.g. {"txt": ..., "txt_mask": ..., "y": ...}) and batch size B = z.shape[0];
    tensors that are paired up must match in every other dim (pad captions to one length).
    Both passes run as one forward on a batch of 2B. scale == 1 is the plain conditional
    model, so it skips the unconditional half.
    """
    if scale == 1:
        return lambda z, t: model_fn(z, t, cond)
    both = _stack_conditions(cond, uncond)

    def velocity_fn(z, t):
        v_cond, v_uncond = model_fn(torch.cat([z, z]), torch.cat([t, t]), both).chunk(2)
        return cfg_velocity(v_cond, v_uncond, scale)

    return velocity_fn


# ----------------------------------------------------------------------------- a DDPM baseline
#
# The classic diffusion recipe (Ho et al. 2020; DDIM sampling, Song et al. 2021), kept beside
# rectified flow so the two can be trained on the same transformer and compared. Time is an
# integer k = 0 .. K-1 (K = 1000) and the path is curved, with a variance-preserving mix:
#
#     x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps,     abar_k = prod_{i<=k} (1 - beta_i),
#
# with betas rising linearly from 1e-4 to 0.02 (the original DDPM schedule: abar_0 = 0.9999,
# abar_999 = 4e-5, so x_999 keeps only 0.64% of the data's amplitude). The network predicts
# the noise, L = E || eps_theta(x_k, k) - eps ||^2 with k uniform. To share FluxMusic's
# transformer, it is called with t = k / K: its time embedding multiplies t by 1000, so it
# sees exactly the integer k the DDPM papers feed their networks.
#
# DDIM sampling is deterministic: from x_k, estimate the clean sample with the predicted
# noise, then put the *same* noise back at the lower noise level abar_j (j < k):
#
#     x0_hat = (x_k - sqrt(1 - abar_k) eps_hat) / sqrt(abar_k)
#     x_j    = sqrt(abar_j) x0_hat + sqrt(1 - abar_j) eps_hat
#
# With the exact eps of a single data point this lands on x0 in one step. For real data
# eps_hat changes along the way; in the variables x / sqrt(abar) and sqrt((1 - abar) / abar)
# the update is an Euler step of the probability-flow ODE, which is why DDIM, like the flow
# samplers above, needs tens of steps. The last step goes to abar = 1, the clean sample.

DDPM_STEPS = 1000


def ddpm_schedule(num_steps=DDPM_STEPS, beta_start=1e-4, beta_end=0.02):
    """abar_k = prod_{i<=k} (1 - beta_i) for linearly spaced betas: a (num_steps,) float64 tensor."""
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def ddpm_noising(x0, noise, k, alphas_cumprod):
    """x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise, with k a (B,) tensor of integer steps."""
    a = _per_sample(alphas_cumprod.to(x0.device)[k], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


DDPM_ALPHAS_CUMPROD = ddpm_schedule()


def sample_ddpm_timesteps(n, num_steps=DDPM_STEPS, generator=None, device=None):
    """n integer training steps, uniform on 0 .. num_steps - 1: a (n,) long tensor."""
    return torch.randint(num_steps, (n,), generator=generator, device=device)


def ddim_step(eps, x, a, a_next):
    """Move x from noise level abar = a to a_next, keeping the predicted noise eps."""
    x0_hat = (x - (1 - a) ** 0.5 * eps) / a**0.5
    return a_next**0.5 * x0_hat + (1 - a_next) ** 0.5 * eps


@torch.no_grad()
def ddim_sample(eps_fn, noise, steps=50, alphas_cumprod=None):
    """Deterministic DDIM (eta = 0) from x = noise at k = K - 1 down to the clean sample.

    eps_fn(x, t) gets t = k / K as a (B,) float tensor; the `steps` values of k are evenly
    spaced from K - 1 down to 0, and each costs one call.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    alphas_cumprod = DDPM_ALPHAS_CUMPROD if alphas_cumprod is None else alphas_cumprod
    num_steps = len(alphas_cumprod)
    ks = torch.linspace(num_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    levels = alphas_cumprod.tolist() + [1.0]  # index -1 after the last k: abar = 1, no noise left
    x = noise
    for k, k_next in zip(ks, ks[1:] + [-1]):
        eps = eps_fn(x, _time_batch(k / num_steps, x))
        x = ddim_step(eps, x, levels[k], levels[k_next])
    return x
