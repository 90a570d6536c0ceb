"""Answers to notebook 02's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import torch


def patchify_2x2(latent):
    b, c, t, f = latent.shape
    patches = latent.reshape(b, c, t // 2, 2, f // 2, 2)        # (b, c, T', dt, F', df)
    patches = patches.permute(0, 2, 4, 1, 3, 5)                 # (b, T', F', c, dt, df)
    return patches.reshape(b, (t // 2) * (f // 2), c * 4)


def rotate_pairs(x, positions, theta):
    d = x.shape[-1]
    omega = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = positions.double()[:, None] * omega                 # (N, D/2)
    cos, sin = angle.cos().float(), angle.sin().float()
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(x.shape)
