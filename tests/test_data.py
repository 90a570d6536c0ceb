"""data.py: the synthetic music (a pure function of seed, split and index; its captions, tempo, mode,
drums and tuning) and a user's folder (every window of every file, held out by file, bad entries
skipped with one warning, too small a folder refused in one line)."""
import itertools
import json
import os
import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch

import data
import music
import stages
import train
from audio import SAMPLE_RATE, MelSpectrogram, load_audio
from conftest import mel_centres, peak_frequency, tone

SR = SAMPLE_RATE


# ----------------------------------------------------------------------------- synthetic music

def test_synth_clips_are_a_pure_function_of_seed_split_and_index():
    a, b = data.SynthMusicDataset(num_clips=3, seed=7), data.SynthMusicDataset(num_clips=3, seed=7)
    for i in (2, 0):  # order of access must not matter
        x, y = a[i], b[i]
        assert torch.equal(x["audio"], y["audio"]) and x["caption"] == y["caption"]
        assert x["attributes"] == y["attributes"]
    others = [a[1], data.SynthMusicDataset(num_clips=3, seed=8)[0],
              data.SynthMusicDataset("test", num_clips=3, seed=7)[0]]
    assert all(not torch.equal(a[0]["audio"], other["audio"]) for other in others)


@pytest.mark.parametrize("seconds", [2.56, 1.0])
def test_synth_clip_shape_loudness_and_vocabulary(seconds):
    ds = data.SynthMusicDataset(num_clips=4, seconds=seconds)
    assert len(ds) == 4
    with pytest.raises(IndexError):
        ds[4]
    for item in ds:
        audio, attributes = item["audio"], item["attributes"]
        assert audio.dtype == torch.float32 and audio.shape == (round(seconds * SR),)
        assert audio.abs().max() <= 0.99 + 1e-6 and 0.05 < audio.pow(2).mean().sqrt() <= 0.1 + 1e-4
        assert attributes["instrument"] in music.INSTRUMENTS and attributes["mode"] in music.MODES
        low, high = music.TEMPOS[attributes["tempo"]]
        assert low <= attributes["bpm"] <= high and isinstance(attributes["drums"], bool)


def test_synth_batches_collate():
    loader = torch.utils.data.DataLoader(data.SynthMusicDataset(num_clips=2, seconds=0.5), batch_size=2)
    batch = next(iter(loader))
    assert batch["audio"].shape == (2, 8000) and len(batch["caption"]) == 2


