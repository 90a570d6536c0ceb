"""Answers to notebook 03's exercises (tests/test_notebooks.py puts them in and runs the checks)."""
import numpy as np
import torch
import torch.nn.functional as F

from audio import F_MAX, F_MIN, HOP, LOG_FLOOR, N_FFT, N_MELS, SAMPLE_RATE, hz_to_mel, mel_filterbank, mel_to_hz


def triangle_filterbank(n_fft=N_FFT, n_mels=N_MELS, sample_rate=SAMPLE_RATE, f_min=F_MIN, f_max=F_MAX):
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    weights = np.zeros((n_mels, len(fft_hz)))
    for m in range(n_mels):
        lower, centre, upper = edges[m], edges[m + 1], edges[m + 2]
        rising = (fft_hz - lower) / (centre - lower)
        falling = (upper - fft_hz) / (upper - centre)
        weights[m] = np.maximum(0.0, np.minimum(rising, falling)) * 2 / (upper - lower)
    return torch.tensor(weights, dtype=torch.float32)


def log_mel(audio):
    pad = (N_FFT - HOP) // 2
    padded = F.pad(audio[None], (pad, pad), mode="reflect")[0]
    spectrum = torch.stft(padded, N_FFT, HOP, window=torch.hann_window(N_FFT), center=False, return_complex=True)
    mel = spectrum.abs().T @ mel_filterbank().T              # (frames, 513) @ (513, 64)
    return mel.clamp(min=LOG_FLOOR).log()
