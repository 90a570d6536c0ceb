"""A tiny synthesizer that writes captioned music: the built-in training data.

Every clip is real music in miniature, written and played by a few lines of numpy:

Pitch. Equal temperament puts MIDI note m at f(m) = 440 * 2^((m - 69) / 12) Hz, so one
semitone is a factor of 2^(1/12). A key is a tonic plus a scale, a pattern of semitone steps
above it: major (0 2 4 5 7 9 11) or natural minor (0 2 3 5 7 8 10). The one note that tells
them apart at once is the third: 4 semitones above the tonic in major, 3 in minor.

Key. Every clip is in C: C major or C minor. The renderer plays any of the twelve tonics (KEYS
holds the ones the dataset draws), but with the tonic drawn at random the tiny flow model never
learned the mode word: "minor" lowers the third, sixth and seventh, which are other
mel rows in every key, so until a clip's tonic is fixed the word says nothing about its spectrum.
In one key it lowers the same rows in every clip, and is learned like the drum words.

Harmony. A diatonic triad stacks every other scale note on a root degree d: (d, d+2, d+4).
Every progression starts on the tonic triad, so the first thing you hear states the key and,
through its third, the mode. A melody then walks through the scale, landing on a chord tone
whenever the chord changes.

Rhythm. At b beats per minute an eighth note lasts 30 / b seconds. Every note starts on
this eighth grid, so the onset rate, which is what the ear calls tempo, is proportional to b.
Chords change every two beats so even a 2.56 s clip at 60 bpm has a chord change.

Timbre. Most instruments are additive synthesis, a sum of sinusoidal partials each with its
own decay,

    x(t) = env(t) * sum_k a_k exp(-d_k t) sin(2 pi r_k f t),

and differ in their ratios r_k (harmonic for organ/strings/flute, slightly stretched for
piano, inharmonic metal-bar modes 1, 2.76, 5.40, 8.93 for bells), amplitudes a_k, decays d_k,
attack and vibrato. The guitar is a Karplus-Strong plucked string: a burst of noise
circulating in a delay line of P samples through a two-point average,

    y[n] = rho * (y[n - P] + y[n - P - 1]) / 2,

which rings at f = sample_rate / (P + 1/2) and loses its high harmonics first, as a string
does. Drums (kick = falling sine, snare = noise + tone, hi-hat = high-passed noise) play
patterns on the same grid and add the broadband energy that pitched notes lack.

Finally each clip is loudness normalised (RMS 0.1, peak at most 0.99) and gets captions
written from its attributes with varied templates and synonyms: MusicCaps-style descriptions,
requests and questions, or (one caption in six each) comma-separated tags in a random order, or
the four attribute phrases in any order with any of a few separators, as people type them. The
dataset gives each clip several such captions, some with a typo (data.py).
Only numpy is used, so rendering a clip is far faster than real time.

References: the music is textbook theory (equal temperament, diatonic scales and triads) and
textbook synthesis, apart from two sources:
- Karplus & Strong, "Digital Synthesis of Plucked-String and Drum Timbres", Computer Music
  Journal 7(2), 1983 (the plucked string).
- Agostinelli et al., "MusicLM: Generating Music From Text", 2023, arXiv 2301.11325 (it
  introduced MusicCaps, whose style the captions imitate).
"""

import itertools
import re
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- vocabulary

INSTRUMENTS = ("piano", "guitar", "organ", "strings", "flute", "bells")
TEMPOS = {"slow": (60.0, 80.0), "moderate": (90.0, 115.0), "fast": (130.0, 160.0)}  # bpm ranges
MODES = ("major", "minor")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEYS = ("C",)  # the tonics clips are drawn in (any of NOTE_NAMES renders; see "Key" above)

