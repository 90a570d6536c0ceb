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
  so a model that scores well on it has learned to combine words, not to recall clips. Each
  clip also carries CAPTIONS_PER_CLIP phrasings of the same attributes ("captions"): the
  text encoders and the flow model train on all of them, so 2,400 clips teach 9,600
  captions instead of 2,400 (one caption a clip taught the held-out phrasings 0.1-0.2 less).
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

import collections
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
CAPTIONS_PER_CLIP = 4  # phrasings of each synthetic clip's attributes that training sees
TYPO_RATE = 0.2        # the share of the extra phrasings with one misspelt attribute word
CLIP_SECONDS = 2.56  # the built-in dataset's clip: 256 mel frames, 256 flow tokens (the paper: 10.24 s)
# log(LOG_FLOOR) = -11.5 is silence and loud tonal peaks reach about +2: every network that reads a
# log-mel maps this range to about [-1, 1] first, so its first layer starts well conditioned
MEL_CENTRE, MEL_HALF_RANGE = -4.75, 6.75


def normalise_log_mel(mel):
    """log-mel in nats -> about [-1, 1], the input scale of the VAE, the vocoder and CLAP's audio tower."""
    return (mel - MEL_CENTRE) / MEL_HALF_RANGE


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
    captions=[caption, then captions_per_clip - 1 other phrasings],
    attributes=dict(instrument, tempo, bpm, mode, drums, key)); "key" is the tonic's name
    (music.KEYS: "C"), which is not in the captions but lets a test find the tonic's third.
    Nothing is stored: clip i is drawn from a generator seeded with (seed, split, i), and its
    k-th caption from one seeded with (seed, split, i, k), so every epoch and every DataLoader
    worker sees the same clip for the same i.
    """

    def __init__(self, split="train", num_clips=1000, seconds=CLIP_SECONDS, seed=0, captions_per_clip=CAPTIONS_PER_CLIP):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if captions_per_clip < 1:
            raise ValueError(f"captions_per_clip must be at least 1, got {captions_per_clip}")
        self.split, self.num_clips, self.seconds, self.seed = split, num_clips, seconds, seed
        self.captions_per_clip = captions_per_clip
        self.combinations = TRAIN_COMBINATIONS if split == "train" else TEST_COMBINATIONS

    def __len__(self):
        return self.num_clips

    def __getitem__(self, i):
        if not 0 <= i < self.num_clips:
            raise IndexError(f"clip {i} out of range for {self.num_clips} clips")
        where = [self.seed, SPLITS.index(self.split), int(i)]
        rng = np.random.default_rng(where)
        attributes = sample_attributes(self.combinations, rng)
        audio = render_clip(attributes, self.seconds, SAMPLE_RATE, rng)
        # each phrasing from its own generator, so the audio never depends on how many there are;
        # the first is typo-free: it is "caption", the one that evaluation and the samples show
        captions = [attributes_to_caption(attributes, np.random.default_rng(where + [k]), typo_rate=TYPO_RATE if k else 0.0)
                    for k in range(self.captions_per_clip)]
        return dict(audio=torch.from_numpy(audio), caption=captions[0], captions=captions, attributes=attributes)


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SILENCE = 1e-4  # a file whose peak never exceeds -80 dBFS has nothing to learn from
EXPECTED_FILES = ("expected audio files (" + ", ".join(AUDIO_EXTENSIONS) + ") each with a caption "
                  "in a .txt file of the same name, or a metadata.jsonl with one "
                  '{"file": ..., "caption": ...} per line')
METADATA_LINE = 'expected one {"file": "song.wav", "caption": "..."} per line'
# Training refuses a folder with fewer usable clips than this: a tenth (at least one clip) is
# held out, and what is left should fill one --smoke batch (4 clips) with different clips.
MIN_TRAIN_CLIPS = 5
# Below this it trains, with a warning: README's "a few hundred captioned clips are the least
# that makes the text encoders learn anything", and --tiny's batches hold up to 64 clips.
FEW_CLIPS = 200
# Why an entry is skipped, in the order the warning counts them; each reads after a number.
SKIPPED = ("with invalid metadata", "missing", "with a non-UTF-8 caption", "unreadable", "silent",
           "without a caption")


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

    A user's folder always has a few mistakes in it, and one of them must not cost the whole
    folder: every entry that cannot be used (a bad metadata line, a missing, unreadable or
    silent file, a caption that is missing or not UTF-8) is skipped, and all of them are
    counted in one warning that names the first. Fewer than ``min_clips`` usable clips (default
    MIN_TRAIN_CLIPS for training, 1 for evaluation) is refused with one line saying so.
    """

    def __init__(self, root, seconds=CLIP_SECONDS, train=True, seed=0, min_clips=None):
        self.root, self.seconds, self.train, self.seed, self.epoch = root, seconds, train, seed, 0
        self.num_samples = round(seconds * SAMPLE_RATE)
        if not os.path.isdir(root):
            raise ValueError(f"{root} is not a folder; {EXPECTED_FILES}")
        problems = []  # (one of SKIPPED, "where: what is wrong"), in the order found
        candidates = find_captioned_audio(root, problems)
        total = len(candidates) + len(problems)
        self.items = []  # (path, caption, duration in seconds)
        for path, caption in candidates:
            if caption is None:
                problems.append(("without a caption", f"{path}: no caption (add a .txt of the same name "
                                 "or a metadata.jsonl line)"))
                continue
            duration, problem = probe_audio(path)
            if problem:
                problems.append((problem, f"{path}: {problem} audio"))
            else:
                self.items.append((path, caption, duration))
        if problems:
            counts = collections.Counter(kind for kind, _ in problems)
            details = ", ".join(f"{counts[kind]} {kind}" for kind in SKIPPED if counts[kind])
            warnings.warn(f"{root}: skipped {len(problems)} of {total} clips ({details}); "
                          f"the first: {problems[0][1]}")
        if not self.items:
            raise ValueError(f"no usable audio with a caption in {root}; {EXPECTED_FILES}")
        min_clips = (MIN_TRAIN_CLIPS if train else 1) if min_clips is None else min_clips
        if len(self.items) < min_clips:
            raise ValueError(f"{root}: only {len(self.items)} usable captioned clips, and training needs at "
                             f"least {min_clips} (a tenth is held out); add more captioned audio to the folder")
        if train and len(self.items) < FEW_CLIPS:
            warnings.warn(f"{root}: only {len(self.items)} usable captioned clips; a few hundred are the least "
                          "that makes the text encoders learn anything, so expect the model to memorise these")

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


