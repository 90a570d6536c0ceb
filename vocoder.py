"""HiFi-GAN: the vocoder that turns a log-mel spectrogram back into a waveform.

A log-mel frame summarises 160 samples (10 ms at 16 kHz) by 64 band energies and throws the
phase away, so mel -> waveform is not a formula but a learned guess. HiFi-GAN's generator
makes it with a stack of transposed convolutions that upsample the frame rate by factors
whose product is the hop, 100 frames/s * 160 = 16000 samples/s:

    mel (B, 64, T) -conv_pre-> (B, C, T) -[up x5, MRF]-> (B, C/2, 5T) -[up x4, MRF]-> ... -> (B, 1, 160 T)

After every upsampling a multi-receptive-field fusion (MRF) block averages three ResBlocks
whose dilated convolutions (kernels 3, 7, 11; dilations 1, 3, 5) see short and long spans
of the signal at once: periodic structure (a pitch) needs a wide view, transients a narrow
one. Leaky ReLUs in between, tanh at the end keeps samples in [-1, 1]. Every conv is
weight-normalised, w = g v / ||v||, which steadies GAN training; at inference the
reparametrisation is folded back into plain weights (`remove_weight_norm`).

The iSTFT head (the default here). iSTFTNet cut HiFi-GAN's last upsampling stages and let an
inverse STFT make the samples; we cut them all: every layer runs at the mel's own frame rate,
and conv_post writes, for each of the 513 bins of the STFT the mel was computed from, a
log-magnitude correction a and a phase advance b (`istft_head`):

    |S| = mel_to_linear(mel) * exp(a)                    (Griffin-Lim's least-squares start, corrected)
    phase[k, t] = cumsum_t (2 pi f[k, t] hop / n_fft) - pi k     (GANSynth's instantaneous frequency)
    audio = iSTFT(|S| e^{i phase})

where f[k, t], in bins, is the frequency of the partial that bin k belongs to. Either the net
says it (f = k + 3.2 tanh(b), "free"), or the magnitude does (`vocoder_phase_model`
"from_magnitude"): a Hann window's lobe is nearly a parabola in log-magnitude, so the slope of
log|S| across bins points from every bin of a lobe to its peak, f = k + slope / curvature, and b
only corrects it by up to a bin. Then a generator that puts a harmonic's magnitude on the right
frequency has its phase turning at that frequency too, and the note is in tune.

Why: at a CPU's budget the waveform head must learn to make every partial's oscillation from
scratch, and its notes come out too quiet (energy cancelled by phases that drift). The running
sum of phase advances makes frames agree by construction, and the least-squares magnitude
starts the net where Griffin-Lim starts, so it only has to learn what Griffin-Lim cannot:
sharper partials and phases. At the frame rate it is also cheap (docs/RESULTS.md, "Vocoder").
Its pitch is judged by `pitch.py` (docs/RESULTS.md, "A vocoder that keeps pitch").
`HiFiGANConfig.waveform()` keeps the original head.

An L1 loss alone gives muffled, buzzy audio: many waveforms share a mel, and their average
is none of them. So two families of discriminators judge realism:

  * multi-period (MPD): reshape the waveform (N,) into (N/p, p) for p = 2, 3, 5, 7, 11 and run
    2-D convs down the columns, each of which sees every p-th sample: periodic patterns;
  * multi-scale (MSD): 1-D convs on the raw waveform and on 2x and 4x average-pooled copies:
    structure at several time scales.

Training is a least-squares GAN with the HiFi-GAN weights:

    L_D = sum_k E[(D_k(x) - 1)^2] + E[D_k(G(s))^2]
    L_G = sum_k E[(D_k(G(s)) - 1)^2] + 2 * sum_k,l |D_k^l(x) - D_k^l(G(s))|_1 + 45 * |mel(x) - mel(G(s))|_1

where D_k^l are the intermediate feature maps of discriminator k (feature matching). GAN
steps are expensive on a CPU (the discriminators work on every sample), so we first warm the
generator up without discriminators on a multi-resolution STFT loss (spectral convergence +
log-magnitude L1 at three FFT sizes) plus 5x the mel L1, plus (`--tiny`: 3x) a phase-advance
loss that asks every bin to turn at the real audio's rate (`phase_advance_loss`: the notes'
exact pitch, which none of the magnitudes pins down); that does most of the work of matching
the real audio; the GAN phase, where a schedule has one, is for the rest.

Two details matter for a small, briefly trained generator: the log-mel input is mapped
affinely from [-11.5, 2] to about [-1, 1] before `conv_pre` (a well-conditioned first layer),
and the convolutions keep PyTorch's default initialisation (the paper's N(0, 0.01) start
learns more slowly).

`audio.griffin_lim` is the classic baseline without learning: undo the mel filterbank by least
squares to get a linear magnitude, then alternate between the time and frequency domains,
keeping the magnitude and letting the phase settle (Griffin & Lim, 1984; with the "fast"
momentum of Perraudin et al., 2013).

The training recipe (what `train.py`'s vocoder stage runs each step): `training_batch` (audio
crops), then `reconstruction_loss` during the warm-up, and `discriminator_loss` followed by
`generator_loss` in the GAN phase.

References
- Kong, Kim, Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity
  Speech Synthesis", arXiv 2010.05646
- Kaneko, Tanaka, Kameoka, Seki, "iSTFTNet: Fast and Lightweight Mel-Spectrogram Vocoder
  Incorporating Inverse Short-Time Fourier Transform", arXiv 2203.02395; Siuzdak, "Vocos",
  arXiv 2306.00814 (an iSTFT head at the frame rate)
- Engel et al., "GANSynth: Adversarial Neural Audio Synthesis" (instantaneous frequency),
  arXiv 1902.08710
- Průša, Balazs, Søndergaard, "A Noniterative Method for Reconstruction of Phase From STFT
  Magnitude", IEEE/ACM TASLP 25(5), 2017 (phase gradient from the magnitude's slope); Smith &
  Serra, "PARSHL", ICMC 1987 (a spectral peak's frequency from a parabola through log-magnitudes)
- Yamamoto, Song, Kim, "Parallel WaveGAN" (multi-resolution STFT loss), arXiv 1910.11480
- Mao et al., "Least Squares Generative Adversarial Networks", arXiv 1611.04076
- Salimans & Kingma, "Weight Normalization", arXiv 1602.07868
- Griffin & Lim, "Signal Estimation from Modified Short-Time Fourier Transform", IEEE Trans.
  ASSP 32(2), 1984; Perraudin, Balazs, Søndergaard, "A Fast Griffin-Lim Algorithm", WASPAA 2013
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

import pitch
from audio import (HOP, N_FFT, N_MELS, SAMPLE_RATE, griffin_lim, inverse_stft, mel_analyser, mel_to_linear,
                   normalise_log_mel)

LRELU_SLOPE = 0.1
PERIODS = (2, 3, 5, 7, 11)
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the multi-resolution loss
FINE_RESOLUTION = (4096, 1024)  # 3.9 Hz bins: finer than a semitone from 100 Hz up (the pitch judge's STFT)
STFT_BINS = N_FFT // 2 + 1  # 513 frequencies of the mel's own STFT
MAGNITUDE_FLOOR = 1e-5      # the log-mel's floor, as a linear magnitude


HEADS = ("istft", "waveform")  # what conv_post writes: a spectrogram to invert, or the samples themselves
# how the iSTFT head turns its bins: the net says each advance ("free"), or the magnitude's slope across
# bins says where each partial is and the net corrects it ("from_magnitude")
PHASE_MODELS = ("free", "from_magnitude", "hann_ratio")
HANN_LOBE_CURVATURE = 2 * (math.pi ** 2 / 6 - 1)  # -d^2/dk^2 of log|W(k)| at a Hann lobe's peak, k in bins


@dataclass
class HiFiGANConfig:
    """The default is the tiny CPU vocoder (iSTFT head, every layer at the mel's frame rate);
    `HiFiGANConfig.waveform()` is the original HiFi-GAN at the same size and
    `HiFiGANConfig.audioldm2()` the paper-sized one. With the iSTFT head the "upsampling" rates
    multiply to 1 (rate-1 stages are plain convolutions): the inverse STFT does all 160x."""
    initial_channels: int = 128           # width after conv_pre; halves after every (up)sampling stage
    upsample_rates: tuple = (1, 1)        # must multiply to the hop, 160 (waveform head) or to 1 (istft head)
    upsample_kernel_sizes: tuple = (3, 3)
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilations: tuple = (1, 3, 5)
    disc_channels: tuple = (16, 32, 64, 128)  # discriminator widths (the paper: 32, 128, 512, 1024)
    head: str = "istft"
    phase: str = "free"                   # the iSTFT head's phase model, one of PHASE_MODELS

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"HiFiGANConfig: head {self.head!r} is not one of {', '.join(HEADS)}")
        if self.phase not in PHASE_MODELS:
            raise ValueError(f"HiFiGANConfig: phase {self.phase!r} is not one of {', '.join(PHASE_MODELS)}")
        if self.head == "waveform" and self.phase != "free":
            raise ValueError("HiFiGANConfig: only the istft head has a phase model; the waveform head makes samples")
        needed = HOP if self.head == "waveform" else 1
        if math.prod(self.upsample_rates) != needed:
            reason = "one mel frame is 160 samples" if needed == HOP else "the iSTFT head makes the 160x itself"
            raise ValueError(f"HiFiGANConfig: upsample_rates {tuple(self.upsample_rates)} multiply to "
                             f"{math.prod(self.upsample_rates)}, but the {self.head} head needs {needed} ({reason})")
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise ValueError("HiFiGANConfig: give one upsample kernel size per upsample rate")
        if any(k < r for k, r in zip(self.upsample_kernel_sizes, self.upsample_rates)):
            raise ValueError("HiFiGANConfig: each upsample kernel must be at least as long as its rate")
        if self.initial_channels % 2 ** len(self.upsample_rates):
            raise ValueError(f"HiFiGANConfig: initial_channels {self.initial_channels} must halve "
                             f"{len(self.upsample_rates)} times")

    @classmethod
    def for_head(cls, head, phase="free", channels=128):
        """The tiny vocoder with either head ("istft": the default config with the given phase model
        and `channels` after conv_pre; "waveform": `waveform()`)."""
        if head == "waveform":
            return cls.waveform()
        return cls(head=head, phase=phase, initial_channels=channels)

    @classmethod
    def waveform(cls):
        """The original HiFi-GAN generator, CPU-sized: four transposed convolutions, 5 x 4 x 4 x 2 = 160."""
        return cls(initial_channels=64, upsample_rates=(5, 4, 4, 2), upsample_kernel_sizes=(10, 8, 8, 4),
                   head="waveform")

    @classmethod
    def audioldm2(cls):
        """The 16 kHz HiFi-GAN of AudioLDM / AudioLDM2 (about 55 M generator parameters)."""
        return cls(initial_channels=1024, upsample_rates=(5, 4, 2, 2, 2), upsample_kernel_sizes=(16, 16, 8, 4, 4),
                   disc_channels=(32, 128, 512, 1024), head="waveform")


def same_conv1d(c_in, c_out, kernel, dilation=1):
    """A weight-normalised Conv1d whose output is as long as its input."""
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))


# ----------------------------------------------------------------------------- generator

class ResBlock(nn.Module):
    """For each dilation d: x += conv_1(lrelu(conv_d(lrelu(x)))), with one kernel size throughout."""

    def __init__(self, channels, kernel, dilations):
        super().__init__()
        self.dilated = nn.ModuleList([same_conv1d(channels, channels, kernel, dilation=d) for d in dilations])
        self.plain = nn.ModuleList([same_conv1d(channels, channels, kernel) for _ in dilations])

    def forward(self, x):
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGAN(nn.Module):
    """The generator: (B, T, 64) log-mel -> (B, 160 T) waveform in [-1, 1]."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c = config.initial_channels
        self.conv_pre = same_conv1d(N_MELS, c, 7)
        self.ups, self.mrfs = nn.ModuleList(), nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            # padding ceil((k - r) / 2) trims the overhang and output_padding puts back the odd sample,
            # so every stage multiplies the length by exactly `rate`
            pad = (kernel - rate + 1) // 2
            up = nn.ConvTranspose1d(c >> i, c >> (i + 1), kernel, rate, pad, output_padding=2 * pad - (kernel - rate))
            self.ups.append(weight_norm(up))
            self.mrfs.append(nn.ModuleList([ResBlock(c >> (i + 1), k, config.resblock_dilations)
                                            for k in config.resblock_kernel_sizes]))
        # the waveform head writes one sample per position; the iSTFT head, per frame, a log-magnitude
        # correction and a phase advance for each of the STFT's 513 frequency bins
        self.conv_post = same_conv1d(c >> len(config.upsample_rates), 2 * STFT_BINS if config.head == "istft" else 1, 7)

    def head_input(self, mel):
        """(B, T, 64) log-mel -> conv_post's output: (B, 1, 160 T) samples before the tanh, or the
        iSTFT head's (B, 2 * 513, T) log-magnitude corrections a and phase corrections b."""
        if mel.dim() != 3 or mel.shape[-1] != N_MELS:
            raise ValueError(f"HiFiGAN expects log-mel of shape (batch, frames, {N_MELS}), got {tuple(mel.shape)}")
        x = self.conv_pre(normalise_log_mel(mel).transpose(1, 2))
        for up, mrf in zip(self.ups, self.mrfs):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(block(x) for block in mrf) / len(mrf)
        # the final leaky ReLU keeps PyTorch's default slope, as in the original HiFi-GAN
        return self.conv_post(F.leaky_relu(x))

    def forward(self, mel):
        x = self.head_input(mel)
        if self.config.head == "waveform":
            return torch.tanh(x).squeeze(1)
        return istft_head(x, mel, self.config.phase)

    def remove_weight_norm(self):
        """Fold g v / ||v|| into a plain weight (same outputs, faster inference); returns self."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        return self


def head_log_magnitude(correction, mel):
    """The iSTFT head's log|S| (B, 513, T): the log-mel's least-squares magnitude times exp(a), the
    net's correction, capped at log 512 (a 1024-sample Hann frame can hold no more)."""
    least_squares = mel_to_linear(mel).transpose(1, 2).clamp(min=MAGNITUDE_FLOOR).log()
    return (least_squares + correction).clamp(max=math.log(N_FFT / 2))


def istft_head(x, mel, phase_model="free"):
    """The iSTFT head: conv_post's (B, 2 * 513, T) and the log-mel (B, T, 64) -> (B, 160 T) audio.

    It fills in the STFT that the mel was computed from (n_fft 1024, hop 160: one frame per mel
    frame) and inverts it. Magnitude: the least-squares magnitude of `mel_to_linear` (what
    Griffin-Lim starts from) times exp(a), so the net only learns a correction, such as sharper
    harmonics. Phase: each bin's phase advance over one hop, as GANSynth generates it (the
    instantaneous frequency times the hop). A steady partial of angular frequency w advances
    every bin near it by w * hop, and torch.stft's frame-start phase reference adds -pi k at bin
    k, so with the partial's frequency f[k, t] in bins

        phase[k, t] = cumsum_t (2 pi f[k, t] hop / n_fft) - pi k

    "free": the second half of conv_post, b, says how far each bin is from its partial,
    f = k + (n_fft / 2 pi hop) pi tanh(b), up to 3.2 bins either way. "from_magnitude": the
    magnitude already says where its partials are. Near its peak k0 the Hann window's lobe is a
    parabola in log-magnitude, log|W(k - k0)| ~ c - HANN_LOBE_CURVATURE (k - k0)^2 / 2 (from
    |W(d)| ~ sinc(d) / (1 - d^2)), so the slope across bins points at the peak from every bin of
    the lobe:

        f = k + clamp(slope_k(log|S|) / HANN_LOBE_CURVATURE, -2, 2) + tanh(b)

    with tanh(b) the net's correction, up to a bin either way: a net that puts a harmonic's peak on
    the right frequency gets its phase right with it. The running sum keeps consecutive frames in
    phase, which a conv net cannot do over a whole clip by itself. The log-magnitude is capped
    (`head_log_magnitude`: an untrained net's exp() must not overflow). None of it runs in bf16,
    under autocast either: a running sum of phases must not round."""
    x, mel = x.float(), mel.float()
    with torch.autocast(x.device.type, enabled=False):
        log_magnitude = head_log_magnitude(x[:, :STFT_BINS], mel)
        # the phase in float64 (Apple's MPS has none: float32 there), then wrapped: bin 512 gains 500 rad
        # a frame, and a float32 sum over a few hundred frames is already 0.02 rad off
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        bins = torch.arange(STFT_BINS, device=x.device, dtype=wide)[:, None]
        correction = torch.tanh(x[:, STFT_BINS:]).to(wide)
        if phase_model == "free":
            advance = 2 * math.pi * bins * HOP / N_FFT + math.pi * correction
        else:
            offset = partial_offset(log_magnitude, phase_model).to(wide) + correction  # in bins
            advance = 2 * math.pi * (bins + offset) * HOP / N_FFT
        phase = torch.remainder(advance.cumsum(dim=-1) - math.pi * bins, 2 * math.pi).float()
        return inverse_stft(torch.polar(log_magnitude.exp(), phase), mel.shape[1]).clamp(-1.0, 1.0)


def partial_offset(log_magnitude, phase_model):
    """(B, 513, T) log|S| -> how far each bin lies from the partial whose lobe it is on, in bins."""
    if phase_model == "from_magnitude":
        slope = F.pad((log_magnitude[:, 2:] - log_magnitude[:, :-2]) / 2, (0, 0, 1, 1))
        return (slope / HANN_LOBE_CURVATURE).clamp(-2.0, 2.0)
    # hann_ratio: on a Hann lobe |W(d - 1)| / |W(d)| = (1 + d) / (2 - d) exactly for 0 < d < 2, so the
    # louder neighbour's ratio says the distance; no gradient (it would bend the magnitude to suit it)
    level = F.pad(log_magnitude.detach().transpose(1, 2), (1, 1), mode="reflect").transpose(1, 2)
    left, here, right = level[:, :-2], level[:, 1:-1], level[:, 2:]
    towards_right = right >= left
    distance = (2 - 3 * torch.sigmoid(here - torch.maximum(left, right))).clamp(0.0, 2.0)
    return torch.where(towards_right, distance, -distance)


# ----------------------------------------------------------------------------- discriminators

def fold_by_period(audio, period):
    """(B, N) -> (B, 1, ceil(N / p), p): row r holds x[r p], ..., x[r p + p - 1], so column j is the
    sub-sequence x[j], x[j + p], x[j + 2p], ... (the end reflect-padded to a whole row)."""
    extra = -audio.shape[-1] % period
    x = F.pad(audio.unsqueeze(1), (0, extra), mode="reflect")
    return x.view(x.shape[0], 1, -1, period)


class PeriodDiscriminator(nn.Module):
    """Folds (B, N) into (B, 1, N/p, p) and convolves along the first axis only, so each of the
    p columns is the sub-sequence x[j], x[j+p], x[j+2p], ...: it judges period-p structure."""

    def __init__(self, period, channels):
        super().__init__()
        self.period = period
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            [weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0))) for a, b in zip(widths, widths[1:])]
            + [weight_norm(nn.Conv2d(channels[-1], channels[-1], (5, 1), padding=(2, 0)))])
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio):
        x = fold_by_period(audio, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        return self.conv_post(x).flatten(1), features


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convs with wide kernels on the waveform (or a pooled copy of it)."""

    def __init__(self, channels):
        super().__init__()
        c = channels
        # (in, out, kernel, stride, groups): the HiFi-GAN layout with our widths
        layout = [(1, c[0], 15, 1, 1), (c[0], c[0], 41, 2, 4), (c[0], c[1], 41, 2, 4), (c[1], c[2], 41, 4, 4),
                  (c[2], c[3], 41, 4, 4), (c[3], c[3], 41, 1, 4), (c[3], c[3], 5, 1, 1)]
        self.convs = nn.ModuleList([weight_norm(nn.Conv1d(a, b, k, s, padding=k // 2, groups=g))
                                    for a, b, k, s, g in layout])
        self.conv_post = weight_norm(nn.Conv1d(c[3], 1, 3, padding=1))

    def forward(self, audio):
        x, features = audio.unsqueeze(1), []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        return self.conv_post(x).flatten(1), features


class Discriminators(nn.Module):
    """All eight critics: five period discriminators and three scale discriminators (1x, 2x, 4x
    average-pooled). forward(audio (B, N)) -> list of (scores (B, ...), [feature maps])."""

    def __init__(self, config):
        super().__init__()
        self.periods = nn.ModuleList([PeriodDiscriminator(p, config.disc_channels) for p in PERIODS])
        self.scales = nn.ModuleList([ScaleDiscriminator(config.disc_channels) for _ in range(3)])
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, audio):
        outputs = [d(audio) for d in self.periods]
        for i, d in enumerate(self.scales):
            if i > 0:
                audio = self.pool(audio.unsqueeze(1)).squeeze(1)
            outputs.append(d(audio))
        return outputs


# ----------------------------------------------------------------------------- losses

def discriminator_loss(disc, real, fake):
    """Least squares: push D(real) to 1 and D(fake) to 0. `fake` is detached: only D learns here."""
    real_scores = [score for score, _ in disc(real)]
    fake_scores = [score for score, _ in disc(fake.detach())]
    on_real = sum(((1 - s) ** 2).mean() for s in real_scores)
    on_fake = sum((s ** 2).mean() for s in fake_scores)
    return on_real + on_fake, {"d_real": on_real.item(), "d_fake": on_fake.item()}


def generator_loss(disc, real, fake, mel_fn):
    """HiFi-GAN's generator objective: LSGAN (D(fake) -> 1) + 2 * feature matching + 45 * mel L1."""
    with torch.no_grad():
        real_features = [features for _, features in disc(real)]
    fake_outputs = disc(fake)
    adversarial = sum(((1 - score) ** 2).mean() for score, _ in fake_outputs)
    matching = sum((r - f).abs().mean() for reals, (_, fakes) in zip(real_features, fake_outputs)
                   for r, f in zip(reals, fakes))
    mel = (mel_fn(fake) - mel_fn(real)).abs().mean()
    loss = adversarial + 2 * matching + 45 * mel
    return loss, {"g_adv": adversarial.item(), "g_fm": matching.item(), "g_mel": mel.item()}


def stft_magnitude(audio, n_fft, hop):
    spec = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft, device=audio.device), return_complex=True)
    # clamp before the square root: the gradient of sqrt at 0 is infinite
    return (spec.real ** 2 + spec.imag ** 2).clamp(min=1e-10).sqrt()


