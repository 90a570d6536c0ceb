"""Pitch: does the audio play the notes it should? A judge at semitone resolution.

A 64-band log-mel cannot say which of two neighbouring semitones sounds: around E4 one band is
about 40 Hz wide, two semitones, so a third smeared between E and E-flat has nearly the log-mel of
a clean one. The vocoder is trained to reproduce exactly that log-mel, so a judge that reads the
mel (`classifier.py`'s mode head on a log-mel) cannot hear a vocoder that loses the pitch. This
judge reads the waveform and shares nothing with the mel: a 4096-point STFT (3.9 Hz bins, finer
than the 6 Hz between semitones at 100 Hz) between 100 Hz and 2 kHz, where the notes and their
first partials lie. Each bin's power goes to the pitch class whose equal-tempered frequency is
nearest, f_p = 440 * 2^((p - 69) / 12):

    chroma[c] = sum_t sum_{bins f: round(12 log2(f / 440) + 69) = c (mod 12)} |X(t, f)|^2

Every built-in clip is in a known key (C), so three numbers follow:

    in-scale energy   = sum_{c in the clip's scale} chroma[c] / sum_c chroma[c]
    mode by scale fit = "major" if the C-major scale holds more energy than C minor, else "minor"
                        (the two differ in three notes: E, A, B against E-flat, A-flat, B-flat)
    similarity        = cos(chroma(reconstruction), chroma(source))   (for reconstructions)

and, since the dataset knows every note it played (music.score), note accuracy against the
score: a scored note counts as heard when, over its first 0.2 s, the energy within a quarter
tone of its fundamental and second partial exceeds that a semitone above and a semitone below
(neighbours that are themselves sounding notes are not held against it).

References
- Fujishima, "Realtime Chord Recognition of Musical Sound: a System Using Common Lisp Music",
  ICMC 1999 (pitch-class profiles)
- Krumhansl & Kessler, "Tracing the dynamic changes in perceived tonal organization in a spatial
  representation of musical keys", Psychological Review 89(4), 1982 (key finding by profile fit)
"""

import math
from functools import lru_cache

import numpy as np
import torch

from audio import SAMPLE_RATE
from music import NOTE_NAMES, SCALES, midi_to_hz

PITCH_FFT = 4096          # 3.9 Hz bins at 16 kHz: finer than a semitone from 100 Hz up
PITCH_HOP = 512           # 32 ms: a note of an eighth at 160 bpm (0.19 s) spans several frames
LOWEST_HZ, HIGHEST_HZ = 100.0, 2000.0  # the notes and their first partials; drums and hiss lie mostly outside
NOTE_WINDOW = 0.2         # seconds of a note's start that note accuracy listens to
QUARTER_TONE = 2 ** (1 / 24)


def midi_of(hz):
    """Fractional MIDI note number of a frequency: 69 is A4 = 440 Hz, one unit a semitone."""
    return 12 * np.log2(np.asarray(hz, dtype=np.float64) / 440.0) + 69


def spectrogram(audio):
    """(B, N) waveform -> (B, frames, PITCH_FFT // 2 + 1) power spectrum of Hann-windowed frames."""
    audio = torch.as_tensor(audio).float()
    audio = audio.reshape(-1, audio.shape[-1])
    spec = torch.stft(audio, PITCH_FFT, PITCH_HOP, window=torch.hann_window(PITCH_FFT), return_complex=True)
    return spec.abs().square().transpose(1, 2)