def find_captioned_audio(root, problems=None):
    """Sorted [(audio path, caption or None)] for every audio file under root and every existing
    file named in root/metadata.jsonl (whose caption wins over a .txt).

    What cannot be used is left out and, if ``problems`` is a list, appended to it as
    (one of SKIPPED, "where: what is wrong"), .txt captions first: a caption file that is not
    UTF-8, a metadata line that is not a UTF-8 JSON object with "file" and "caption" strings,
    a listed file that does not exist. One bad line never refuses the whole folder.
    """
    problems = [] if problems is None else problems
    captions, bad_captions = {}, {}  # audio path → caption; audio path → why its .txt is unusable
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()  # a fixed order, so "the first problem" is the same on every machine
        for name in sorted(names):
            stem, extension = os.path.splitext(name)
            if extension.lower() in AUDIO_EXTENSIONS:
                path = os.path.normpath(os.path.join(folder, name))
                try:
                    captions[path] = read_caption(os.path.join(folder, stem + ".txt"))
                except ValueError as error:
                    bad_captions[path] = str(error)
    listed = []
    metadata = os.path.join(root, "metadata.jsonl")
    if os.path.isfile(metadata):
        with open(metadata, "rb") as lines:  # bytes: a line that is not UTF-8 must not stop the rest
            for number, line in enumerate(lines, 1):
                try:
                    entry = parse_metadata_line(line, root)
                except ValueError as error:
                    listed.append(("with invalid metadata", f"{metadata} line {number}: {error}"))
                    continue
                if entry is None:  # a blank line
                    continue
                path, caption = entry
                if not os.path.isfile(path):
                    listed.append(("missing", f"{metadata} line {number}: no such file {path}"))
                    continue
                captions[path] = caption
                bad_captions.pop(path, None)  # the jsonl's caption replaces the unusable .txt
    problems += [("with a non-UTF-8 caption", why) for _, why in sorted(bad_captions.items())] + listed
    # a blank caption counts as none
    return sorted((path, (caption or "").strip() or None) for path, caption in captions.items()
                  if path not in bad_captions)


def parse_metadata_line(line, root):
    """One line of metadata.jsonl (bytes) → (audio path under root, caption), or None for a
    blank line; ValueError saying what is wrong with it otherwise."""
    try:
        text = line.decode("utf-8-sig")  # -sig: Windows editors start a file with a byte-order mark
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text; save the file as UTF-8") from None
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise ValueError(f"not valid JSON; {METADATA_LINE}") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object; {METADATA_LINE}")
    for key in ("file", "caption"):
        if not isinstance(record.get(key), str):
            problem = "has no" if key not in record else "needs a string for"
            raise ValueError(f'{problem} "{key}"; {METADATA_LINE}')
    return os.path.normpath(os.path.join(root, record["file"])), record["caption"]


def read_caption(text_file):
    """The text of a caption file, None if there is none; ValueError naming it if it cannot be read."""
    if not os.path.isfile(text_file):
        return None
    try:
        with open(text_file, encoding="utf-8-sig") as file:
            return file.read()
    except UnicodeDecodeError:
        raise ValueError(f"{text_file}: not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise ValueError(f"{text_file}: cannot be read ({error.strerror})") from None


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