def multi_resolution_stft_distance(real, fake, resolutions=STFT_RESOLUTIONS):
    """Mean over FFT sizes (three by default) of spectral convergence ||S - S^||_F / ||S||_F plus the
    mean |log S - log S^|: the first weighs loud partials, the second quiet detail."""
    total = 0.0
    for n_fft, hop in resolutions:
        s_real, s_fake = stft_magnitude(real, n_fft, hop), stft_magnitude(fake, n_fft, hop)
        convergence = torch.linalg.vector_norm(s_real - s_fake) / torch.linalg.vector_norm(s_real)
        total = total + convergence + (s_real.log() - s_fake.log()).abs().mean()
    return total / len(resolutions)


def phase_advance_loss(real, fake):
    """How far the fake's partials are from the real ones' frequencies. Over one hop a partial of
    frequency f turns the phase of every STFT bin near it by 2 pi f hop / rate, so the phase
    advance of a bin is its instantaneous frequency; with z_t = S_t conj(S_{t-1}) (angle: the
    advance) the loss is the magnitude-weighted mean of 1 - cos(advance_real - advance_fake):
    0 when every audible bin turns at the real rate, whatever the absolute phase. A semitone off
    at 330 Hz turns 1.2 rad a hop too far or too short."""
    window = torch.hann_window(N_FFT, device=real.device)
    advance = lambda x: (lambda s: s[..., 1:] * s[..., :-1].conj())(
        torch.stft(x, N_FFT, HOP, window=window, return_complex=True))
    a_real, a_fake = advance(real), advance(fake)
    weight = a_real.abs().sqrt()  # the real magnitude: loud partials count, silent bins do not
    agreement = (a_real * a_fake.conj()).real / (a_real.abs() * a_fake.abs()).clamp(min=1e-8)
    return 1 - (weight * agreement).sum() / weight.sum().clamp(min=1e-8)


