"""Audio front end: files in and out, and the log-mel spectrogram every model sees.

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

Two datasets feed the models, both returning dict(audio=(N,) float32 at 16 kHz, caption=str):

* `SynthMusicDataset`: captioned synthetic music rendered on the fly by music.py, with
  ground-truth attributes (instrument, tempo, mode, drums). Clip i is a pure function of
  (seed, split, i). The "test" split holds attribute combinations that "train" never shows,
  so a model that scores well on it has learned to combine words, not to recall clips.
* `AudioFolderDataset`: your own audio files with captions (metadata.jsonl or .txt files),
  cut or padded to a fixed length.

References:
- Kong, Kim & Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High
  Fidelity Speech Synthesis", 2020, arXiv 2010.05646 (the recipe: Slaney mel filters on the
  STFT magnitude, natural log floored at 1e-5).
- Liu et al., "AudioLDM 2: Learning Holistic Audio Generation with Self-supervised
  Pretraining", 2023, arXiv 2308.05734 (the 16 kHz numbers: hop 160, 64 bands up to 8 kHz,
  which FluxMusic inherits with AudioLDM 2's VAE and vocoder).
- Agostinelli et al., "MusicLM: Generating Music From Text", 2023, arXiv 2301.11325 (it
  introduced MusicCaps, whose style the synthetic captions imitate).
"""

import json
import math
import os
import warnings

import numpy as np
import soundfile
import torch
import torch.nn as nn
import torch.nn.functional as F

# the synthesizer lives in music.py; its vocabulary is re-exported here for train and evaluate
from music import (INSTRUMENTS, MODES, TEMPOS, TEST_COMBINATIONS, TRAIN_COMBINATIONS,  # noqa: F401
                   attributes_to_caption, render_clip, sample_attributes)

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 160
N_MELS = 64
F_MIN, F_MAX = 0.0, 8000.0
LOG_FLOOR = 1e-5


# ----------------------------------------------------------------------------- files

def load_audio(path, sample_rate=SAMPLE_RATE, offset=0.0, duration=None):
    """Read WAV/FLAC/OGG/MP3 with soundfile → mono float32 1-D tensor at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) read just a window, so a crop of a long file does
    not decode all of it. Raises ValueError with one line naming the file if it cannot be decoded.
    """
    try:
        with soundfile.SoundFile(os.fspath(path)) as file:
            file_rate = file.samplerate
            file.seek(int(offset * file_rate))
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
    import torchaudio.functional  # imported here: only resampling needs torchaudio
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


# ----------------------------------------------------------------------------- datasets

SPLITS = ("train", "test")


class SynthMusicDataset(torch.utils.data.Dataset):
    """Captioned synthetic music, rendered on demand (see music.py).

    ds[i] -> dict(audio=(round(seconds * 16000),) float32 tensor, caption=str,
    attributes=dict(instrument, tempo, bpm, mode, drums, key)); "key" is the tonic's name
    ("C" ... "B"), which is not in the captions but lets a test find the tonic's third.
    Nothing is stored: clip i is drawn from a generator seeded with (seed, split, i), so every
    epoch and every DataLoader worker sees the same clip for the same i.
    """

    def __init__(self, split="train", num_clips=1000, seconds=2.56, seed=0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split, self.num_clips, self.seconds, self.seed = split, num_clips, seconds, seed
        self.combinations = TRAIN_COMBINATIONS if split == "train" else TEST_COMBINATIONS

    def __len__(self):
        return self.num_clips

    def __getitem__(self, i):
        if not 0 <= i < self.num_clips:
            raise IndexError(f"clip {i} out of range for {self.num_clips} clips")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), int(i)])
        attributes = sample_attributes(self.combinations, rng)
        caption = attributes_to_caption(attributes, rng)
        audio = render_clip(attributes, self.seconds, SAMPLE_RATE, rng)
        return dict(audio=torch.from_numpy(audio), caption=caption, attributes=attributes)


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SILENCE = 1e-4  # a file whose peak never exceeds -80 dBFS has nothing to learn from
EXPECTED_FILES = ("expected audio files (" + ", ".join(AUDIO_EXTENSIONS) + ") each with a caption "
                  "in a .txt file of the same name, or a metadata.jsonl with one "
                  '{"file": ..., "caption": ...} per line')


