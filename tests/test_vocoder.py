"""vocoder.py: output lengths, config checks, the iSTFT head's exact playback of a known STFT,
LSGAN losses at their optimum, weight-norm folding, the STFT losses' zero, and Griffin-Lim
recovering a tone's pitch."""
import math

import pytest
import torch

from audio import HOP, N_FFT, MelSpectrogram, griffin_lim, inverse_stft, mel_to_linear
from vocoder import (HANN_LOBE_CURVATURE, PERIODS, Discriminators, HiFiGAN, HiFiGANConfig, compare_with_griffin_lim,
                     discriminator_loss, generator_loss, istft_head, multi_resolution_stft_distance,
                     reconstruction_loss, training_batch)


def mel_of_noise(frames, batch=2):
    torch.manual_seed(0)
    return MelSpectrogram()(0.1 * torch.randn(batch, frames * HOP))


@pytest.mark.parametrize("config", [HiFiGANConfig(), HiFiGANConfig.waveform(),
                                    HiFiGANConfig(initial_channels=32, upsample_rates=(1,), upsample_kernel_sizes=(1,)),
                                    HiFiGANConfig(initial_channels=16, upsample_rates=(8, 5, 4),
                                                  upsample_kernel_sizes=(16, 10, 8), head="waveform"),
                                    HiFiGANConfig(initial_channels=32, upsample_rates=(5, 4, 2, 2, 2),
                                                  upsample_kernel_sizes=(16, 16, 8, 4, 4), head="waveform")])
@pytest.mark.parametrize("frames", [1, 7, 32])
def test_output_length_is_frames_times_hop(config, frames):
    torch.manual_seed(0)
    audio = HiFiGAN(config)(torch.randn(2, frames, 64) - 5)
    assert audio.shape == (2, frames * 160)
    assert audio.abs().max() <= 1.0


def test_the_audioldm2_generator_is_the_paper_size_and_upsamples_by_160():
    config = HiFiGANConfig.audioldm2()
    assert math.prod(config.upsample_rates) == 160 and config.initial_channels == 1024
    assert math.prod(HiFiGANConfig.waveform().upsample_rates) == 160
    assert math.prod(HiFiGANConfig().upsample_rates) == 1 and HiFiGANConfig().head == "istft"
    generator = HiFiGAN(config)
    assert 50e6 < sum(p.numel() for p in generator.parameters()) < 60e6
    with torch.no_grad():
        assert generator(torch.zeros(1, 2, 64)).shape == (1, 320)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="multiply to 128, but the waveform head needs 160"):
        HiFiGANConfig(upsample_rates=(4, 4, 4, 2), upsample_kernel_sizes=(8, 8, 8, 4), head="waveform")
    with pytest.raises(ValueError, match="multiply to 160, but the istft head needs 1"):
        HiFiGANConfig(upsample_rates=(5, 4, 4, 2), upsample_kernel_sizes=(10, 8, 8, 4))
    with pytest.raises(ValueError, match="head 'mel' is not one of"):
        HiFiGANConfig(head="mel")
    with pytest.raises(ValueError, match="one upsample kernel size per"):
        HiFiGANConfig(upsample_rates=(1, 1, 1))
    with pytest.raises(ValueError, match="at least as long"):
        HiFiGANConfig(upsample_kernel_sizes=(4, 8, 8, 2), upsample_rates=(5, 4, 4, 2), head="waveform")
    with pytest.raises(ValueError, match="phase 'random' is not one of"):
        HiFiGANConfig(phase="random")
    with pytest.raises(ValueError, match="only the istft head has a phase model"):
        HiFiGANConfig.waveform().__class__(**{**vars(HiFiGANConfig.waveform()), "phase": "from_magnitude"})
    with pytest.raises(ValueError, match="batch, frames, 64"):
        HiFiGAN(HiFiGANConfig())(torch.zeros(1, 64, 10))


def test_removing_weight_norm_leaves_the_output_unchanged():
    generator = HiFiGAN(HiFiGANConfig()).eval()
    mel = mel_of_noise(6)
    with torch.no_grad():
        before = generator(mel)
        generator.remove_weight_norm()
        after = generator(mel)
    assert not any("parametrizations" in name for name, _ in generator.named_parameters())
    assert torch.allclose(before, after, atol=1e-6)