def reconstruction_loss(real, fake, mel_weight=5.0, phase_weight=0.0, fine=False):
    """The GAN-free objective: multi-resolution STFT distance (with `fine`, also at FINE_RESOLUTION) +
    mel_weight * log-mel L1 (+ phase_weight * phase_advance_loss, which keeps the notes in tune).
    Returns (loss, logs), like the GAN losses."""
    mel_fn = mel_analyser(real.device)
    resolutions = STFT_RESOLUTIONS + (FINE_RESOLUTION,) * fine
    stft, mel = multi_resolution_stft_distance(real, fake, resolutions), (mel_fn(fake) - mel_fn(real)).abs().mean()
    logs = {"stft": stft.item(), "g_mel": mel.item()}
    loss = stft + mel_weight * mel
    if phase_weight:
        phase = phase_advance_loss(real, fake)
        loss, logs["phase"] = loss + phase_weight * phase, phase.item()
    return loss, logs


# ----------------------------------------------------------------------------- evaluation and the training batch

@torch.no_grad()
def waveform_distances(real, fake, mel_fn):
    """How far a vocoded waveform is from the real one: log-mel L1 of its re-analysis against
    the input mel, and the multi-resolution STFT distance to the real audio."""
    return {"mel_l1": (mel_fn(fake) - mel_fn(real)).abs().mean().item(),
            "stft": multi_resolution_stft_distance(real, fake).item()}


