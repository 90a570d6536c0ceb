"""Answers to notebook 05's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import torch.nn.functional as F


def lsgan_losses(real_scores, fake_scores):
    discriminator = sum(((1 - r) ** 2).mean() + (f ** 2).mean() for r, f in zip(real_scores, fake_scores))
    generator = sum(((1 - f) ** 2).mean() for f in fake_scores)
    return discriminator, generator


def fold(audio, period):
    extra = -audio.shape[-1] % period
    padded = F.pad(audio[:, None], (0, extra), mode="reflect")
    return padded.reshape(audio.shape[0], 1, -1, period)
