"""Audio: the ground floor every model stands on -- files in and out, the log-mel, and back.

FluxMusic never models raw samples. A 16 kHz waveform x[n] is cut into overlapping windows
of 1024 samples every 160 samples (10 ms), each window is Fourier transformed, and the
magnitude spectrum is pooled onto 64 mel bands that are narrow at low frequencies and wide
at high ones, like the ear:

    S[t, f]   = | sum_n w[n] x[160 t + n] e^{-2 pi i f n / 1024} |        (STFT magnitude)
    M[t, m]   = sum_f  melW[m, f] S[t, f]                                  (mel filterbank)
    logM[t,m] = log(max(M[t, m], 1e-5))                                   (log, with a floor)

These are the HiFi-GAN / AudioLDM settings the paper inherits: Hann window, n_fft 1024,
hop 160, 64 Slaney-normalised triangular filters between 0 and 8000 Hz, magnitude (not
power), natural log floored at 1e-5 (so silence is log(1e-5) = -11.5). 10.24 s of audio is
163840 samples = 1024 frames. `MelSpectrogram` is the one place these features are made:
the VAE, the vocoder, CLAP and the evaluation all call it, so they all agree.

Going back. The log-mel threw away the phase and pooled 513 frequencies into 64 bands, so
mel -> waveform has no exact answer. The least-squares guess of the magnitude solves
melW S = exp(logM) with the filterbank's pseudo-inverse (`mel_to_linear`); Griffin-Lim then
finds a phase that fits it by alternating projections (`griffin_lim`), and the HiFi-GAN in
vocoder.py learns to do better. Both end in `inverse_stft`, the exact inverse of this file's
framing.

References:
- Kong, Kim & Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High
  Fidelity Speech Synthesis", 2020, arXiv 2010.05646 (the recipe: Slaney mel filters on the
  STFT magnitude, natural log floored at 1e-5).
- Liu et al., "AudioLDM 2: Learning Holistic Audio Generation with Self-supervised
  Pretraining", 2023, arXiv 2308.05734 (the 16 kHz numbers: hop 160, 64 bands up to 8 kHz,
  which FluxMusic inherits with AudioLDM 2's VAE and vocoder).
- Griffin & Lim, "Signal Estimation from Modified Short-Time Fourier Transform", IEEE Trans.
  ASSP 32(2), 1984; Perraudin, Balazs, Sondergaard, "A Fast Griffin-Lim Algorithm", WASPAA 2013
"""

import math
import os
from functools import lru_cache

import numpy as np
import soundfile
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.functional

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 100 log-mel frames a second
N_MELS = 64
F_MIN, F_MAX = 0.0, 8000.0
LOG_FLOOR = 1e-5
# log(LOG_FLOOR) = -11.5 is silence and loud tonal peaks reach about +2: every network that reads a
# log-mel maps this range to about [-1, 1] first, so its first layer starts well conditioned
MEL_CENTRE, MEL_HALF_RANGE = -4.75, 6.75


def normalise_log_mel(mel):
    """log-mel in nats -> about [-1, 1], the input scale of the VAE, the vocoder and CLAP's audio tower."""
    return (mel - MEL_CENTRE) / MEL_HALF_RANGE


# ----------------------------------------------------------------------------- files

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # what load_audio reads through soundfile


