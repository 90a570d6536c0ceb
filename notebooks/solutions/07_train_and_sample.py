"""Answers to notebook 07's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import torch


def flow_training_loss(velocity_fn, x0, noise, t, txt, empty_txt, drop):
    txt = torch.where(drop[:, None, None], empty_txt, txt)
    t_ = t[:, None, None, None]
    z_t = (1 - t_) * x0 + t_ * noise
    return ((velocity_fn(z_t, t, txt) - (noise - x0)) ** 2).mean()


def ema_update(ema_model, model, decay):
    with torch.no_grad():
        for ema_p, p in zip(ema_model.parameters(), model.parameters()):
            ema_p.copy_(decay * ema_p + (1 - decay) * p)