# (instrument, tempo, mode, drums) combinations that never appear in "train" and make up
# "test": 9 of 72 (12.5%). No two share an (instrument, tempo) pair, so every pair of
# attribute values is still heard in training, just never this exact combination.
TEST_COMBINATIONS = (
    ("piano", "fast", "minor", False),
    ("piano", "slow", "major", True),
    ("guitar", "slow", "major", True),
    ("organ", "moderate", "minor", True),
    ("strings", "fast", "major", True),
    ("strings", "moderate", "minor", False),
    ("flute", "slow", "minor", False),
    ("flute", "fast", "major", True),
    ("bells", "moderate", "major", False),
)
ALL_COMBINATIONS = tuple(itertools.product(INSTRUMENTS, TEMPOS, MODES, (False, True)))
TRAIN_COMBINATIONS = tuple(c for c in ALL_COMBINATIONS if c not in TEST_COMBINATIONS)


def sample_attributes(combinations, rng):
    """Pick one combination uniformly, then a bpm in its tempo range and a key."""
    instrument, tempo, mode, drums = combinations[rng.integers(len(combinations))]
    bpm = round(float(rng.uniform(*TEMPOS[tempo])), 1)
    key = KEYS[rng.integers(len(KEYS))]
    return dict(instrument=instrument, tempo=tempo, bpm=bpm, mode=mode, drums=bool(drums), key=key)


# ----------------------------------------------------------------------------- captions

INSTRUMENT_WORDS = {
    "piano": ("piano", "grand piano", "soft piano"),
    "guitar": ("guitar", "acoustic guitar", "plucked guitar"),
    "organ": ("organ", "electric organ", "drawbar organ"),
    "strings": ("strings", "lush strings", "bowed strings"),
    "flute": ("flute", "airy flute", "wooden flute"),
    "bells": ("bells", "chiming bells", "glassy bells"),
}
TEMPO_WORDS = {
    "slow": ("slow", "relaxed", "leisurely"),
    "moderate": ("moderate", "mid-tempo", "medium-paced"),
    "fast": ("fast", "upbeat", "lively"),
}
TEMPO_PHRASES = {
    "slow": ("at a slow tempo", "at a leisurely pace", "at a relaxed pace"),
    "moderate": ("at a moderate tempo", "at a walking pace", "at a medium tempo"),
    "fast": ("at a fast tempo", "at a lively pace", "at a brisk pace"),
}
MODE_WORDS = {
    "major": ("happy", "bright", "cheerful", "joyful"),
    "minor": ("sad", "dark", "melancholic", "gloomy"),
}
MODE_PHRASES = {"major": ("in a major key",), "minor": ("in a minor key",)}
DRUM_PHRASES = {
    True: ("with drums", "with a steady beat", "with percussion", "backed by a drum kit"),
    False: ("without drums", "with no percussion", "without any percussion", "with no drums"),
}
# what people type into a search box: tags, in any order ("organ, fast, major key, drums")
MODE_TAGS = {"major": ("major key", "major", "happy"), "minor": ("minor key", "minor", "sad")}
DRUM_TAGS = {True: ("drums", "percussion"), False: ("no drums", "no percussion")}
# every template names the instrument, the tempo, the mode and the drums (never the bpm:
# a number the model would have to guess from nothing but the sound). Descriptions, requests and
# questions put the four in different places; "{tags}" and "{free}" are built in code (below).
TEMPLATES = (
    "a {tempo}, {mood} {instrument} piece {key}, {drums}.",
    "{mood} {instrument} music {tempo_phrase}, {drums}.",
    "this {tempo} {instrument} tune sounds {mood}, {drums}.",
    "a {mood} melody on {instrument} {key} {tempo_phrase}, {drums}.",
    "{tempo}, {mood} {instrument} {key}, {drums}.",
    "instrumental {instrument} track, {tempo} and {mood}, {drums}.",
    "a {mood} {instrument} song {key}, played {tempo_phrase} {drums}.",
    "{drums}, a {tempo} {instrument} tune {key}.",
    "could you compose a {mood} {instrument} piece {tempo_phrase}, {drums}?",
    "generate {tempo} {instrument} music {key}, {drums}.",
    "give me a {mood}, {tempo} tune for {instrument} {drums}.",
    "make a {tempo} track with {instrument}, {mood}, {drums}.",
    "i'd like {mood} {instrument} music {tempo_phrase} {drums}.",
    "something {mood} and {tempo} on the {instrument}, {drums}!",
    "{instrument} {drums}, {tempo_phrase}, {key}.",
    "is there a {tempo} {instrument} tune {key} {drums}?",
    "{tags}", "{tags}", "{tags}", "{tags}",
    "{free}", "{free}", "{free}", "{free}",
)
# "{free}": the four attribute phrases in a random order, joined by any of these, with an optional
# request in front and an ending, as a user types them ("compose: no drums; organ and fast" is not
# one: ":" belongs to the held-out phrasings). A plain space never joins them, so a held-out
# all-caps line of bare words stays unseen.
FREE_SEPARATORS = (", ", ", ", " and ", "; ", " / ")
FREE_OPENINGS = ("", "", "", "generate ", "compose ", "make ", "play ", "give me ", "i'd like ")
FREE_ENDINGS = ("", "", ".", "!", " please", " thanks")
# Phrasings that never appear in training, for measuring how a model copes with what users
# type (the "held-out phrasings" row of `evaluate.py`): a question, a request, a terse all-caps line, a
# typo in a filler word, and the attribute words in an order no template uses.
HELD_OUT_TEMPLATES = (
    "can you play a {tempo} {mood} song on {instrument} {drums}?",
    "please make me some {instrument} music, {drums}, {key} and {tempo}",
    "{TEMPO} {MOOD} {INSTRUMENT} {DRUMS}",
    "i want a {mood} {tempo} peice for {instrument} {drums}",
    "{drums} and {key}: {instrument}, {tempo_phrase}",
)