@torch.no_grad()
def compare_with_griffin_lim(vocoder, audio, mel_fn, batch_size=16):
    """Vocoder vs Griffin-Lim on held-out clips (N, samples): the two distances, and how well each
    keeps the clips' pitch classes (pitch.py's chroma similarity to the real audio, which needs no
    key, so a user's folder gets it too); plus the vocoder's speed as a multiple of real time.
    Returns a flat dict of floats."""
    mels = [mel_fn(a) for a in audio.split(batch_size)]
    start = time.perf_counter()
    vocoded = torch.cat([vocoder(m) for m in mels])
    x_real_time = audio.numel() / SAMPLE_RATE / (time.perf_counter() - start)
    baseline = torch.cat([griffin_lim(m) for m in mels])
    clips = audio[:, :vocoded.shape[1]]
    ours, theirs = waveform_distances(clips, vocoded, mel_fn), waveform_distances(clips, baseline, mel_fn)
    source = pitch.chroma(clips)
    ours["pitch_similarity"] = pitch.similarity(pitch.chroma(vocoded), source).mean().item()
    theirs["pitch_similarity"] = pitch.similarity(pitch.chroma(baseline), source).mean().item()
    return {**{f"vocoder_{k}": v for k, v in ours.items()}, **{f"griffin_lim_{k}": v for k, v in theirs.items()},
            "vocoder_x_real_time": x_real_time}


def training_batch(audio, batch_size, segment, generator=None):
    """One step's batch: `batch_size` windows of `segment` samples from random clips of audio
    (N, samples), each starting on a hop boundary so its mel frames line up with the clip's.
    The vocoder stage of train.py computes their log-mels, then takes reconstruction_loss
    steps (the warm-up) or discriminator_loss and generator_loss steps (the GAN)."""
    clip = torch.randint(len(audio), (batch_size,), generator=generator)
    hops = (audio.shape[1] - segment) // HOP
    start = torch.randint(hops + 1, (batch_size,), generator=generator) * HOP
    return audio[clip[:, None], start[:, None] + torch.arange(segment)]