def words_of(table, value, caption):
    return [w for w in table[value] if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", caption)]


def check_caption(caption, attributes):
    """Any typo-free caption, of any form: no number, and every attribute named once, rightly."""
    lower = caption.lower()
    assert not re.search(r"\d", caption), "captions must not leak numbers such as the bpm"
    assert len(caption) <= 110, caption
    assert [i for i in music.INSTRUMENTS if re.search(rf"\b{i}\b", lower)] == [attributes["instrument"]], caption
    for tables, value in (((music.TEMPO_WORDS, music.TEMPO_PHRASES), attributes["tempo"]),
                          ((music.MODE_WORDS, music.MODE_PHRASES, music.MODE_TAGS), attributes["mode"])):
        mentioned = [v for v in tables[0] if any(words_of(table, v, lower) for table in tables)]
        assert mentioned == [value], (caption, attributes)
    # "no drums" holds the tag "drums": the negative phrases decide first
    without = words_of(music.DRUM_PHRASES, False, lower) + words_of(music.DRUM_TAGS, False, lower)
    with_ = words_of(music.DRUM_PHRASES, True, lower) + words_of(music.DRUM_TAGS, True, lower)
    assert bool(without) != attributes["drums"] and (without or with_), (caption, attributes)
    assert not re.search(r"\ba [aeiou]", lower), caption  # "an upbeat", not "a upbeat"


def test_captions_agree_with_attributes_and_vary():
    rng = np.random.default_rng(0)
    for combination in music.ALL_COMBINATIONS:
        captions = set()
        for _ in range(30):
            attributes = music.sample_attributes([combination], rng)
            caption = music.attributes_to_caption(attributes, rng)
            check_caption(caption, attributes)
            captions.add(caption)
        assert len(captions) >= 25
    for template in music.TEMPLATES:  # every template, not only the likely ones
        attributes = music.sample_attributes(music.ALL_COMBINATIONS, rng)
        check_caption(music.attributes_to_caption(attributes, rng, (template,)), attributes)


def test_sentence_captions_start_upper_case():
    rng = np.random.default_rng(3)
    for template in music.TEMPLATES:
        if template in ("{tags}", "{free}"):  # typed, not written: lower case is fine
            continue
        attributes = music.sample_attributes(music.ALL_COMBINATIONS, rng)
        assert music.attributes_to_caption(attributes, rng, (template,))[0].isupper()


def test_tag_captions_are_four_tags_in_any_order():
    rng = np.random.default_rng(1)
    attributes = music.sample_attributes([("organ", "fast", "major", True)], rng)
    tables = (music.INSTRUMENT_WORDS["organ"], music.TEMPO_WORDS["fast"], music.MODE_TAGS["major"],
              music.DRUM_TAGS[True])
    firsts = set()
    for _ in range(200):
        tags = music.attributes_to_caption(attributes, rng, ("{tags}",)).split(", ")
        assert len(tags) == 4 and sorted(sum(tag in table for tag in tags) for table in tables) == [1, 1, 1, 1], tags
        firsts.add(tags[0])
    assert len(firsts) >= 6  # any tag may come first
    drawn = [music.attributes_to_caption(attributes, rng) for _ in range(1200)]
    tag_lists = [c for c in drawn if c.count(", ") == 3 and c[0].islower() and not c.endswith((".", "!", "?"))]
    assert len(tag_lists) / len(drawn) == pytest.approx(1 / 6, abs=0.05)  # "{tags}" is 4 of 24 templates


def test_free_order_captions_vary_order_and_separators():
    rng = np.random.default_rng(4)
    attributes = music.sample_attributes([("bells", "slow", "minor", False)], rng)
    captions = [music.attributes_to_caption(attributes, rng, ("{free}",)) for _ in range(400)]
    instrument_first = [c.startswith(tuple(music.INSTRUMENT_WORDS["bells"])) for c in captions]
    assert 0.1 < np.mean(instrument_first) < 0.5  # a quarter, less the openings in front
    for separator in music.FREE_SEPARATORS:
        assert any(separator in c for c in captions)
    assert len(set(captions)) > 300


def test_misspell_makes_one_typo_and_keeps_short_words():
    rng = np.random.default_rng(5)
    assert music.misspell("sad", rng) == "sad"
    seen = set()
    for _ in range(300):
        seen.add(music.misspell("organ", rng))
    # every swap, drop and doubling after the first letter, and nothing else
    swaps = {"ogran", "oragn", "orgna"}
    drops = {"ogan", "oran", "orgn"}
    doubles = {"orrgan", "orggan", "orgaan"}
    assert seen == swaps | drops | doubles, seen


def test_typo_rate_puts_a_typo_into_a_shown_attribute_word():
    rng = np.random.default_rng(6)
    vocabulary = {"an"} | set(re.findall(r"[a-z']+", " ".join(music.TEMPLATES + music.FREE_OPENINGS + music.FREE_ENDINGS)))
    for table in (music.INSTRUMENT_WORDS, music.TEMPO_WORDS, music.TEMPO_PHRASES, music.MODE_WORDS,
                  music.MODE_PHRASES, music.DRUM_PHRASES, music.MODE_TAGS, music.DRUM_TAGS):
        vocabulary |= {w for phrases in table.values() for p in phrases for w in re.findall(r"[a-z']+", p)}
    def unknown(caption):
        return [w for w in re.findall(r"[a-z']+", caption.lower()) if w not in vocabulary]
    clean = [music.attributes_to_caption(music.sample_attributes(music.ALL_COMBINATIONS, rng), rng) for _ in range(300)]
    typos = [music.attributes_to_caption(music.sample_attributes(music.ALL_COMBINATIONS, rng), rng, typo_rate=1.0)
             for _ in range(300)]
    assert not any(unknown(c) for c in clean)
    assert all(len(unknown(c)) <= 1 for c in typos) and np.mean([bool(unknown(c)) for c in typos]) > 0.7


# what the held-out phrasings say that no training caption may: their fillers, their typo, their ":"
HELD_OUT_FILLERS = ("can you play", "song on", "please make me some", "i want a", "peice", ":")


def test_held_out_phrasings_name_every_attribute_and_never_appear_in_training():
    rng = np.random.default_rng(2)
    held_out = set()
    for combination in music.ALL_COMBINATIONS:
        attributes = music.sample_attributes([combination], rng)
        for template in music.HELD_OUT_TEMPLATES:
            assert template not in music.TEMPLATES
            caption = music.attributes_to_caption(attributes, rng, (template,))
            check_caption(caption, attributes)
            held_out.add(" ".join(caption.lower().split()))
    # what the dataset gives training (every phrasing, typos included), as the tokenizer sees it
    ds = data.SynthMusicDataset(num_clips=3000, seconds=0.01)
    training = {" ".join(c.lower().split()) for i in range(len(ds)) for c in ds[i]["captions"]}
    assert len(training) > 8000
    assert not held_out & training
    for filler in HELD_OUT_FILLERS:
        assert not [c for c in training if filler in c], filler


def test_dataset_gives_each_clip_its_phrasings():
    ds = data.SynthMusicDataset(num_clips=6, seconds=0.2)
    for i in range(len(ds)):
        item = ds[i]
        assert len(item["captions"]) == data.CAPTIONS_PER_CLIP and item["captions"][0] == item["caption"]
        check_caption(item["caption"], item["attributes"])
        assert len(set(item["captions"])) > 1
    one = data.SynthMusicDataset(num_clips=6, seconds=0.2, captions_per_clip=1)
    assert one[3]["captions"] == [ds[3]["caption"]] and torch.equal(one[3]["audio"], ds[3]["audio"])
    with pytest.raises(ValueError, match="captions_per_clip"):
        data.SynthMusicDataset(captions_per_clip=0)


def test_test_split_is_held_out_yet_every_pair_of_values_is_trained():
    test, train = set(music.TEST_COMBINATIONS), set(music.TRAIN_COMBINATIONS)
    assert not test & train and test | train == set(itertools.product(
        music.INSTRUMENTS, music.TEMPOS, music.MODES, (False, True)))
    assert 0.1 <= len(test) / (len(test) + len(train)) <= 0.15
    for i, j in itertools.combinations(range(4), 2):
        assert {(c[i], c[j]) for c in train} == {(c[i], c[j]) for c in test | train}
    for split, allowed in (("train", train), ("test", test)):
        for item in data.SynthMusicDataset(split, num_clips=20, seconds=0.1):
            a = item["attributes"]
            assert (a["instrument"], a["tempo"], a["mode"], a["drums"]) in allowed


def render(seed, seconds=2.56, **attributes):
    defaults = dict(instrument="piano", tempo="moderate", bpm=100.0, mode="major", drums=False, key="C")
    return music.render_clip({**defaults, **attributes}, seconds, SR, np.random.default_rng(seed))


def onsets_per_second(audio):
    """Spectral flux: the summed rise of the log-mel from one frame to the next; an onset is a
    local maximum of the flux one standard deviation above its mean."""
    mel = MelSpectrogram()(torch.as_tensor(audio))
    flux = (mel[1:] - mel[:-1]).clamp(min=0).sum(-1)
    threshold = flux.mean() + flux.std()
    peaks = (flux[1:-1] > threshold) & (flux[1:-1] >= flux[:-2]) & (flux[1:-1] > flux[2:])
    return peaks.sum().item() / (len(audio) / SR)


def test_fast_clips_have_more_onsets_than_slow_ones():
    rates = {}
    for tempo in ("slow", "fast"):
        rates[tempo] = np.mean([onsets_per_second(render(seed, instrument=instrument, tempo=tempo,
                                                         bpm=float(np.mean(music.TEMPOS[tempo]))))
                                for seed, instrument in enumerate(music.INSTRUMENTS * 2)])
    assert rates["fast"] > 1.3 * rates["slow"], rates


def third_energies(audio, key):
    """Spectral energy within 30 cents of the minor and of the major third above the tonic,
    in the three octaves where chords and melody live."""
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    tonic = music.midi_to_hz(music.tonic_midi(key))
    def energy(semitones):
        centres = tonic * 2.0 ** (np.array([-1, 0, 1]) + semitones / 12)
        near = np.abs(np.log2(np.maximum(freqs[:, None], 1.0) / centres) * 1200) < 30
        return spectrum[near.any(1)].sum()
    return energy(3), energy(4)


def test_the_tonic_third_reveals_the_mode():
    correct = []
    for seed in range(24):
        mode, key = music.MODES[seed % 2], music.NOTE_NAMES[(5 * seed) % 12]
        clip = render(seed, instrument=music.INSTRUMENTS[seed % 6], mode=mode, key=key, drums=seed % 3 == 0)
        minor_third, major_third = third_energies(clip, key)
        correct.append((minor_third > major_third) == (mode == "minor"))
    assert np.mean(correct) >= 0.9


def test_clips_are_drawn_only_in_the_dataset_keys():
    # one key (README, "Mode"): "minor" then lowers the same rows of every clip's mel
    for split in ("train", "test"):
        items = data.SynthMusicDataset(split, num_clips=40, seconds=0.1)
        assert {item["attributes"]["key"] for item in items} == set(music.KEYS)
    assert set(music.KEYS) <= set(music.NOTE_NAMES)


def test_drums_add_broadband_energy():
    high = torch.tensor(mel_centres() > 4000.0)
    mel = MelSpectrogram()
    for seed, instrument in enumerate(music.INSTRUMENTS):
        fractions = []
        for drums in (False, True):
            energy = mel(torch.from_numpy(render(seed, instrument=instrument, drums=drums))).exp().pow(2)
            fractions.append((energy[:, high].sum() / energy.sum()).item())
        assert fractions[1] > 3 * fractions[0], (instrument, fractions)


@pytest.mark.parametrize("instrument", music.INSTRUMENTS)
def test_every_instrument_plays_in_tune(instrument):
    freq = music.midi_to_hz(60)  # middle C, 261.6 Hz
    note = music.render_note(instrument, freq, 1.0, SR, np.random.default_rng(0))
    assert peak_frequency(note) == pytest.approx(freq, rel=0.005)


def test_drums_are_added_on_top_of_unchanged_music():
    """Drums get their own random stream: the clip with drums is a mix of exactly the clip
    without them and the drum track, so switching drums off changes nothing else."""
    with_drums, without = render(3, drums=True), render(3, drums=False)
    drum_rng = np.random.default_rng(3).spawn(2)[1]
    drums = music.drum_track(100.0, len(without), SR, drum_rng)
    basis = np.stack([without, drums], 1)
    weights = np.linalg.lstsq(basis, with_drums, rcond=None)[0]
    assert np.abs(basis @ weights - with_drums).max() < 1e-5 and weights.min() > 0


# ----------------------------------------------------------------------------- folder dataset

def write(path, audio, sample_rate=SR):
    soundfile.write(path, np.asarray(audio), sample_rate)


@pytest.fixture
def folder(tmp_path):
    ramp = torch.linspace(-0.5, 0.5, 3 * SR)  # its value tells where a crop was taken
    write(tmp_path / "ramp.wav", ramp)
    (tmp_path / "ramp.txt").write_text("a rising ramp\n")
    stereo = torch.stack([tone(440.0, 4.0, 44100), tone(440.0, 4.0, 44100)], 1)
    (tmp_path / "stereo").mkdir()
    write(tmp_path / "stereo" / "wide.wav", stereo, 44100)
    write(tmp_path / "short.ogg", tone(300.0, 0.5))
    (tmp_path / "short.txt").write_text("a short beep")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "corrupt.txt").write_text("never heard")
    write(tmp_path / "silent.flac", torch.zeros(SR))
    write(tmp_path / "uncaptioned.wav", tone(500.0, 1.0))
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file": "stereo/wide.wav", "caption": "a wide A"}) + "\n\n"
        + json.dumps({"file": "silent.flac", "caption": "nothing"}) + "\n")
    return tmp_path