def misspell(word, rng):
    """One typo, as fingers make them: two neighbouring letters swapped, one dropped or one doubled
    ("organ" -> "orgna", "orgn", "orrgan"). Words under four letters are left alone."""
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))  # never the first letter: people rarely get that wrong
    kind = rng.integers(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i + 1:] if kind == 1 else word[:i] + word[i] + word[i:]


def attributes_to_caption(attributes, rng, templates=TEMPLATES, typo_rate=0.0):
    """A caption that mentions every attribute: mostly MusicCaps-like sentences, e.g.
    "A slow, melancholic piano piece in a minor key, without drums.", sometimes tags in a
    random order, e.g. "no drums, piano, minor key, slow", or the four phrases in any order
    ("compose bright / fast; bells and with no drums"). With probability `typo_rate` one
    attribute word is misspelt (the dataset's extra caption variants; evaluation uses none)."""
    def pick(words):
        return words[rng.integers(len(words))]
    mode, tempo, drums = attributes["mode"], attributes["tempo"], bool(attributes["drums"])
    words = dict(instrument=pick(INSTRUMENT_WORDS[attributes["instrument"]]), tempo=pick(TEMPO_WORDS[tempo]),
                 tempo_phrase=pick(TEMPO_PHRASES[tempo]), mood=pick(MODE_WORDS[mode]), key=pick(MODE_PHRASES[mode]),
                 drums=pick(DRUM_PHRASES[drums]))
    template = pick(templates)
    if template in ("{tags}", "{free}"):
        words.update(mode_tag=pick(MODE_TAGS[mode]), drum_tag=pick(DRUM_TAGS[drums]))
    if typo_rate and rng.random() < typo_rate:  # the typo goes into one of the words the caption shows
        shown = [name for name in words if "{" + name + "}" in template or "{" + name.upper() + "}" in template]
        name = pick(shown or ["instrument", "tempo", "mode_tag", "drum_tag"])
        parts = words[name].split(" ")
        j = int(rng.integers(len(parts)))
        words[name] = " ".join(parts[:j] + [misspell(parts[j], rng)] + parts[j + 1:])
    if template == "{tags}":
        tags = [words["instrument"], words["tempo"], words["mode_tag"], words["drum_tag"]]
        return ", ".join(tags[i] for i in rng.permutation(len(tags)))
    if template == "{free}":
        phrases = [words["instrument"], pick((words["tempo"], words["tempo_phrase"])),
                   pick((words["mood"], words["key"], words["mode_tag"])), pick((words["drums"], words["drum_tag"]))]
        order = rng.permutation(len(phrases))
        text = phrases[order[0]] + "".join(pick(FREE_SEPARATORS) + phrases[k] for k in order[1:])
        return pick(FREE_OPENINGS) + text + pick(FREE_ENDINGS)
    text = template.format(**words, **{name.upper(): word.upper() for name, word in words.items()})
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)  # "a upbeat" -> "an upbeat"
    return text[0].upper() + text[1:]


