"""A compact KL-VAE that turns log-mel "images" into the small latent grid FluxMusic generates.

The flow transformer never sees a spectrogram. It works on a latent that is 4x smaller in
time and in frequency, with 8 channels:

    mel (B, T, 64)  --as an image-->  x (B, 1, T, 64)  --encoder-->  (mu, log sigma^2) (B, 8, T/4, 16)
    z = mu + sigma * eps,  eps ~ N(0, I)                              (the reparameterisation trick)
    x_hat = decoder(z)  (B, 1, T, 64)

Both halves are stacks of ResNet blocks (GroupNorm -> SiLU -> 3x3 conv, twice, plus a skip)
with two stride-2 downsamplings in the encoder and two nearest-neighbour upsamplings in the
decoder, mirror images of each other, with a "mid" block at the latent resolution. The
encoder outputs a diagonal Gaussian q(z | x) = N(mu, diag sigma^2) per latent element.

Training minimises, per clip,

    loss = mean |x_hat - x|  +  beta * mean KL( N(mu, sigma^2) || N(0, 1) )
    KL   = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)                (closed form, per latent element)

The L1 is measured in log-mel units (nats of magnitude), the same number we report as the
reconstruction error. beta is small, 1e-3 per latent element (VAEConfig.kl_weight), and that
is a balance. With beta = 1 (a "proper" VAE) the reconstructions blur into uselessness. With
beta -> 0 (a plain autoencoder) nothing stops the encoder from shrinking sigma towards 0: the
decoder then only ever sees exact points, and latents a little off those points (which is all a generative model can
produce) decode to anything. With beta = 1e-3, sigma settles at about 1% of the latents'
spread (log sigma^2 ~ -9): the decoder learns to map a small neighbourhood of each latent to
the same mel, a smooth space, at little cost in reconstruction (docs/RESULTS.md, "VAE").

The latent the flow sees must have unit variance, because the flow interpolates it with
N(0, I) noise: z_t = (1 - t) x0 + t eps. After training we measure the spread of the
posterior means over training clips and store scale_factor = 1 / std as a buffer (so it is
saved with the weights). `encode` returns mu * scale_factor, `decode` divides it back out.

The log-mel input spans about [-11.5 (silence), 2]; it is mapped affinely to about [-1, 1]
inside the model so every layer starts well conditioned, and mapped back on the way out.

The training recipe (what `train.py`'s vae stage runs each step) is at the end of the file:
`training_batch` (random crops and posterior noise), then `VAE.loss`.

References
- Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv 1312.6114
- Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (the KL-VAE with a
  small KL weight, the latent scale factor), arXiv 2112.10752
- Liu et al., "AudioLDM: Text-to-Audio Generation with Latent Diffusion Models" (a VAE on mel
  images), arXiv 2301.12503; AudioLDM 2, arXiv 2308.05734 (the VAE FluxMusic uses)
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from audio import MEL_CENTRE, MEL_HALF_RANGE, N_MELS, normalise_log_mel



@dataclass
class VAEConfig:
    channels: tuple = (16, 32, 64)  # width at full, 1/2 and 1/4 resolution; each step down halves T and 64
    blocks_per_level: int = 1       # ResNet blocks at each resolution (encoder and decoder alike)
    latent_channels: int = 8
    groups: int = 8                 # GroupNorm groups; must divide every width
    kl_weight: float = 1e-3         # beta: mean KL per latent element vs mean L1 per mel bin

    def __post_init__(self):
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"VAEConfig: every width in channels={self.channels} must be divisible "
                             f"by groups={self.groups}")
        if N_MELS % self.downsample:
            raise ValueError(f"VAEConfig: {len(self.channels) - 1} halvings do not divide {N_MELS} mel bins")

    @property
    def downsample(self):
        return 2 ** (len(self.channels) - 1)


def kl_divergence(mean, logvar):
    """Mean over elements of KL(N(mean, e^logvar) || N(0, 1)), in nats per element."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def sample_posterior(mean, logvar, noise=None):
    """The reparameterisation trick: z = mean + sigma * noise, differentiable in mean and logvar."""
    noise = torch.randn_like(mean) if noise is None else noise
    return mean + (0.5 * logvar).exp() * noise


class ResBlock(nn.Module):
    """x + conv(SiLU(GroupNorm(conv(SiLU(GroupNorm(x)))))): the width never changes inside a block."""

    def __init__(self, width, groups):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, width), nn.Conv2d(width, width, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, width), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def res_blocks(width, n_blocks, groups):
    return nn.Sequential(*[ResBlock(width, groups) for _ in range(n_blocks)])