@lru_cache(maxsize=None)
def pitch_class_fold():
    """(bins, 12): 1 where a bin between LOWEST_HZ and HIGHEST_HZ is nearest to pitch class c (C = 0);
    built once, every chroma reuses it."""
    hz = np.arange(PITCH_FFT // 2 + 1) * SAMPLE_RATE / PITCH_FFT
    used = (hz >= LOWEST_HZ) & (hz <= HIGHEST_HZ)
    classes = np.round(midi_of(np.maximum(hz, 1.0))).astype(int) % 12
    fold = np.zeros((len(hz), 12), dtype=np.float32)
    fold[np.flatnonzero(used), classes[used]] = 1.0
    return torch.from_numpy(fold)


def chroma(audio):
    """(B, N) waveforms -> (B, 12) pitch-class energy summed over the clip."""
    return (spectrogram(audio) @ pitch_class_fold()).sum(1)


def scale_mask(key, mode):
    """(12,) bool: the pitch classes of `key` `mode`, e.g. ("C", "major") -> C D E F G A B."""
    tonic = NOTE_NAMES.index(key)
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[(tonic + step) % 12 for step in SCALES[mode]]] = True
    return mask


def in_scale_energy(profile, key, mode):
    """Share of a (12,) chroma's energy in the pitch classes of the key's scale."""
    return (profile[scale_mask(key, mode)].sum() / profile.sum().clamp(min=1e-12)).item()


def mode_by_scale_fit(profile, key):
    """The mode whose scale on `key` holds more of the chroma's energy."""
    return max(SCALES, key=lambda mode: profile[scale_mask(key, mode)].sum().item())


def similarity(a, b):
    """Cosine of two chroma vectors (B, 12) -> (B,): 1 when the pitch classes keep their proportions."""
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def band_energy(power, midi):
    """(frames, bins) power -> (frames,) energy within a quarter tone of a note's fundamental and
    second partial."""
    hz = torch.arange(power.shape[-1]) * SAMPLE_RATE / PITCH_FFT
    total = torch.zeros(power.shape[0])
    for partial in (1, 2):
        centre = partial * midi_to_hz(midi)
        total += power[:, (hz > centre / QUARTER_TONE) & (hz < centre * QUARTER_TONE)].sum(-1)
    return total


def note_accuracy(audio, notes):
    """Share of a score's notes heard at their own pitch rather than a semitone off. `notes` is
    music.compose's list of (start s, duration s, midi, loudness) for this 1-D waveform."""
    power = spectrogram(audio)[0]
    seconds = audio.shape[-1] / SAMPLE_RATE
    heard, counted = 0, 0
    for start, duration, midi, _ in notes:
        end = min(start + min(duration, NOTE_WINDOW), seconds)
        first, last = math.floor(start * SAMPLE_RATE / PITCH_HOP), math.ceil(end * SAMPLE_RATE / PITCH_HOP)
        if last <= first or last > power.shape[0]:
            continue
        sounding = {m for s, d, m, _ in notes if s < end and s + d > start}
        frames = power[first:last]
        own = band_energy(frames, midi).sum()
        rivals = [band_energy(frames, midi + step).sum() for step in (-1, 1) if midi + step not in sounding]
        heard += bool(all(own > rival for rival in rivals))
        counted += 1
    return heard / max(1, counted)


def judge(audio, attributes, scores=None, sources=None):
    """Pitch metrics of waveforms (B, N) whose keys and modes are known (`attributes`, one dict a
    clip with "key" and "mode"): mean in-scale energy, mode accuracy by scale fit; with `scores`
    (one note list a clip) mean note accuracy; with `sources` (B, N) the mean chroma similarity."""
    profiles = chroma(audio)
    result = {"in_scale_energy": float(np.mean([in_scale_energy(p, a["key"], a["mode"])
                                                for p, a in zip(profiles, attributes)])),
              "mode_by_scale_fit": float(np.mean([mode_by_scale_fit(p, a["key"]) == a["mode"]
                                                  for p, a in zip(profiles, attributes)]))}
    if scores is not None:
        result["note_accuracy"] = float(np.mean([note_accuracy(clip, notes) for clip, notes in zip(audio, scores)]))
    if sources is not None:
        result["pitch_class_similarity"] = similarity(profiles, chroma(sources)).mean().item()
    return result