# ----------------------------------------------------------------------------- the score

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# chord roots as scale degrees (0 = tonic); all start on the tonic triad
PROGRESSIONS = {
    "major": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 0, 4)),  # I-IV-V-I, I-vi-IV-V, ...
    "minor": ((0, 3, 4, 0), (0, 5, 2, 6), (0, 6, 5, 4), (0, 3, 6, 4)),  # i-iv-v-i, i-VI-III-VII, ...
}
CHORD_EIGHTHS = 4    # a chord lasts two beats
MELODY_RANGE = 9     # melody degrees 0..9: tonic up to the third an octave higher
# how each instrument accompanies: a held chord, a chord struck on every beat, or broken
ACCOMPANIMENT = {"piano": "beats", "guitar": "arpeggio", "organ": "hold",
                 "strings": "hold", "flute": "hold", "bells": "hold"}


def midi_to_hz(midi):
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def tonic_midi(key):
    """The tonic's MIDI note for a key name: between G3 (55) and F#4 (66)."""
    return 55 + (NOTE_NAMES.index(key) - 7) % 12


def degree_to_midi(degree, key, mode):
    """Scale degree (0 = tonic, 7 = the octave above, may be negative) -> MIDI note."""
    octave, step = divmod(degree, 7)
    return tonic_midi(key) + 12 * octave + SCALES[mode][step]


def compose(attributes, seconds, rng):
    """The score: a list of notes (start s, duration s, midi, loudness)."""
    eighth = 30.0 / attributes["bpm"]
    n_eighths = int(np.ceil(seconds / eighth))
    key, mode, style = attributes["key"], attributes["mode"], ACCOMPANIMENT[attributes["instrument"]]
    progression = PROGRESSIONS[mode][rng.integers(len(PROGRESSIONS[mode]))]
    notes = []

    def add(step, length, degree, loudness):
        if step < n_eighths:  # broken chords may reach past the end of the clip
            notes.append((step * eighth, length * eighth, degree_to_midi(degree, key, mode), loudness))

    for bar, step in enumerate(range(0, n_eighths, CHORD_EIGHTHS)):
        triad = [progression[bar % len(progression)] - 7 + k for k in (0, 2, 4)]  # an octave down
        if style == "hold":
            for degree in triad:
                add(step, CHORD_EIGHTHS, degree, 0.4)
        elif style == "beats":
            for beat in range(0, CHORD_EIGHTHS, 2):
                for degree in triad:
                    add(step + beat, 2, degree, 0.3)
        else:  # arpeggio: root, third, fifth, third, each ringing to the end of the chord
            for k, degree in enumerate(triad + triad[1:2]):
                add(step + k, CHORD_EIGHTHS - k, degree, 0.45)

    degree, step = int(rng.choice([0, 2, 4, 7])), 0
    while step < n_eighths:
        length = 1 if rng.random() < 0.65 else 2
        if step % CHORD_EIGHTHS == 0:  # chord change: land on the nearest chord tone
            root = progression[(step // CHORD_EIGHTHS) % len(progression)]
            tones = [d for d in range(MELODY_RANGE + 1) if (d - root) % 7 in (0, 2, 4)]
            degree = min(tones, key=lambda d: abs(d - degree))
        else:
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, MELODY_RANGE))
        if step == 0 or rng.random() > 0.1:  # an occasional rest
            add(step, length, degree, 1.0)
        step += length
    return notes


# ----------------------------------------------------------------------------- instruments

