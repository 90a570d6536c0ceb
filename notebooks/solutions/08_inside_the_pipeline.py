"""Answers to notebook 08's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import torch


def predicted_clean(z_t, v, t):
    return z_t - t * v


def sample_with_negative(pipe, caption, negative, scale, steps, noise):
    cond, avoid = pipe.encode_text([caption]), pipe.encode_text([negative])
    velocity = lambda z, t, c: pipe.flow_model.velocity(z, t, c["txt"], c["txt_mask"], c["y"])
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1)
    for t, t_next in zip(times[:-1], times[1:]):
        t_batch = t.expand(len(z))
        v_avoid = velocity(z, t_batch, avoid)
        v = v_avoid + scale * (velocity(z, t_batch, cond) - v_avoid)
        z = z + (t_next - t) * v
    return z