class Encoder(nn.Module):
    """(B, 1, T, 64) -> (B, 2 * latent_channels, T/4, 16): mean and log-variance stacked."""

    def __init__(self, cfg):
        super().__init__()
        c = cfg.channels
        self.conv_in = nn.Conv2d(1, c[0], 3, padding=1)
        layers = []
        for i, width in enumerate(c):
            layers.append(res_blocks(width, cfg.blocks_per_level, cfg.groups))
            if i < len(c) - 1:  # a stride-2 conv halves time and frequency and sets the next width
                layers.append(nn.Conv2d(width, c[i + 1], 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(c[-1], cfg.groups)
        self.norm_out = nn.GroupNorm(cfg.groups, c[-1])
        self.conv_out = nn.Conv2d(c[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, latent_channels, T/4, 16) -> (B, 1, T, 64): the encoder's mirror image."""

    def __init__(self, cfg):
        super().__init__()
        c = cfg.channels[::-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, c[0], 3, padding=1)
        self.mid = ResBlock(c[0], cfg.groups)
        layers = []
        for i, width in enumerate(c):
            layers.append(res_blocks(width, cfg.blocks_per_level, cfg.groups))
            if i < len(c) - 1:
                # nearest-neighbour then a conv: avoids the checkerboard a transposed conv can paint
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, c[i + 1], 3, padding=1)]
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(cfg.groups, c[-1])
        self.conv_out = nn.Conv2d(c[-1], 1, 3, padding=1)

    def forward(self, z):
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    """The whole VAE: `encode` (log-mel -> scaled latent the flow model sees), `decode` (back),
    and `loss` (the training objective on a batch of log-mels).

        mel (B, T, 64) --encode--> latent (B, 8, T/4, 16), unit variance --decode--> mel (B, T, 64)
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = Encoder(config), Decoder(config)
        # 1 / std of the training latents; 1.0 until measure_scale_factor() is called
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def check_mel(self, mel):
        if mel.dim() != 3 or mel.shape[-1] != N_MELS:
            raise ValueError(f"VAE expects log-mel of shape (batch, frames, {N_MELS}), got {tuple(mel.shape)}")
        if mel.shape[1] % self.config.downsample:
            raise ValueError(f"VAE needs a frame count divisible by {self.config.downsample}, got "
                             f"{mel.shape[1]}; crop or pad the clip to a multiple of {self.config.downsample}")

    def posterior(self, mel):
        """(B, T, 64) log-mel -> unscaled (mean, logvar), each (B, C, T/4, 16)."""
        self.check_mel(mel)
        x = normalise_log_mel(mel).unsqueeze(1)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def decode_unscaled(self, z):
        return self.decoder(z).squeeze(1) * MEL_HALF_RANGE + MEL_CENTRE  # the inverse of normalise_log_mel

    def encode(self, mel, sample=False):
        """(B, T, 64) log-mel -> (B, C, T/4, 16) latent with unit variance (times scale_factor).
        The posterior mean by default (deterministic); a draw from q(z | x) with sample=True."""
        mean, logvar = self.posterior(mel)
        z = sample_posterior(mean, logvar) if sample else mean
        return z * self.scale_factor

    def decode(self, latent):
        """(B, C, T/4, 16) scaled latent -> (B, T, 64) log-mel in real units."""
        c, f = self.config.latent_channels, N_MELS // self.config.downsample
        if latent.dim() != 4 or latent.shape[1] != c or latent.shape[3] != f:
            raise ValueError(f"VAE.decode expects a latent of shape (batch, {c}, frames/"
                             f"{self.config.downsample}, {f}), got {tuple(latent.shape)}")
        return self.decode_unscaled(latent / self.scale_factor)

    def loss(self, mel, noise=None):
        """(loss, logs) for a batch of log-mels: L1 reconstruction + kl_weight * KL.
        `noise` (shaped like the latent) fixes the posterior draw; default: fresh N(0, I)."""
        mean, logvar = self.posterior(mel)
        z = sample_posterior(mean, logvar, noise)
        l1 = (self.decode_unscaled(z) - mel).abs().mean()
        kl = kl_divergence(mean, logvar)
        return l1 + self.config.kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def measure_scale_factor(self, mels, batch_size=32):
        """Set scale_factor = 1 / std of the (unscaled) posterior means over `mels`; returns it."""
        means = torch.cat([self.posterior(m)[0] for m in mels.split(batch_size)])
        self.scale_factor.fill_(1.0 / means.std().item())
        return self.scale_factor.item()


# ----------------------------------------------------------------------------- the training recipe
# What the VAE stage of train.py does each step: training_batch -> VAE.loss -> AdamW.

def random_crops(mels, batch_size, frames, generator=None):
    """batch_size random windows of `frames` frames from random clips of mels (N, T, 64).
    The VAE is convolutional, so short crops teach it as well as whole clips, for less compute."""
    clip = torch.randint(len(mels), (batch_size,), generator=generator)
    start = torch.randint(mels.shape[1] - frames + 1, (batch_size,), generator=generator)
    offsets = start[:, None] + torch.arange(frames)
    return mels[clip[:, None], offsets]


def training_batch(mels, batch_size, frames, config, generator=None):
    """One step's batch: random crops (B, frames, 64) and the N(0, I) noise (B, C, frames/4, 16)
    that draws z from the posterior. Both come from `generator`, so the step is reproducible
    (and under data parallelism each process can take its rows of one global draw)."""
    crops = random_crops(mels, batch_size, frames, generator)
    noise = torch.randn(batch_size, config.latent_channels, frames // config.downsample,
                        N_MELS // config.downsample, generator=generator)
    return crops, noise


@torch.no_grad()
def reconstruction_l1(vae, mels, batch_size=16):
    """Mean |decode(encode(mel)) - mel| in log-mel units: the held-out metric."""
    errors = [(vae.decode(vae.encode(m)) - m).abs().mean() * len(m) for m in mels.split(batch_size)]
    return (sum(errors) / len(mels)).item()