@dataclass(frozen=True)
class Timbre:
    ratios: tuple          # partial frequencies as multiples of the note's frequency
    amps: tuple            # partial amplitudes
    decay: float = 0.0     # 1/s, decay rate of the first partial
    decay_per_partial: float = 0.0  # 1/s added per partial: high partials fade first
    attack: float = 0.01   # s, linear rise
    release: float = 0.05  # s, exponential fade after the note ends
    vibrato: float = 0.0   # relative depth of a 5.5 Hz pitch wobble


def _stretched(n, b):  # a stiff string's overtones are slightly sharp: k sqrt(1 + b k^2)
    return tuple(k * np.sqrt(1 + b * k * k) for k in range(1, n + 1))


TIMBRES = {
    "piano": Timbre(_stretched(8, 4e-4), (1, .6, .4, .25, .2, .12, .06, .05),
                    decay=1.2, decay_per_partial=0.7, attack=0.003, release=0.08),
    "organ": Timbre((1, 2, 3, 4, 6, 8), (1, .8, .5, .4, .25, .2), attack=0.008, release=0.03),
    "strings": Timbre(tuple(range(1, 11)), tuple(1 / k for k in range(1, 11)),
                      attack=0.12, release=0.15, vibrato=0.005),
    "flute": Timbre((1, 2, 3, 4), (1, .3, .12, .05), attack=0.06, release=0.06, vibrato=0.004),
    "bells": Timbre((1, 2.76, 5.40, 8.93), (1, .6, .35, .2),
                    decay=0.8, decay_per_partial=1.5, attack=0.001, release=0.4),
}
PARTIAL_LIMIT_HZ = 6000.0  # no partial above this: keeps pitched notes out of the hi-hat's band


def envelope(t, duration, attack, release):
    return np.minimum(1.0, t / attack) * np.exp(-np.maximum(0.0, t - duration) / release)


def additive_note(timbre, freq, duration, sample_rate):
    n = int((duration + 4 * timbre.release) * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    ratios = np.array(timbre.ratios, dtype=np.float32)
    keep = ratios * freq < min(PARTIAL_LIMIT_HZ, 0.45 * sample_rate)
    freqs, amps = ratios[keep] * freq, np.array(timbre.amps, dtype=np.float32)[keep]
    rate = 2 * np.pi * 5.5
    warped = t + timbre.vibrato * np.sin(rate * t) / rate  # d(warped)/dt = 1 + vibrato cos(rate t)
    partials = np.sin(2 * np.pi * np.outer(freqs, warped))
    if timbre.decay or timbre.decay_per_partial:
        decays = timbre.decay + timbre.decay_per_partial * np.arange(len(freqs), dtype=np.float32)
        partials *= np.exp(-np.outer(decays, t))
    return (amps @ partials) * envelope(t, duration, timbre.attack, timbre.release)


def plucked_note(freq, duration, sample_rate, rng, t60=1.5, release=0.05):
    """Karplus-Strong. The delay is an integer P, which would round the pitch, so the string
    is tuned a little flat, f_ks = sr / (P + 1/2) <= freq, and read back freq / f_ks times faster."""
    n = int((duration + 4 * release) * sample_rate)
    period = int(np.ceil(sample_rate / freq - 0.5))
    ks_freq = sample_rate / (period + 0.5)
    m = int(np.ceil(n * freq / ks_freq)) + 2
    rho = 10.0 ** (-3.0 / (t60 * ks_freq))  # -60 dB after t60 s, on top of the averaging loss
    y = np.zeros(m + 1)  # y[0] is the silence before the pluck
    burst = np.convolve(rng.uniform(-1, 1, period), np.ones(8) / 8, mode="same")  # a soft pick
    y[1:period + 1] = burst - burst.mean()
    # one period at a time: each block only reads the block before it, so numpy does the loop
    for start in range(period + 1, m + 1, period):
        stop = min(start + period, m + 1)
        previous = slice(start - period, stop - period)
        y[start:stop] = rho * 0.5 * (y[previous] + y[start - period - 1:stop - period - 1])
    y = np.interp(np.arange(n) * (freq / ks_freq), np.arange(m), y[1:])
    t = np.arange(n) / sample_rate
    return 2.0 * y * envelope(t, duration, 0.001, release)


def render_note(instrument, freq, duration, sample_rate, rng):
    if instrument == "guitar":
        return plucked_note(freq, duration, sample_rate, rng)
    return additive_note(TIMBRES[instrument], freq, duration, sample_rate)


# ----------------------------------------------------------------------------- drums

KICK_PATTERNS = ((1, 0, 0, 0, 1, 0, 0, 0), (1, 0, 0, 1, 0, 0, 1, 0), (1, 0, 0, 0, 1, 0, 1, 0))
SNARE_PATTERN = (0, 0, 1, 0, 0, 0, 1, 0)  # the backbeat, on beats 2 and 4
HAT_PATTERNS = ((1, 1, 1, 1, 1, 1, 1, 1), (0, 1, 0, 1, 0, 1, 0, 1))
DRUM_LEVEL = 1.5  # drum kit loudness relative to the music's RMS


def drum_kit(sample_rate, rng):
    """One kick, snare and hi-hat sample per clip (a drum machine repeats its samples)."""
    def time(seconds):
        return np.arange(int(seconds * sample_rate)) / sample_rate
    t = time(0.35)
    sweep = 45 + 90 * np.exp(-t / 0.035)  # pitch falls from 135 Hz to 45 Hz: the "thump"
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate) * np.exp(-t / 0.18)
    t = time(0.25)
    snare = (0.6 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.07)
             + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05))
    t = time(0.1)
    # a second difference is a high-pass filter: the hi-hat's hiss sits above ~4 kHz
    hat = 0.25 * np.diff(rng.standard_normal(len(t) + 2), n=2) * np.exp(-t / 0.025)
    return kick, snare, hat