class AudioFolderDataset(torch.utils.data.Dataset):
    """Your own captioned audio: a folder (searched recursively) of audio files with captions,
    given either in ``root/metadata.jsonl`` ({"file": path relative to root, "caption": ...}
    per line, the MusicCaps/AudioCaps shape) or in a .txt file beside each audio file
    (song.wav + song.txt). Where both exist the jsonl wins.

    ds[i] -> dict(audio=(round(seconds * 16000),) float32 tensor, caption=str); there is no
    "attributes" key (a None would break DataLoader's default collate). Every file is checked
    once here (readable, not silent) but audio is read lazily, only the window each item needs:
    a random window for training (from a generator seeded with (seed, epoch, i); call
    ``set_epoch`` for fresh crops each epoch), the centre window for evaluation. Shorter files
    are zero-padded at the end.
    """

    def __init__(self, root, seconds=2.56, train=True, seed=0):
        self.root, self.seconds, self.train, self.seed, self.epoch = root, seconds, train, seed, 0
        self.num_samples = round(seconds * SAMPLE_RATE)
        if not os.path.isdir(root):
            raise ValueError(f"{root} is not a folder; {EXPECTED_FILES}")
        candidates = find_captioned_audio(root)
        problems = {"unreadable": 0, "silent": 0, "without a caption": 0}
        self.items = []  # (path, caption, duration in seconds)
        for path, caption in candidates:
            duration, problem = (None, "without a caption") if caption is None else probe_audio(path)
            if problem:
                problems[problem] += 1
            else:
                self.items.append((path, caption, duration))
        skipped = sum(problems.values())
        if skipped:
            details = ", ".join(f"{n} {problem}" for problem, n in problems.items() if n)
            warnings.warn(f"{root}: skipped {skipped} of {len(candidates)} audio files ({details})")
        if not self.items:
            raise ValueError(f"no usable audio with a caption in {root}; {EXPECTED_FILES}")

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, caption, duration = self.items[i]
        spare = max(0.0, duration - self.seconds)
        if self.train:
            offset = np.random.default_rng([self.seed, self.epoch, int(i)]).uniform(0.0, spare)
        else:
            offset = spare / 2
        audio = load_audio(path, SAMPLE_RATE, offset=offset, duration=self.seconds)
        return dict(audio=fit_length(audio, self.num_samples), caption=caption)


def find_captioned_audio(root):
    """Sorted [(audio path, caption or None)] for every audio file under root and every file
    named in root/metadata.jsonl."""
    captions = {}
    for folder, _, names in os.walk(root):
        for name in names:
            stem, extension = os.path.splitext(name)
            if extension.lower() in AUDIO_EXTENSIONS:
                path = os.path.normpath(os.path.join(folder, name))
                captions[path] = read_caption(os.path.join(folder, stem + ".txt"))
    metadata = os.path.join(root, "metadata.jsonl")
    if os.path.isfile(metadata):
        with open(metadata, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    path, caption = os.path.join(root, record["file"]), str(record["caption"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{metadata} line {number}: expected a JSON object like "
                                     '{"file": "song.wav", "caption": "..."}') from None
                captions[os.path.normpath(path)] = caption
    # a blank caption counts as none
    return sorted((path, (caption or "").strip() or None) for path, caption in captions.items())


def read_caption(text_file):
    if not os.path.isfile(text_file):
        return None
    with open(text_file, encoding="utf-8") as file:
        return file.read()


def probe_audio(path):
    """(duration in seconds, None) for a usable file, else (None, "unreadable" | "silent").
    Reads blocks only until the first audible one, so a normal file costs one block."""
    try:
        duration = soundfile.info(path).duration
        for block in soundfile.blocks(path, blocksize=65536, dtype="float32", always_2d=True):
            if np.abs(block).max() > SILENCE:
                return duration, None
    except Exception:  # any decoding failure means the same thing here: skip the file
        return None, "unreadable"
    return None, "silent"


def fit_length(audio, num_samples):
    """Cut or zero-pad a 1-D waveform at the end to exactly num_samples."""
    return F.pad(audio[:num_samples], (0, max(0, num_samples - audio.shape[-1])))
