"""Answers to notebook 01's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import torch


def euler_sample(velocity_fn, noise, steps):
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1)
    for t, t_next in zip(times[:-1], times[1:]):
        z = z + (t_next - t) * velocity_fn(z, t.expand(len(z)))
    return z


def heun_sample(velocity_fn, noise, steps):
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1)
    for t, t_next in zip(times[:-1], times[1:]):
        v = velocity_fn(z, t.expand(len(z)))
        guess = z + (t_next - t) * v
        v_next = velocity_fn(guess, t_next.expand(len(z)))
        z = z + (t_next - t) * (v + v_next) / 2
    return z


def guided(v_cond, v_uncond, scale):
    return v_uncond + scale * (v_cond - v_uncond)
