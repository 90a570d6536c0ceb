"""The pitch judge (pitch.py), the vocoder's phase-advance loss, and sample.py --reconstruct."""
import glob
import os
import re

import numpy as np
import pytest
import soundfile
import torch

import music
import pitch
import vocoder
from audio import SAMPLE_RATE
from conftest import ROOT, run_script
from data import SynthMusicDataset


def tone(midi, seconds=1.0):
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return torch.sin(2 * torch.pi * music.midi_to_hz(midi) * t)


def test_a_pure_tone_lands_in_its_own_pitch_class():
    for midi in (57, 64, 71):  # A3, E4, B4
        profile = pitch.chroma(tone(midi)[None])[0]
        assert profile.argmax().item() == midi % 12
        assert profile[midi % 12] / profile.sum() > 0.9  # the rest leaks into the neighbouring semitones


def test_scale_energy_and_mode_by_scale_fit_tell_the_third():
    c_major_triad = (tone(60) + tone(64) + tone(67))[None]
    c_minor_triad = (tone(60) + tone(63) + tone(67))[None]
    major, minor = pitch.chroma(c_major_triad)[0], pitch.chroma(c_minor_triad)[0]
    assert pitch.mode_by_scale_fit(major, "C") == "major" and pitch.mode_by_scale_fit(minor, "C") == "minor"
    assert pitch.in_scale_energy(major, "C", "major") > 0.95
    assert pitch.in_scale_energy(major, "C", "minor") < 0.75  # E is not in C minor
    assert pitch.scale_mask("C", "major").nonzero().flatten().tolist() == [0, 2, 4, 5, 7, 9, 11]
    assert pitch.scale_mask("A", "minor").nonzero().flatten().tolist() == [0, 2, 4, 5, 7, 9, 11]  # relative keys


def test_the_judge_hears_a_real_clip_in_tune_and_the_same_clip_a_semitone_off_out_of_tune():
    dataset = SynthMusicDataset("test", 4)
    audio = torch.stack([dataset[i]["audio"] for i in range(4)])
    attributes = [dataset[i]["attributes"] for i in range(4)]
    scores = [dataset.score(i) for i in range(4)]
    clean = pitch.judge(audio, attributes, scores, audio)
    assert clean["in_scale_energy"] > 0.9 and clean["mode_by_scale_fit"] == 1.0 and clean["note_accuracy"] > 0.9
    assert clean["pitch_class_similarity"] == pytest.approx(1.0)
    # resampling by a semitone's ratio plays every note a semitone lower: out of key, every note off
    ratio = 2 ** (1 / 12)
    flat = torch.nn.functional.interpolate(audio[:, None], scale_factor=ratio, mode="linear")[:, 0, :audio.shape[1]]
    off = pitch.judge(flat, attributes, scores, audio)
    assert off["in_scale_energy"] < clean["in_scale_energy"] - 0.2
    assert off["note_accuracy"] < 0.3 and off["pitch_class_similarity"] < 0.9


def test_a_score_is_the_notes_the_clip_plays():
    dataset = SynthMusicDataset("train", 3, seed=5)
    for i in range(3):
        attributes = dataset[i]["attributes"]
        notes = dataset.score(i)
        assert notes and all(0 <= start < dataset.seconds for start, _, _, _ in notes)
        scale = set(pitch.scale_mask(attributes["key"], attributes["mode"]).nonzero().flatten().tolist())
        assert {midi % 12 for _, _, midi, _ in notes} <= scale


def test_phase_advance_loss_is_zero_for_the_same_audio_and_large_a_semitone_off():
    audio = torch.stack([tone(64, 0.5), tone(69, 0.5)])
    assert vocoder.phase_advance_loss(audio, audio).item() == pytest.approx(0.0, abs=1e-3)
    shifted = torch.stack([tone(63, 0.5), tone(68, 0.5)])
    assert vocoder.phase_advance_loss(audio, shifted).item() > 0.5
    # a delay changes the absolute phase, not the advance: small
    assert vocoder.phase_advance_loss(audio, audio.roll(37, -1)).item() < 0.05
    real, fake = audio.clone(), (0.9 * shifted).requires_grad_()
    vocoder.phase_advance_loss(real, fake).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


@pytest.mark.slow  # runs sample.py in other processes
def test_reconstruct_writes_the_file_through_the_vocoder_and_refuses_a_missing_one(tmp_path):
    song = tmp_path / "my song.wav"
    soundfile.write(song, np.concatenate([SynthMusicDataset("test", 2)[i]["audio"].numpy() for i in range(2)]),
                    SAMPLE_RATE)
    run = os.path.join(ROOT, "pretrained", "tiny")
    result = run_script("sample.py", "--reconstruct", str(song), "--through-vae", "--run", run, "--out",
                        str(tmp_path / "out"))
    written = tmp_path / "out" / "my song_through_vae_vocoder.wav"
    assert str(written) in result.stdout and written.with_suffix(".png").exists()
    audio, rate = soundfile.read(written)
    assert rate == SAMPLE_RATE and abs(len(audio) - 2 * 40960) <= 160 and np.abs(audio).max() > 0.01
    missing = run_script("sample.py", "--reconstruct", str(tmp_path / "gone.wav"), "--run", run, check=False)
    assert missing.returncode == 1 and "gone.wav: no such file" in missing.stderr
    lonely = run_script("sample.py", "--through-vae", check=False)
    assert lonely.returncode == 2 and "--through-vae goes with --reconstruct" in lonely.stderr


def test_every_top_level_module_is_installed_by_pyproject():
    listed = re.search(r"py-modules = \[(.*?)\]", open(os.path.join(ROOT, "pyproject.toml")).read(), re.S).group(1)
    modules = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "*.py"))}
    assert set(re.findall(r'"(\w+)"', listed)) == modules
