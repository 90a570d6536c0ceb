"""Datasets: what the models learn from, as 16 kHz clips with captions.

Both datasets return dict(audio=(N,) float32 at 16 kHz, caption=str):

* `SynthMusicDataset`: captioned synthetic music rendered on the fly by music.py, with
  ground-truth attributes (instrument, tempo, mode, drums). Clip i is a pure function of
  (seed, split, i). The "test" split holds attribute combinations that "train" never shows,
  so a model that scores well on it has learned to combine words, not to recall clips. Each
  clip also carries CAPTIONS_PER_CLIP phrasings of the same attributes ("captions"): the
  text encoders and the flow model train on all of them, so 2,400 clips teach 9,600
  captions instead of 2,400 (docs/RESULTS.md, "Caption phrasings").
* `AudioFolderDataset`: your own audio files with captions (metadata.jsonl or .txt files).
  Every file is cut into its non-overlapping windows of the clip length, and every window is a
  training clip, so a 3-minute song gives 70 clips of 2.56 s:

      windows(file) = floor(duration / seconds)   (at least one; a shorter file is zero-padded)

  The held-out tenth is split by *file* (`split_by_file`), so no window of a held-out song is
  ever trained on: neighbouring windows of one song share its instruments, key and tempo, and a
  window-level split would measure memory, not generalisation.

References:
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

from audio import AUDIO_EXTENSIONS, SAMPLE_RATE, fit_length, load_audio
import music
from music import TEST_COMBINATIONS, TRAIN_COMBINATIONS, attributes_to_caption, render_clip, sample_attributes

CAPTIONS_PER_CLIP = 4  # phrasings of each synthetic clip's attributes that training sees
TYPO_RATE = 0.2        # the share of the extra phrasings with one misspelt attribute word
CLIP_SECONDS = 2.56  # the built-in dataset's clip: 256 mel frames, 256 flow tokens (the paper: 10.24 s)


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

    def score(self, i):
        """The notes clip i plays (music.score): what the pitch judge checks the audio against."""
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), int(i)])
        return music.score(sample_attributes(self.combinations, rng), self.seconds, rng)


SILENCE = 1e-4  # a file whose peak never exceeds -80 dBFS has nothing to learn from
EXPECTED_FILES = ("expected audio files (" + ", ".join(AUDIO_EXTENSIONS) + ") each with a caption "
                  "in a .txt file of the same name, or a metadata.jsonl with one "
                  '{"file": ..., "caption": ...} per line')
METADATA_LINE = 'expected one {"file": "song.wav", "caption": "..."} per line'
HELD_OUT_FRACTION = 10  # one file in ten (at least one) is held out for metrics
# Training refuses fewer training windows than one --smoke batch (4 clips) of different clips.
MIN_TRAIN_WINDOWS = 4
# Below this many files it trains, with a warning: a few hundred captions are the least that makes
# the text encoders learn anything, and --tiny's batches hold up to 64 captions.
FEW_FILES = 200
# Why an entry is skipped, in the order the warning counts them; each reads after a number.
SKIPPED = ("with invalid metadata", "missing", "with a non-UTF-8 caption", "unreadable", "silent",
           "without a caption")


class AudioFolderDataset(torch.utils.data.Dataset):
    """Your own captioned audio: a folder (searched recursively) of audio files with captions,
    given either in ``root/metadata.jsonl`` ({"file": path relative to root, "caption": ...}
    per line, the MusicCaps/AudioCaps shape) or in a .txt file beside each audio file
    (song.wav + song.txt). Where both exist the jsonl wins.

    ds[i] -> dict(audio=(round(seconds * 16000),) float32 tensor, caption=str) is window i: every
    file is cut into floor(duration / seconds) non-overlapping windows (`window_offsets`), each
    with its file's caption. There is no "attributes" key (a None would break DataLoader's default
    collate). Every file is checked once (readable, not silent) but audio is read lazily, only
    the window an item needs. `split_by_file` gives the training and held-out datasets.

    A user's folder always has a few mistakes in it, and one of them must not cost the whole
    folder: every entry that cannot be used (a bad metadata line, a missing, unreadable or
    silent file, a caption that is missing or not UTF-8) is skipped, and all of them are
    counted in one warning that names the first (`scan_folder`).
    """

    def __init__(self, root, seconds=CLIP_SECONDS, files=None):
        self.root, self.seconds = root, seconds
        self.num_samples = round(seconds * SAMPLE_RATE)
        self.files = scan_folder(root) if files is None else files  # [(path, caption, duration in seconds)]
        self.windows = [(path, caption, offset) for path, caption, duration in self.files
                        for offset in window_offsets(duration, seconds)]

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        path, caption, offset = self.windows[i]
        audio = load_audio(path, SAMPLE_RATE, offset=offset, duration=self.seconds)
        return dict(audio=fit_length(audio, self.num_samples), caption=caption)

    def split_by_file(self, held_out_fraction=HELD_OUT_FRACTION):
        """(training set, held-out set): every `held_out_fraction`-th file (at least one) is held
        out with all its windows, spread over the sorted folder so one album is not all held out.
        Refuses, in one line, a folder too small to train on."""
        files = self.files
        if len(files) < 2:
            raise ValueError(f"{self.root}: only 1 usable captioned file, and training holds out a tenth of the "
                             f"files (at least one) to measure on; add more captioned audio to the folder")
        step = min(held_out_fraction, len(files))
        held_out = set(range(step - 1, len(files), step))
        train = AudioFolderDataset(self.root, self.seconds, [f for i, f in enumerate(files) if i not in held_out])
        if len(train) < MIN_TRAIN_WINDOWS:
            raise ValueError(f"{self.root}: only {len(files)} usable captioned clips, which leave {len(train)} "
                             f"windows of {self.seconds:g} s to train on once a tenth is held out, and training "
                             f"needs at least {MIN_TRAIN_WINDOWS}; add more captioned audio to the folder")
        if len(files) < FEW_FILES:
            warnings.warn(f"{self.root}: only {len(files)} usable captioned clips; a few hundred are the least "
                          "that makes the text encoders learn anything, so expect the model to memorise these")
        return train, AudioFolderDataset(self.root, self.seconds, [files[i] for i in sorted(held_out)])


def window_offsets(duration, seconds):
    """Start times (s) of a file's non-overlapping windows: floor(duration / seconds) of them (at
    least one), centred in the file, so the remainder shorter than a window is lost half at each end."""
    count = max(1, math.floor(duration / seconds + 1e-9))  # 1e-9: 5.12 s holds two 2.56 s windows exactly
    start = max(0.0, (duration - count * seconds) / 2)
    return [start + k * seconds for k in range(count)]


def scan_folder(root):
    """[(path, caption, duration)] for every usable captioned audio file under root, sorted by path.
    Unusable entries are skipped and counted in one warning naming the first; a folder with
    nothing usable is a one-line ValueError."""
    if not os.path.isdir(root):
        raise ValueError(f"{root} is not a folder; {EXPECTED_FILES}")
    problems = []  # (one of SKIPPED, "where: what is wrong"), in the order found
    candidates = find_captioned_audio(root, problems)
    total = len(candidates) + len(problems)
    files = []
    for path, caption in candidates:
        if caption is None:
            problems.append(("without a caption", f"{path}: no caption (add a .txt of the same name "
                             "or a metadata.jsonl line)"))
            continue
        duration, problem = probe_audio(path)
        if problem:
            problems.append((problem, f"{path}: {problem} audio"))
        else:
            files.append((path, caption, duration))
    if problems:
        counts = collections.Counter(kind for kind, _ in problems)
        details = ", ".join(f"{counts[kind]} {kind}" for kind in SKIPPED if counts[kind])
        warnings.warn(f"{root}: skipped {len(problems)} of {total} clips ({details}); the first: {problems[0][1]}")
    if not files:
        raise ValueError(f"no usable audio with a caption in {root}; {EXPECTED_FILES}")
    return files


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
