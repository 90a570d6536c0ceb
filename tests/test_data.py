import itertools
import json
import math
import re
import warnings

import numpy as np
import pytest
import soundfile
import torch

import data
import music

SR = data.SAMPLE_RATE


def tone(freq, seconds, sample_rate=SR, amplitude=0.5):
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    return amplitude * torch.sin(2 * math.pi * freq * t)


def peak_frequency(audio, sample_rate=SR):
    spectrum = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64)))
    return np.fft.rfftfreq(len(audio), 1 / sample_rate)[spectrum.argmax()]


def mel_centres():
    edges = np.linspace(data.hz_to_mel(data.F_MIN), data.hz_to_mel(data.F_MAX), data.N_MELS + 2)
    return data.mel_to_hz(edges)[1:-1]


# ----------------------------------------------------------------------------- mel front end

@pytest.mark.parametrize("samples", [16000, 40960, 163840])
def test_mel_frame_count_is_samples_over_hop(samples):
    mel = data.MelSpectrogram()(torch.randn(2, 3, samples))
    assert mel.shape == (2, 3, samples // data.HOP, data.N_MELS)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_the_nearest_mel_bin(freq):
    mel = data.MelSpectrogram()(tone(freq, 1.0))
    assert mel.mean(0).argmax().item() == np.abs(mel_centres() - freq).argmin()


def test_silence_is_the_log_floor():
    mel = data.MelSpectrogram()(torch.zeros(1600))
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))


def test_mel_filterbank_rows_have_unit_area():
    weights = data.mel_filterbank()
    assert weights.shape == (data.N_MELS, data.N_FFT // 2 + 1) and weights.min() >= 0
    area = weights.sum(1) * (SR / data.N_FFT)  # Riemann sum of each triangle over frequency in Hz
    assert torch.allclose(area, torch.ones(data.N_MELS), atol=0.03)


def test_slaney_mel_scale():
    assert data.hz_to_mel(1000.0) == pytest.approx(15.0)  # the linear-log break point
    assert data.hz_to_mel(600.0) == pytest.approx(9.0)    # linear part: 3 mels per 200 Hz
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0])
    assert np.allclose(data.mel_to_hz(data.hz_to_mel(hz)), hz)


# ----------------------------------------------------------------------------- files

def test_save_load_round_trip(tmp_path):
    audio = torch.rand(8000) * 1.8 - 0.9
    path = data.save_wav(tmp_path / "sub" / "x.wav", audio)
    loaded = data.load_audio(path)
    assert loaded.dtype == torch.float32 and loaded.shape == audio.shape
    assert (loaded - audio).abs().max() < 1 / 32767  # 16-bit quantisation


def test_save_clips_instead_of_wrapping(tmp_path):
    data.save_wav(tmp_path / "loud.wav", torch.tensor([1.7, -3.0, 0.5]))
    assert torch.allclose(data.load_audio(tmp_path / "loud.wav"), torch.tensor([1.0, -1.0, 0.5]), atol=1e-4)


def test_resampling_keeps_the_frequency():
    resampled = data.resample(tone(1000.0, 1.0, sample_rate=44100), 44100, SR)
    assert resampled.shape == (SR,)
    assert peak_frequency(resampled) == pytest.approx(1000.0, abs=1.0)


def test_load_audio_makes_stereo_mono_resamples_and_reads_a_window(tmp_path):
    left, right = tone(440.0, 2.0, 44100), tone(440.0, 2.0, 44100, amplitude=0.1)
    soundfile.write(tmp_path / "stereo.flac", torch.stack([left, right], 1).numpy(), 44100)
    audio = data.load_audio(tmp_path / "stereo.flac")
    assert audio.shape == (2 * SR,)
    assert peak_frequency(audio) == pytest.approx(440.0, abs=1.0)
    assert audio.abs().max() == pytest.approx(0.3, abs=0.01)  # the mean of the two channels
    window = data.load_audio(tmp_path / "stereo.flac", offset=0.5, duration=1.0)
    assert abs(window.shape[0] - SR) <= 1