def load_audio(path, sample_rate=SAMPLE_RATE, offset=0.0, duration=None):
    """Read WAV/FLAC/OGG/MP3 with soundfile → mono float32 1-D tensor at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) read just a window, so a crop of a long file does
    not decode all of it. Raises ValueError with one line naming the file if it cannot be decoded.
    """
    if not os.path.isfile(path):
        raise ValueError(f"cannot read audio file {path}: no such file")
    try:
        with soundfile.SoundFile(os.fspath(path)) as file:
            file_rate = file.samplerate
            file.seek(round(offset * file_rate))  # round: a window at 0.1 s is sample 1600, not 1599
            frames = -1 if duration is None else math.ceil(duration * file_rate)
            audio = file.read(frames, dtype="float32", always_2d=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read audio file {path}: {reason}") from None
    audio = torch.from_numpy(audio.mean(axis=1))  # average the channels: stereo → mono
    return resample(audio, file_rate, sample_rate)


def resample(audio, from_rate, to_rate):
    """Band-limited resampling (windowed-sinc) along the last axis."""
    if from_rate == to_rate:
        return audio
    return torchaudio.functional.resample(audio, int(from_rate), int(to_rate))


def save_wav(path, audio, sample_rate=SAMPLE_RATE):
    """Write a 1-D waveform as 16-bit PCM WAV. Values are clipped to [-1, 1] first, so an
    over-loud sample saturates instead of wrapping around to a loud click."""
    audio = torch.as_tensor(audio).detach().float().cpu().reshape(-1)
    audio = torch.nan_to_num(audio).clamp(-1.0, 1.0).numpy()
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    soundfile.write(os.fspath(path), audio, sample_rate, subtype="PCM_16")
    return path


def fit_length(audio, num_samples):
    """Cut or zero-pad a 1-D waveform at the end to exactly num_samples."""
    return F.pad(audio[:num_samples], (0, max(0, num_samples - audio.shape[-1])))


# ----------------------------------------------------------------------------- mel features

def hz_to_mel(hz):
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def mel_to_hz(mel):
    """Inverse of ``hz_to_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(n_fft=N_FFT, n_mels=N_MELS, sample_rate=SAMPLE_RATE, f_min=F_MIN, f_max=F_MAX):
    """(n_mels, n_fft//2+1) triangular filters, equally spaced in mel, each with unit area
    (Slaney normalisation: height 2/(width in Hz)), so a wide high band does not get louder
    just because it covers more FFT bins."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz[None] - lower) / (centre - lower)
    falling = (upper - fft_hz[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    return torch.tensor(weights, dtype=torch.float32)


class MelSpectrogram(nn.Module):
    """(..., N) waveform → (..., N // 160, 64) log-mel frames.

    The signal is reflect-padded by (n_fft - hop) / 2 = 432 samples on each side and framed
    without centring, which gives exactly one frame per hop: frames = samples / 160.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("mel_basis", mel_filterbank(), persistent=False)

    def magnitude(self, audio):
        """(..., N) → (..., frames, 513) STFT magnitude, frames = N // hop."""
        shape = audio.shape
        audio = audio.reshape(-1, shape[-1]).float()
        pad = (N_FFT - HOP) // 2
        # reflect padding needs the signal to be longer than the pad; very short clips get zeros
        mode = "reflect" if shape[-1] > pad else "constant"
        audio = F.pad(audio.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
        spec = torch.stft(audio, N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window,
                          center=False, return_complex=True)
        mag = spec.abs().transpose(1, 2)  # (B, frames, freq)
        return mag.reshape(*shape[:-1], *mag.shape[-2:])

    def forward(self, audio):
        mel = self.magnitude(audio) @ self.mel_basis.T
        return torch.log(mel.clamp(min=LOG_FLOOR))


@lru_cache(maxsize=None)
def mel_analyser(device):
    """One MelSpectrogram per device, built once (the filterbank is not free to make)."""
    return MelSpectrogram().to(device)


# ----------------------------------------------------------------------------- back to a waveform

@lru_cache(maxsize=None)
def mel_pseudo_inverse(device):
    """(513, 64) pseudo-inverse of the mel filterbank, computed once per device."""
    return torch.linalg.pinv(mel_filterbank().to(device))


def mel_to_linear(mel):
    """(B, T, 64) log-mel -> (B, T, 513) linear magnitude: the least-squares (pseudo-inverse)
    solution of melW S = exp(mel), clipped at 0 because a magnitude cannot be negative."""
    return (mel.exp() @ mel_pseudo_inverse(mel.device).T).clamp(min=0.0)


def griffin_lim(mel, n_iter=32, momentum=0.99, seed=0):
    """(B, T, 64) log-mel -> (B, 160 T) waveform, no learning involved.

    Repeat: waveform = iSTFT(|S| e^{i phase}); phase = angle(STFT(waveform)). Each round keeps
    the known magnitude and makes the phase more consistent across overlapping frames. The
    "fast" variant extrapolates the phase update with `momentum`, converging in far fewer rounds.
    """
    batch, frames, _ = mel.shape
    magnitude = mel_to_linear(mel.float()).transpose(1, 2)  # (B, 513, T)
    window = torch.hann_window(N_FFT, device=mel.device)
    # on the signal without its first 80 samples, which has exactly T frames (see inverse_stft)
    length = frames * HOP - HOP // 2
    stft = lambda x: torch.stft(x, N_FFT, HOP, window=window, return_complex=True)
    istft = lambda s: torch.istft(s, N_FFT, HOP, window=window, length=length)
    generator = torch.Generator(device=mel.device).manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator, device=mel.device) * 2 * math.pi
    angles, previous = torch.polar(torch.ones_like(magnitude), phase), 0.0
    for _ in range(n_iter):
        rebuilt = stft(istft(magnitude * angles))
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / angles.abs().clamp(min=1e-8)
        previous = rebuilt
    return inverse_stft(magnitude * angles, frames).clamp(-1.0, 1.0)


def inverse_stft(spectrum, frames):
    """(B, 513, T) complex STFT frames -> (B, 160 T) waveform. MelSpectrogram's frame t is
    centred on sample 160 t + 80, torch.istft's (center=True) on 160 t: so invert to the signal
    without its first 80 samples, which has exactly T frames, and put 80 zeros in front."""
    window = torch.hann_window(N_FFT, device=spectrum.device)
    audio = torch.istft(spectrum, N_FFT, HOP, window=window, length=frames * HOP - HOP // 2)
    return F.pad(audio, (HOP // 2, 0))
