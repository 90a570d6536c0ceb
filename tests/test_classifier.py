"""classifier.py: the attribute classifier's features (from waveforms and from log-mels) and its training."""
import math

import pytest
import torch

import classifier
from classifier import AttributeClassifier, ClassifierConfig, accuracy, chroma_matrix
from audio import MelSpectrogram


def test_chroma_matrix_puts_each_bin_in_its_nearest_pitch_class():
    config = ClassifierConfig()
    fold = chroma_matrix(config)
    assert fold.shape == (12, config.chroma_fft // 2 + 1)
    assert (fold.sum(0) <= 1).all()
    bin_hz = 16000 / config.chroma_fft
    assert fold[9, round(440 / bin_hz)] == 1  # A
    assert fold[0, round(261.6 / bin_hz)] == 1  # middle C
    assert fold[:, round(30 / bin_hz)].sum() == 0  # below the band: ignored


def test_classifier_features_hear_pitch_and_the_mode_head_ignores_the_key():
    torch.manual_seed(0)
    model = AttributeClassifier(ClassifierConfig())
    t = torch.arange(40960) / 16000
    tone = torch.sin(2 * math.pi * 440 * t)[None]
    summary, chroma = model.features(tone)
    assert summary.shape == (1, 2 * 64 + model.config.lags) and chroma.shape == (1, 2, 12)
    assert chroma[0, 0].argmax().item() == 9
    assert torch.allclose(chroma.mean(-1), torch.zeros(1, 2), atol=1e-6)
    # transposing the chroma (a new key) changes no mode logit: the head scores every key
    random_chroma = torch.randn(3, 2, 12)
    summary = torch.randn(3, summary.shape[1])
    logits = model(features=(summary, random_chroma))
    moved = model(features=(summary, random_chroma.roll(5, dims=-1)))
    assert torch.allclose(logits["mode"], moved["mode"], atol=1e-5)
    assert not torch.allclose(logits["mode"], model(features=(summary, random_chroma.flip(-1)))["mode"])
    with pytest.raises(ValueError, match="longer than 1.22 s"):
        model.features(torch.zeros(1, 16000))


@pytest.mark.slow  # trains a classifier for real
def test_a_briefly_trained_classifier_beats_chance_on_held_out_clips():
    audio, _, attributes = classifier.render("train", 48, 1.28, 0)
    model = classifier.train_classifier(audio, attributes, steps=60)
    test_audio, _, test_attributes = classifier.render("test", 32, 1.28, 0)
    held_out = accuracy(model.posteriors(test_audio), test_attributes)
    chance = classifier.CHANCE
    assert held_out["drums"] > 0.8 and held_out["instrument"] > 2 * chance["instrument"]
    assert held_out["tempo"] > 1.5 * chance["tempo"]


@pytest.mark.parametrize("hz, pitch_class, tolerance", [
    (261.63, 0, 1), (329.63, 4, 1), (440.0, 9, 1),       # below ~500 Hz a mel band is wider than a semitone
    (523.25, 0, 0), (659.26, 4, 0), (783.99, 7, 0), (987.77, 11, 0)])
def test_the_mel_input_hears_the_pitch_the_mel_keeps(hz, pitch_class, tolerance):
    """A tone's log-mel, read through the mel's least-squares linear spectrum, names its pitch
    class exactly above ~500 Hz and to within a semitone below."""
    model = AttributeClassifier(ClassifierConfig(input="mel"))
    assert model.chroma_fold.shape == (12, 513)  # bins of the mel's own 1024-point spectrum
    t = torch.arange(40960) / 16000
    mel = MelSpectrogram()(torch.sin(2 * math.pi * hz * t)[None])
    summary, chroma = model.features(mel)
    assert summary.shape == (1, 2 * 64 + model.config.lags)
    off = (chroma[0, 0].argmax().item() - pitch_class) % 12
    assert min(off, 12 - off) <= tolerance
    with pytest.raises(ValueError, match="input must be one of"):
        ClassifierConfig(input="video")


@pytest.mark.slow  # trains a classifier for real
def test_a_briefly_trained_mel_classifier_beats_chance_on_held_out_clips():
    audio, _, attributes = classifier.render("train", 48, 1.28, 0)
    model = classifier.train_classifier(classifier.log_mels(audio), attributes, steps=60,
                                        config=ClassifierConfig(input="mel"))
    test_audio, _, test_attributes = classifier.render("test", 32, 1.28, 0)
    held_out = accuracy(model.posteriors(classifier.log_mels(test_audio)), test_attributes)
    assert held_out["drums"] > 0.8 and held_out["instrument"] > 2 * classifier.CHANCE["instrument"]