def head_input_for(signal, frames):
    """What conv_post must write for the iSTFT head to play `signal`: the log-ratio of its STFT
    magnitude to the least-squares magnitude of its mel, and each bin's phase advance per frame
    written as its offset from the bin's centre frequency (atanh of offset / pi)."""
    spec = torch.stft(signal[:, HOP // 2:], N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    spec = spec[..., :frames].to(torch.complex128)
    bins = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
    phase = spec.angle()
    advance = torch.cat([phase[..., :1] + math.pi * bins, phase.diff(dim=-1)], dim=-1)
    offset = torch.remainder(advance - 2 * math.pi * bins * HOP / N_FFT + math.pi, 2 * math.pi) - math.pi
    least_squares = mel_to_linear(MelSpectrogram()(signal)).transpose(1, 2).clamp(min=1e-5).double()
    return torch.cat([spec.abs().clamp(min=1e-12).log() - least_squares.log(),
                      torch.atanh((offset / math.pi).clamp(-1 + 1e-9, 1 - 1e-9))], dim=1)


def test_the_istft_head_plays_back_a_signal_from_its_stft():
    """Given a signal's magnitudes (as corrections to the mel's least-squares magnitude) and
    its phase advances, the head's running sum rebuilds the phases and its overlap-add the
    signal: Hann frames 1024 long and 160 apart sum to a constant, so iSTFT inverts STFT."""
    torch.manual_seed(0)
    frames = 40
    signal = 0.9 * (2 * torch.rand(2, frames * HOP) - 1)  # within [-1, 1], where the head clips
    rebuilt = istft_head(head_input_for(signal, frames), MelSpectrogram()(signal))
    assert rebuilt.shape == signal.shape
    # the first HOP/2 samples come before the first frame's centre (zeros, as in griffin_lim), and
    # the last N_FFT lack the frames centred after the clip; everything between is the signal
    inner = slice(HOP // 2 + N_FFT, -N_FFT)
    assert torch.allclose(rebuilt[:, inner], signal[:, inner], atol=1e-3)
    assert rebuilt[:, :HOP // 2].abs().max() == 0


def test_the_hann_lobe_is_a_parabola_of_the_stated_curvature_in_log_magnitude():
    """log|W(k)| of a 1024-point Hann window, k in bins from the peak: its second derivative at the
    peak is -HANN_LOBE_CURVATURE = -2 (pi^2 / 6 - 1), which the magnitude phase model divides by."""
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    n = torch.arange(N_FFT, dtype=torch.float64)
    log_w = lambda k: torch.log((window * torch.exp(-2j * math.pi * k * n / N_FFT)).sum().abs())
    step = 1e-2
    second = (log_w(step) - 2 * log_w(0.0) + log_w(-step)) / step ** 2
    assert second.item() == pytest.approx(-HANN_LOBE_CURVATURE, rel=1e-3)


@pytest.mark.parametrize("hz", [337.0, 1242.0])
def test_the_magnitude_phase_model_plays_a_partial_where_its_magnitude_peaks(hz):
    """Given only a tone's STFT magnitude (no phase correction), the "from_magnitude" head turns
    every bin of the lobe at the tone's frequency: the output's fine spectrum peaks within 2.5 Hz
    (a sixth of a semitone at 337 Hz; the lobe is only nearly a parabola),
    while the free head's bin-centre phases put the energy on the nearest bins (15.6 Hz apart)."""
    frames = 200
    t = torch.arange(frames * HOP, dtype=torch.float64) / 16000
    signal = (0.5 * torch.sin(2 * math.pi * hz * t)).float()[None]
    x = head_input_for(signal, frames)
    x[:, 513:] = 0  # no correction: the phase comes from the model alone
    mel = MelSpectrogram()(signal)

    def peak_hz(audio):
        middle = audio[0, 4000:-4000].double()
        spectrum = torch.fft.rfft(middle * torch.hann_window(len(middle), dtype=torch.float64), n=1 << 18).abs()
        return spectrum.argmax().item() * 16000 / (1 << 18)

    assert abs(peak_hz(istft_head(x.float(), mel, "from_magnitude")) - hz) < 2.5
    assert abs(peak_hz(istft_head(x.float(), mel, "free")) - hz) > 3.0


def test_the_istft_head_starts_from_the_least_squares_magnitude_and_cannot_overflow():
    """A zero correction plays the least-squares magnitude of the mel (Griffin-Lim's start),
    with every bin at its centre frequency; any log-magnitude an untrained or diverging net
    writes is capped, so the audio stays finite and within [-1, 1]."""
    frames = 600  # 6 s: long enough that a phase summed carelessly in float32 would drift
    mel = mel_of_noise(frames, batch=1)
    zero = istft_head(torch.zeros(1, 2 * 513, frames), mel)
    magnitude = mel_to_linear(mel).transpose(1, 2)
    bins, t = torch.arange(513, dtype=torch.float64)[:, None], torch.arange(frames, dtype=torch.float64)
    phase = torch.remainder(2 * math.pi * bins * HOP / N_FFT * (t + 1) - math.pi * bins, 2 * math.pi).float()
    expected = inverse_stft(torch.polar(magnitude.clamp(min=1e-5), phase), frames).clamp(-1, 1)
    assert torch.allclose(zero, expected, atol=1e-4)
    huge = istft_head(torch.full((1, 2 * 513, 30), 1e4), mel[:, :30])
    assert torch.isfinite(huge).all() and huge.abs().max() <= 1.0


def test_discriminators_cover_every_period_and_three_scales():
    outputs = Discriminators(HiFiGANConfig())(torch.randn(2, 1600))
    assert len(outputs) == len(PERIODS) + 3
    for scores, features in outputs:
        assert scores.shape[0] == 2 and len(features) >= 5


def stub_critic(audio):
    """A 'discriminator' that scores a waveform by its own first samples: D(ones) = 1, D(zeros) = 0."""
    return [(audio[:, :4], [audio[:, :8]]), (audio[:, 4:6], [audio[:, :3], audio[:, 5:9]])]


def test_discriminator_loss_is_zero_when_real_scores_one_and_fake_zero():
    real, fake = torch.ones(3, 16), torch.zeros(3, 16)
    loss, logs = discriminator_loss(stub_critic, real, fake)
    assert loss.item() == 0.0 and logs == {"d_real": 0.0, "d_fake": 0.0}
    # fooled both ways: (1 - 0)^2 + 1^2 = 2 per critic, two critics
    assert discriminator_loss(stub_critic, fake, real)[0].item() == 4.0


def test_generator_loss_is_zero_for_a_perfect_fake_and_weights_its_terms():
    mel_fn = MelSpectrogram()
    real = torch.ones(2, 1600)
    loss, logs = generator_loss(stub_critic, real, real.clone(), mel_fn)
    assert loss.item() == 0.0 and logs == {"g_adv": 0.0, "g_fm": 0.0, "g_mel": 0.0}
    fake = torch.zeros(2, 1600)  # D(fake) = 0: adversarial 2, every feature off by 1: matching 3
    loss, logs = generator_loss(stub_critic, real, fake, mel_fn)
    assert logs["g_adv"] == 2.0 and logs["g_fm"] == 3.0
    assert loss.item() == pytest.approx(2.0 + 2 * 3.0 + 45 * logs["g_mel"], rel=1e-5)


def test_stft_losses_vanish_only_for_identical_audio():
    torch.manual_seed(0)
    real = 0.1 * torch.randn(2, 4000)
    assert multi_resolution_stft_distance(real, real).item() == 0.0
    loss, logs = reconstruction_loss(real, real)
    assert loss.item() == 0.0 and logs == {"stft": 0.0, "g_mel": 0.0}
    loss, logs = reconstruction_loss(real, 0.5 * real)
    assert loss.item() > 0.5  # log-magnitude off by log 2 everywhere
    assert loss.item() == pytest.approx(logs["stft"] + 5 * logs["g_mel"], rel=1e-5)


def test_training_segments_start_on_hop_boundaries():
    audio = torch.arange(4 * 3200, dtype=torch.float32).reshape(4, 3200)
    segments = training_batch(audio, 6, 800, torch.Generator().manual_seed(0))
    assert segments.shape == (6, 800)
    for segment in segments:
        clip, start = divmod(int(segment[0]), 3200)
        assert start % HOP == 0 and torch.equal(segment, audio[clip, start:start + 800])


@pytest.mark.parametrize("frequency", [330.0, 440.0, 2000.0])
def test_griffin_lim_recovers_the_pitch_of_a_tone(frequency):
    n = 64 * HOP
    tone = 0.5 * torch.sin(2 * math.pi * frequency * torch.arange(n) / 16000)
    audio = griffin_lim(MelSpectrogram()(tone[None]))[0]
    assert audio.shape == (n,)
    spectrum = torch.fft.rfft(audio * torch.hann_window(n)).abs()
    peak = spectrum.argmax().item() * 16000 / n
    # the 64 mel bands are about 50 Hz wide below 1 kHz and about 6% of f above: the pitch
    # comes back within a band
    assert abs(peak - frequency) < max(50.0, 0.06 * frequency)


def test_compare_with_griffin_lim_reports_both_numbers_for_both():
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(2, 20 * HOP)
    metrics = compare_with_griffin_lim(HiFiGAN(HiFiGANConfig()).eval(), audio, MelSpectrogram())
    assert set(metrics) == {"vocoder_mel_l1", "vocoder_stft", "griffin_lim_mel_l1", "griffin_lim_stft",
                            "vocoder_pitch_similarity", "griffin_lim_pitch_similarity", "vocoder_x_real_time"}
    assert all(math.isfinite(v) and v > 0 for v in metrics.values())
    assert metrics["vocoder_pitch_similarity"] <= 1 + 1e-6 and metrics["griffin_lim_pitch_similarity"] <= 1 + 1e-6
