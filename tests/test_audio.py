"""audio.py: the log-mel front end (frame count, pitch, silence, the Slaney filterbank) and audio
files in and out (round trip, clipping, resampling, stereo, windows, unreadable files)."""
import math

import numpy as np
import pytest
import soundfile
import torch

from audio import (HOP, N_FFT, N_MELS, SAMPLE_RATE, MelSpectrogram, fit_length, hz_to_mel, load_audio,
                   mel_filterbank, mel_to_hz, resample, save_wav)
from conftest import mel_centres, peak_frequency, tone

SR = SAMPLE_RATE


# ----------------------------------------------------------------------------- mel front end

@pytest.mark.parametrize("samples", [16000, 40960, 163840])
def test_mel_frame_count_is_samples_over_hop(samples):
    mel = MelSpectrogram()(torch.randn(2, 3, samples))
    assert mel.shape == (2, 3, samples // HOP, N_MELS)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_the_nearest_mel_bin(freq):
    mel = MelSpectrogram()(tone(freq, 1.0))
    assert mel.mean(0).argmax().item() == np.abs(mel_centres() - freq).argmin()


def test_silence_is_the_log_floor():
    mel = MelSpectrogram()(torch.zeros(1600))
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))


def test_mel_filterbank_rows_have_unit_area():
    weights = mel_filterbank()
    assert weights.shape == (N_MELS, N_FFT // 2 + 1) and weights.min() >= 0
    area = weights.sum(1) * (SR / N_FFT)  # Riemann sum of each triangle over frequency in Hz
    assert torch.allclose(area, torch.ones(N_MELS), atol=0.03)


def test_slaney_mel_scale():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # the linear-log break point
    assert hz_to_mel(600.0) == pytest.approx(9.0)    # linear part: 3 mels per 200 Hz
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)


# ----------------------------------------------------------------------------- files

def test_save_load_round_trip(tmp_path):
    audio = torch.rand(8000) * 1.8 - 0.9
    path = save_wav(tmp_path / "sub" / "x.wav", audio)
    loaded = load_audio(path)
    assert loaded.dtype == torch.float32 and loaded.shape == audio.shape
    assert (loaded - audio).abs().max() < 1 / 32767  # 16-bit quantisation


def test_save_clips_instead_of_wrapping(tmp_path):
    save_wav(tmp_path / "loud.wav", torch.tensor([1.7, -3.0, 0.5]))
    assert torch.allclose(load_audio(tmp_path / "loud.wav"), torch.tensor([1.0, -1.0, 0.5]), atol=1e-4)


def test_resampling_keeps_the_frequency():
    resampled = resample(tone(1000.0, 1.0, sample_rate=44100), 44100, SR)
    assert resampled.shape == (SR,)
    assert peak_frequency(resampled) == pytest.approx(1000.0, abs=1.0)


def test_load_audio_makes_stereo_mono_resamples_and_reads_a_window(tmp_path):
    left, right = tone(440.0, 2.0, 44100), tone(440.0, 2.0, 44100, amplitude=0.1)
    soundfile.write(tmp_path / "stereo.flac", torch.stack([left, right], 1).numpy(), 44100)
    audio = load_audio(tmp_path / "stereo.flac")
    assert audio.shape == (2 * SR,)
    assert peak_frequency(audio) == pytest.approx(440.0, abs=1.0)
    assert audio.abs().max() == pytest.approx(0.3, abs=0.01)  # the mean of the two channels
    window = load_audio(tmp_path / "stereo.flac", offset=0.5, duration=1.0)
    assert abs(window.shape[0] - SR) <= 1


@pytest.mark.parametrize("offset", [0.1, (1.2 - 1.0) / 2, 0.45 / 2, 1.15])
def test_a_window_starts_at_the_sample_nearest_its_offset(tmp_path, offset):
    """offset * 16000 in floating point can fall a hair below a whole sample ((1.2 - 1.0) / 2 * 16000 =
    1599.9999999999995): the window must still start at sample 1600, or neighbouring windows overlap."""
    samples = torch.arange(2 * SR, dtype=torch.float32) / (4 * SR)  # each sample's value says where it was
    soundfile.write(tmp_path / "ramp.wav", samples.numpy(), SR, subtype="FLOAT")
    start = round(offset * SR)
    window = load_audio(tmp_path / "ramp.wav", offset=offset, duration=0.25)
    assert torch.equal(window, samples[start:start + SR // 4]), (window[0].item() * 4 * SR, start)


def test_fit_length_crops_or_zero_pads_at_the_end():
    audio = torch.arange(1.0, 6.0)
    assert torch.equal(fit_length(audio, 3), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(fit_length(audio, 7), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]))
    assert torch.equal(fit_length(audio, 5), audio)


def test_unreadable_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF this is not audio")
    with pytest.raises(ValueError, match="broken.wav") as error:
        load_audio(path)
    assert "\n" not in str(error.value)