def test_folder_dataset_skips_bad_files_with_one_counting_warning(folder):
    expected = r"skipped 3 of 6 .*1 unreadable, 1 silent, 1 without a caption"
    with pytest.warns(UserWarning, match=expected) as record:
        ds = data.AudioFolderDataset(folder, seconds=2.56)
    assert len(record) == 1
    assert sorted(item["caption"] for item in ds) == ["a rising ramp", "a short beep", "a wide A"]  # one window each
    items = {item["caption"]: item["audio"] for item in ds}
    assert all(audio.shape == (40960,) and audio.dtype == torch.float32 for audio in items.values())
    assert peak_frequency(items["a wide A"]) == pytest.approx(440.0, abs=1.0)
    short = items["a short beep"]
    assert short[:SR // 2 - 100].abs().max() > 0.3 and short[SR // 2 + 100:].abs().max() == 0  # zero-padded
    # a file's windows are centred: the one 2.56 s window of a 3 s ramp starts 0.22 s in
    assert items["a rising ramp"][0].item() == pytest.approx(-0.5 + 0.22 / 3, abs=2e-3)
    assert "attributes" not in ds[0]


def test_window_offsets_cut_non_overlapping_centred_windows():
    assert data.window_offsets(1.0, 2.56) == [0.0]  # shorter than a window: one, zero-padded
    assert data.window_offsets(2.56, 2.56) == [0.0]
    assert data.window_offsets(5.12, 2.56) == [0.0, 2.56]  # an exact multiple loses nothing
    assert data.window_offsets(8.0, 2.56) == pytest.approx([0.16, 2.72, 5.28])  # 0.32 s left over, half each end
    offsets = data.window_offsets(180.0, 2.56)  # a 3-minute song: 70 windows, not one
    assert len(offsets) == 70 and offsets[0] >= 0 and offsets[-1] + 2.56 <= 180.0 + 1e-9
    assert np.diff(offsets) == pytest.approx([2.56] * 69)


# A folder of long files whose windows differ: file i holds WINDOWS[i] windows of SECONDS, window k
# of it a pure tone of its own (window_hz), between margins of EDGE_HZ that are LEFT_OVER[i] seconds
# in all (half at each end, where a centred cut puts the remainder). Its caption is "song i".
SECONDS, WINDOWS, LEFT_OVER, EDGE_HZ = 0.5, (2, 3, 4, 2, 3, 4), (0.2, 0.3, 0.0, 0.1, 0.45, 0.2), 3000.0


def window_hz(file, window):
    return 250.0 + 50.0 * (sum(WINDOWS[:file]) + window)  # 250, 300, ..., 1100 Hz: one per window


def song(file):
    edge = tone(EDGE_HZ, LEFT_OVER[file] / 2)
    windows = [tone(window_hz(file, k), SECONDS) for k in range(WINDOWS[file])]
    return torch.cat([edge, *windows, edge])


@pytest.fixture
def songs(tmp_path, captioned_folder):
    """(folder, {peak Hz: (file, window)}) of the six songs above, captioned in .txt files."""
    root, _ = captioned_folder(tmp_path / "songs", len(WINDOWS), audio=song, caption=lambda i: f"song {i}")
    return root, {window_hz(f, k): (f, k) for f in range(len(WINDOWS)) for k in range(WINDOWS[f])}


def windows_heard(dataset):
    """[(file, window)] of every item, told by its peak frequency, checking its caption and that
    none of the margin got in."""
    heard = []
    for item in dataset:
        audio = item["audio"]
        assert audio.shape == (round(SECONDS * SR),)
        hz = peak_frequency(audio)
        file = int(item["caption"].split()[1])
        nearest = min(range(WINDOWS[file]), key=lambda k: abs(window_hz(file, k) - hz))
        assert hz == pytest.approx(window_hz(file, nearest), abs=2.0), (item["caption"], hz)
        spectrum = np.abs(np.fft.rfft(audio.double().numpy()))
        assert spectrum[round(EDGE_HZ * SECONDS)] < 1e-2 * spectrum.max(), "a window holds some of the margin"
        heard.append((file, nearest))
    return heard


def test_every_window_of_every_file_is_one_item(songs):
    root, _ = songs
    ds = data.AudioFolderDataset(root, SECONDS)
    assert [(os.path.basename(path), caption) for path, caption, _ in ds.files] == \
        [(f"clip{i}.wav", f"song {i}") for i in range(len(WINDOWS))]
    assert [duration for _, _, duration in ds.files] == pytest.approx(
        [n * SECONDS + left for n, left in zip(WINDOWS, LEFT_OVER)])
    everything = [(f, k) for f in range(len(WINDOWS)) for k in range(WINDOWS[f])]
    assert len(ds) == len(ds.windows) == sum(WINDOWS) == 18
    assert windows_heard(ds) == everything  # each window once, in file order, with its file's caption
    for (path, caption, offset), (f, k) in zip(ds.windows, everything):
        assert path.endswith(f"clip{f}.wav") and caption == f"song {f}"
        assert offset == pytest.approx(LEFT_OVER[f] / 2 + k * SECONDS)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_folder_windows_are_cut_at_exactly_their_samples(songs):
    """Window k of a file is samples [start + k n, start + (k + 1) n) of it, n = SECONDS * 16000,
    start = the left-over samples' first half: neighbouring windows neither overlap nor skip one."""
    root, _ = songs
    ds, n = data.AudioFolderDataset(root, SECONDS), round(SECONDS * SR)
    for i, (path, _, _) in enumerate(ds.windows):
        f, k = windows_heard([ds[i]])[0]
        whole = load_audio(path)
        start = round(LEFT_OVER[f] * SR / 2) + k * n
        assert torch.equal(ds[i]["audio"], whole[start:start + n]), (path, k)


def test_split_by_file_holds_out_whole_files(songs):
    root, _ = songs
    ds = data.AudioFolderDataset(root, SECONDS)
    for fraction, held_out_files in ((10, {5}), (3, {2, 5})):  # every fraction-th file, at least one
        with pytest.warns(UserWarning, match="a few hundred"):
            train, held_out = ds.split_by_file(held_out_fraction=fraction)
        train_heard, held_out_heard = windows_heard(train), windows_heard(held_out)
        assert {f for f, _ in held_out_heard} == held_out_files
        # no window of a held-out file is trained on, and every window of every other file is, once
        assert sorted(train_heard) == [(f, k) for f in range(len(WINDOWS)) if f not in held_out_files
                                       for k in range(WINDOWS[f])]
        assert sorted(held_out_heard) == [(f, k) for f in sorted(held_out_files) for k in range(WINDOWS[f])]
        assert len(train) + len(held_out) == len(ds)


def test_split_by_file_spreads_the_held_out_tenth_over_the_folder():
    files = [(f"/music/{i:02d}.wav", f"song {i}", 3 * 2.56) for i in range(25)]  # never read: windows only
    ds = data.AudioFolderDataset("/music", 2.56, files)
    assert len(ds) == 75
    with pytest.warns(UserWarning, match="only 25 usable"):
        train, held_out = ds.split_by_file()
    assert held_out.files == [files[9], files[19]] and len(held_out) == 6
    assert train.files == [f for i, f in enumerate(files) if i not in (9, 19)] and len(train) == 69
    assert not {path for path, _, _ in train.windows} & {path for path, _, _ in held_out.windows}


def test_the_training_context_trains_on_every_window_of_the_training_files(songs, tmp_path):
    """End to end: stages.Context, what every training stage reads, on the folder of songs."""
    root, by_hz = songs
    config = replace(train.SMOKE, seconds=SECONDS, num_val_clips=2)
    with pytest.warns(UserWarning, match="a few hundred"):
        context = stages.Context(str(tmp_path / "run"), config, str(root), train.World(), progress=False)
        context.train
    held_out_file = len(WINDOWS) - 1  # one file in ten, at least one: the last of six
    training = [(f, k) for f in range(held_out_file) for k in range(WINDOWS[f])]
    assert len(context.train) == len(training) == 14
    heard = [by_hz[min(by_hz, key=lambda hz: abs(hz - peak_frequency(clip)))] for clip in context.train.audio]
    assert sorted(heard) == training
    assert context.train.captions == [f"song {f}" for f, _ in heard]
    assert context.train.phrasings == context.train.captions  # a folder's clip has one phrasing
    assert context.train_mels.shape[0] == len(training)
    # held-out metrics read num_val_clips windows spread over the held-out file: its first and its last
    val = [by_hz[min(by_hz, key=lambda hz: abs(hz - peak_frequency(clip)))] for clip in context.val.audio]
    assert val == [(held_out_file, 0), (held_out_file, WINDOWS[held_out_file] - 1)]
    assert context.val.captions == [f"song {held_out_file}"] * 2


def test_folder_without_usable_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no usable audio.*metadata.jsonl"):
        data.AudioFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        data.AudioFolderDataset(tmp_path / "missing")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    (tmp_path / "bad.txt").write_text("caption")
    with pytest.warns(UserWarning, match="1 unreadable"), pytest.raises(ValueError, match="no usable audio") as error:
        data.AudioFolderDataset(tmp_path)
    assert f"no usable audio with a caption in {tmp_path};" in str(error.value)
    (tmp_path / "metadata.jsonl").write_text('{"file": "bad.wav"}\n')  # a bad line is skipped, not fatal
    with pytest.warns(UserWarning, match=r"metadata.jsonl line 1: has no \"caption\""), \
            pytest.raises(ValueError, match="no usable audio"):
        data.AudioFolderDataset(tmp_path)


CLIPS = 5  # half-second tones, one window each at seconds=0.5


@pytest.fixture
def good_folder(tmp_path, captioned_folder):
    """CLIPS audible clips captioned in metadata.jsonl, one a line: clip{i}.wav is "a tone, number {i}".
    Returns the lines, for a test to add bad ones."""
    return captioned_folder(tmp_path, CLIPS, seconds=0.5, metadata=True)[1]


GOOD_CAPTIONS = [f"a tone, number {i}" for i in range(CLIPS)]
BAD_LINES = {  # what a user's metadata.jsonl line may hold, and what the warning says about it
    "not json": (b'{"file": "x.wav", "caption": "a tune"', "not valid JSON"),
    "not utf-8": ('{"file": "clip0.wav", "caption": "caf\u00e9"}'.encode("latin-1"), "not UTF-8"),
    "not an object": (b'["clip0.wav", "a tune"]', "a JSON list, not an object"),
    "no file": (b'{"caption": "a tune"}', 'has no "file"'),
    "no caption": (b'{"file": "clip0.wav"}', 'has no "caption"'),
    "number caption": (b'{"file": "clip0.wav", "caption": 7}', 'needs a string for "caption"'),
    "missing file": (b'{"file": "gone/missing.wav", "caption": "a tune"}', "no such file"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_metadata_line_is_skipped_with_a_warning_naming_it(tmp_path, good_folder, case):
    bad, says = BAD_LINES[case]
    lines = [line.encode() for line in good_folder]
    lines.insert(2, bad)  # line 3 of the file
    (tmp_path / "metadata.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5)
    assert len(record) == 1
    message = str(record[0].message)
    assert f"{tmp_path / 'metadata.jsonl'} line 3: {says}" in message and "skipped 1 of" in message
    assert "\n" not in message
    assert sorted(item["caption"] for item in ds) == GOOD_CAPTIONS


def test_a_caption_file_that_is_not_utf8_is_skipped_with_a_warning_naming_it(tmp_path, good_folder):
    (tmp_path / "metadata.jsonl").unlink()
    for i in range(CLIPS):  # .txt captions this time, one of them in Latin-1
        (tmp_path / f"clip{i}.txt").write_text(GOOD_CAPTIONS[i])
    write(tmp_path / "song.wav", tone(440.0, 0.5))
    (tmp_path / "song.txt").write_bytes("un caf\u00e9 tranquille".encode("latin-1"))
    (tmp_path / "clip0.txt").write_bytes(("\ufeff" + GOOD_CAPTIONS[0]).encode("utf-8"))  # a byte-order mark is fine
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5)
    assert len(record) == 1
    assert f"{tmp_path / 'song.txt'}: not UTF-8" in str(record[0].message)
    assert sorted(item["caption"] for item in ds) == GOOD_CAPTIONS
    # a metadata.jsonl caption replaces the unreadable .txt: nothing to warn about
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file": "song.wav", "caption": "a calm cafe"}) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5)
    assert "a calm cafe" in [item["caption"] for item in ds] and len(ds) == CLIPS + 1


def test_every_kind_of_bad_entry_is_counted_in_one_warning_naming_the_first(tmp_path, good_folder):
    lines = good_folder + ["not json", json.dumps({"file": "missing.wav", "caption": "gone"}),
                           json.dumps({"file": "clip0.wav"})]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    write(tmp_path / "quiet.wav", torch.zeros(SR))
    (tmp_path / "quiet.txt").write_text("nothing")
    (tmp_path / "latin.wav").write_bytes(b"RIFF")
    (tmp_path / "latin.txt").write_bytes(b"\xe9t\xe9")
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5)
    assert len(record) == 1
    message = str(record[0].message)
    assert re.search(r"skipped 5 of \d+ clips \(2 with invalid metadata, 1 missing, 1 with a non-UTF-8 caption, "
                     r"1 silent\)", message), message
    assert f"the first: {tmp_path / 'latin.txt'}: not UTF-8" in message
    assert len(ds) == CLIPS


def refusal(root, seconds):
    """split_by_file's one-line refusal of the folder `root`, which must name it and the fix."""
    with pytest.raises(ValueError) as error:
        data.AudioFolderDataset(root, seconds).split_by_file()
    message = str(error.value)
    assert message.startswith(f"{root}: only ") and message.endswith("add more captioned audio to the folder")
    assert "\n" not in message
    return message


def test_training_refuses_a_folder_with_too_few_files_or_windows_in_one_line(tmp_path, captioned_folder):
    # one file, however long, leaves nothing to hold out
    one, _ = captioned_folder(tmp_path / "one", 1, seconds=5.0)
    assert len(data.AudioFolderDataset(one, 0.5)) == 10
    assert "only 1 usable captioned file" in refusal(one, 0.5)
    # four one-window files: one is held out, and three windows cannot fill a smoke batch of four different clips
    few, _ = captioned_folder(tmp_path / "few", data.MIN_TRAIN_WINDOWS, seconds=0.5)
    assert f"leave {data.MIN_TRAIN_WINDOWS - 1} windows of 0.5 s to train on" in refusal(few, 0.5)
    # one file more trains, with a warning that a few hundred files are needed to learn much
    write(few / "more.wav", tone(700.0, 0.5))
    (few / "more.txt").write_text("one more")
    with pytest.warns(UserWarning, match="a few hundred") as record:
        train_set, held_out = data.AudioFolderDataset(few, 0.5).split_by_file()
    assert len(record) == 1 and str(few) in str(record[0].message)
    assert (len(train_set), len(held_out)) == (data.MIN_TRAIN_WINDOWS, 1)
    # windows count, not files: two files of three windows are refused, and trained on once the first has four
    two, _ = captioned_folder(tmp_path / "two", 2, seconds=3 * 0.5)
    assert "leave 3 windows" in refusal(two, 0.5)
    write(two / "clip0.wav", tone(200.0, 4 * 0.5))
    with pytest.warns(UserWarning, match="a few hundred"):
        train_set, held_out = data.AudioFolderDataset(two, 0.5).split_by_file()
    assert (len(train_set), len(held_out)) == (4, 3)