def drum_track(bpm, n, sample_rate, rng):
    kick, snare, hat = drum_kit(sample_rate, rng)
    patterns = ((kick, KICK_PATTERNS[rng.integers(len(KICK_PATTERNS))]), (snare, SNARE_PATTERN),
                (hat, HAT_PATTERNS[rng.integers(len(HAT_PATTERNS))]))
    track = np.zeros(n)
    eighth = 30.0 / bpm * sample_rate
    for step in range(int(np.ceil(n / eighth))):
        start = int(round(step * eighth))
        for sound, pattern in patterns:
            if pattern[step % 8]:
                stop = min(n, start + len(sound))
                track[start:stop] += sound[:stop - start]
    return track


# ----------------------------------------------------------------------------- the clip

def normalise_loudness(audio, rms=0.1, peak=0.99):
    audio = audio * (rms / max(np.sqrt(np.mean(audio ** 2)), 1e-8))
    return audio * min(1.0, peak / max(np.abs(audio).max(), 1e-8))


def score(attributes, seconds, rng):
    """The notes (start s, duration s, midi, loudness) that render_clip plays for a generator in the
    same state: spawned children depend on the seed, not on draws, so the score can be re-read."""
    return compose(attributes, seconds, rng.spawn(2)[0])


def render_clip(attributes, seconds, sample_rate, rng):
    """attributes (see sample_attributes) -> float32 waveform of round(seconds * sample_rate)."""
    music_rng, drum_rng = rng.spawn(2)  # separate streams: drums on/off leaves the music unchanged
    n = round(seconds * sample_rate)
    mix = np.zeros(n)
    sounds = {}  # a clip repeats its pitches and lengths: synthesise each (pitch, length) once
    for start, duration, midi, loudness in compose(attributes, seconds, music_rng):
        if (midi, duration) not in sounds:
            sounds[midi, duration] = render_note(attributes["instrument"], midi_to_hz(midi), duration,
                                                 sample_rate, music_rng)
        note = sounds[midi, duration]
        i = int(round(start * sample_rate))
        mix[i:i + len(note)] += loudness * note[:n - i]
    mix /= max(np.sqrt(np.mean(mix ** 2)), 1e-8)
    if attributes["drums"]:
        mix += DRUM_LEVEL * drum_track(attributes["bpm"], n, sample_rate, drum_rng)
    return normalise_loudness(mix).astype(np.float32)
