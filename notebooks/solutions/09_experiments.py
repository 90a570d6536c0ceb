"""Answers to notebook 09's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import math

import torch


def frechet_gaussians(mu1, cov1, mu2, cov2):
    values, vectors = torch.linalg.eigh(cov1)
    root1 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * cross


def inception_score_of(probs):
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.clamp(min=1e-12).log() - marginal.clamp(min=1e-12).log())).sum(1)
    return math.exp(kl.mean().item())