def test_unreadable_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF this is not audio")
    with pytest.raises(ValueError, match="broken.wav") as error:
        data.load_audio(path)
    assert "\n" not in str(error.value)


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
        assert attributes["instrument"] in data.INSTRUMENTS and attributes["mode"] in data.MODES
        low, high = data.TEMPOS[attributes["tempo"]]
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
    mel = data.MelSpectrogram()(torch.as_tensor(audio))
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
    mel = data.MelSpectrogram()
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
        ds = data.AudioFolderDataset(folder, seconds=2.56, train=False)
    assert len(record) == 1
    assert sorted(item["caption"] for item in ds) == ["a rising ramp", "a short beep", "a wide A"]
    items = {item["caption"]: item["audio"] for item in ds}
    assert all(audio.shape == (40960,) and audio.dtype == torch.float32 for audio in items.values())
    assert peak_frequency(items["a wide A"]) == pytest.approx(440.0, abs=1.0)
    short = items["a short beep"]
    assert short[:SR // 2 - 100].abs().max() > 0.3 and short[SR // 2 + 100:].abs().max() == 0  # zero-padded
    # evaluation takes the centre: a 2.56 s window of a 3 s ramp starts 0.22 s in
    assert items["a rising ramp"][0].item() == pytest.approx(-0.5 + 0.22 / 3, abs=2e-3)
    assert "attributes" not in ds[0]


def test_folder_dataset_training_crops_are_random_but_seeded(folder):
    with pytest.warns(UserWarning):
        a, b = (data.AudioFolderDataset(folder, seconds=1.0, train=True, seed=3, min_clips=1) for _ in range(2))
    ramp = [i for i, (path, _, _) in enumerate(a.items) if path.endswith("ramp.wav")][0]
    starts = []
    for epoch in range(4):
        a.set_epoch(epoch), b.set_epoch(epoch)
        crop = a[ramp]["audio"]
        assert torch.equal(crop, b[ramp]["audio"])
        assert -0.5 - 1e-3 <= crop.min() and crop.max() <= 0.5 + 1e-3 and crop.abs().max() > 0
        starts.append(round(crop[0].item(), 3))
    assert len(set(starts)) == 4


def test_folder_without_usable_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no usable audio.*metadata.jsonl"):
        data.AudioFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        data.AudioFolderDataset(tmp_path / "missing")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    (tmp_path / "bad.txt").write_text("caption")
    with pytest.warns(UserWarning, match="1 unreadable"), pytest.raises(ValueError, match=str(tmp_path)):
        data.AudioFolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file": "bad.wav"}\n')  # a bad line is skipped, not fatal
    with pytest.warns(UserWarning, match=r"metadata.jsonl line 1: has no \"caption\""), \
            pytest.raises(ValueError, match="no usable audio"):
        data.AudioFolderDataset(tmp_path)


def good_folder(root, clips=data.MIN_TRAIN_CLIPS):
    """`clips` audible clips captioned in metadata.jsonl, one a line: "clip0.wav" is "caption 0"."""
    root.mkdir(exist_ok=True)
    lines = []
    for i in range(clips):
        write(root / f"clip{i}.wav", tone(200.0 + 50 * i, 0.5))
        lines.append(json.dumps({"file": f"clip{i}.wav", "caption": f"caption {i}"}))
    return lines


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
def test_a_bad_metadata_line_is_skipped_with_a_warning_naming_it(tmp_path, case):
    bad, says = BAD_LINES[case]
    lines = [line.encode() for line in good_folder(tmp_path)]
    lines.insert(2, bad)  # line 3 of the file
    (tmp_path / "metadata.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5, train=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert f"{tmp_path / 'metadata.jsonl'} line 3: {says}" in message and "skipped 1 of" in message
    assert "\n" not in message
    assert sorted(item["caption"] for item in ds) == [f"caption {i}" for i in range(data.MIN_TRAIN_CLIPS)]


def test_a_caption_file_that_is_not_utf8_is_skipped_with_a_warning_naming_it(tmp_path):
    good_folder(tmp_path)
    for i in range(data.MIN_TRAIN_CLIPS):  # .txt captions this time, one of them in Latin-1
        (tmp_path / f"clip{i}.txt").write_text(f"caption {i}")
    write(tmp_path / "song.wav", tone(440.0, 0.5))
    (tmp_path / "song.txt").write_bytes("un caf\u00e9 tranquille".encode("latin-1"))
    (tmp_path / "clip0.txt").write_bytes("\ufeffcaption 0".encode("utf-8"))  # a byte-order mark is fine
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5, train=False)
    assert len(record) == 1
    assert f"{tmp_path / 'song.txt'}: not UTF-8" in str(record[0].message)
    assert sorted(item["caption"] for item in ds) == [f"caption {i}" for i in range(data.MIN_TRAIN_CLIPS)]
    # a metadata.jsonl caption replaces the unreadable .txt: nothing to warn about
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file": "song.wav", "caption": "a calm cafe"}) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5, train=False)
    assert "a calm cafe" in [item["caption"] for item in ds] and len(ds) == data.MIN_TRAIN_CLIPS + 1


def test_every_kind_of_bad_entry_is_counted_in_one_warning_naming_the_first(tmp_path):
    lines = good_folder(tmp_path)
    lines += ["not json", json.dumps({"file": "missing.wav", "caption": "gone"}), json.dumps({"file": "clip0.wav"})]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    write(tmp_path / "quiet.wav", torch.zeros(SR))
    (tmp_path / "quiet.txt").write_text("nothing")
    (tmp_path / "latin.wav").write_bytes(b"RIFF")
    (tmp_path / "latin.txt").write_bytes(b"\xe9t\xe9")
    with pytest.warns(UserWarning) as record:
        ds = data.AudioFolderDataset(tmp_path, seconds=0.5, train=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert re.search(r"skipped 5 of \d+ clips \(2 with invalid metadata, 1 missing, 1 with a non-UTF-8 caption, "
                     r"1 silent\)", message), message
    assert f"the first: {tmp_path / 'latin.txt'}: not UTF-8" in message
    assert len(ds) == data.MIN_TRAIN_CLIPS


def test_training_refuses_far_too_few_clips_in_one_line(tmp_path):
    good_folder(tmp_path, data.MIN_TRAIN_CLIPS - 1)
    for i in range(data.MIN_TRAIN_CLIPS - 1):
        (tmp_path / f"clip{i}.txt").write_text(f"caption {i}")
    with pytest.raises(ValueError) as error:
        data.AudioFolderDataset(tmp_path, seconds=0.5, train=True)
    message = str(error.value)
    assert f"{tmp_path}: only {data.MIN_TRAIN_CLIPS - 1} usable" in message and "add more" in message
    assert "\n" not in message
    assert len(data.AudioFolderDataset(tmp_path, seconds=0.5, train=False)) == data.MIN_TRAIN_CLIPS - 1
    # one more clip trains, with a warning that a few hundred are needed to learn much
    write(tmp_path / "more.wav", tone(700.0, 0.5))
    (tmp_path / "more.txt").write_text("one more")
    with pytest.warns(UserWarning, match="a few hundred"):
        assert len(data.AudioFolderDataset(tmp_path, seconds=0.5, train=True)) == data.MIN_TRAIN_CLIPS
