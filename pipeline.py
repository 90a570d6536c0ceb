"""The text-to-music pipeline: five trained parts, one function from caption to waveform.

    caption ─ByteTokenizer─► bytes ─T5Encoder─► c (B, L, d)  ┐
            └──────────────────────CLAP text─► y (B, D)      ┤
    ε ~ N(0, I) (B, 8, T/4, 16) ── Euler/Heun on v_θ(z, t, y, c), t: 1 → 0, with CFG ─► x0
    x0 ─VAE.decode─► log-mel (B, T, 64) ─HiFi-GAN─► waveform (B, 160·T)

Classifier-free guidance runs each step twice, once with the caption and once with the
empty caption "" (the prompt the flow model saw for the 10% of training captions that
were dropped), and extrapolates: v = v("") + w·(v(caption) − v("")). A negative prompt
simply takes the place of "" in that formula, steering away from its description.

Each part lives in its own checkpoint under the run directory, written by `train.py`:
vae.pt, vocoder.pt, clap.pt, t5.pt, flow.pt. Every checkpoint stores the config it was
trained with, so the models are rebuilt exactly, whatever preset made them.

References
- Fei et al., "FLUX that Plays Music" (FluxMusic), arXiv 2409.00587
- Ho & Salimans, "Classifier-Free Diffusion Guidance", arXiv 2207.12598
"""

import torch

import flow
from audio import FRAMES_PER_SECOND, HOP, N_MELS, SAMPLE_RATE, griffin_lim
from common import CheckpointError, autocast, load_checkpoint, precision_for, stage_path, train_command
from data import CLIP_SECONDS
from model import PATCH, FluxMusic, FluxMusicConfig
from text import CLAP, ByteTokenizer, CLAPConfig, T5Config, T5Encoder
from vae import VAE, VAEConfig
from vocoder import HiFiGAN, HiFiGANConfig

# a clip's frame count must survive the VAE's downsampling and then the 2x2 patching: 4 * 2 = 8
FRAMES_MULTIPLE = VAEConfig().downsample * PATCH
MAX_SECONDS = 60  # 6,000 music tokens; the paper's clips are 10 s
DEFAULT_CFG = 4.0  # classifier-free guidance scale: the best of a sweep (docs/RESULTS.md, "Guidance scale")
# sample.py's Euler steps: 25 score as 50 do at half the wait (docs/RESULTS.md, "Samplers and steps");
# evaluate.py keeps 50 so its tables compare across runs
DEFAULT_STEPS = 25
NOISE_SEED_STRIDE = 100_003  # caption i of a call with seed s draws its noise from seed s * stride + i
# Settings that older checkpoints (pretrained/tiny) store and the code has since fixed at this value.
RETIRED_SETTINGS = {"freq_patch": PATCH}
# Each checkpoint's model class and config class, so a checkpoint rebuilds its own model.
MODEL_CLASSES = {"vae": (VAE, VAEConfig), "vocoder": (HiFiGAN, HiFiGANConfig), "clap": (CLAP, CLAPConfig),
                 "t5": (T5Encoder, T5Config), "flow": (FluxMusic, FluxMusicConfig)}


class Pipeline:
    """All five parts on one device, plus the tokenizer; `generate` is text → waveform."""

    def __init__(self, run_dir="runs/tiny", device="cpu", use_vocoder=None, flow_model=None,
                 objective="rectified_flow", log=print, precision="auto"):
        """`flow_model` (trained with `objective`) overrides flow.pt, e.g. with the EMA model while
        it is still training. `use_vocoder`: True, False (Griffin–Lim), or None: the vocoder if it
        beat Griffin–Lim on both held-out distances and on pitch when it was trained
        (`beats_griffin_lim`). `precision`: the networks' forward passes in bf16 autocast or fp32
        ("auto": bf16 where native); Griffin–Lim always runs in fp32."""
        self.run_dir, self.device = run_dir, torch.device(device)
        self.precision = precision_for(precision, self.device)
        self.vae = load_stage(run_dir, "vae", device)
        self.clap = load_stage(run_dir, "clap", device)
        self.t5 = load_stage(run_dir, "t5", device)
        self.trained_seconds, self.objective = CLIP_SECONDS, objective
        if flow_model is None:
            flow_model, checkpoint = load_stage(run_dir, "flow", device, return_checkpoint=True)
            run_config = checkpoint.get("run_config", {})
            self.trained_seconds = run_config.get("seconds", self.trained_seconds)
            self.objective = run_config.get("objective", "rectified_flow")
        self.flow_model = flow_model
        self.vocoder = self.load_vocoder(use_vocoder, log) if use_vocoder is not False else None
        self.tokenizer = ByteTokenizer(self.t5.config.max_length)
        check_compatible(self.flow_model.config, self.t5.config, self.clap.config, run_dir)

    def load_vocoder(self, use_vocoder, log):
        vocoder, checkpoint = load_stage(self.run_dir, "vocoder", self.device, return_checkpoint=True)
        m = checkpoint.get("metrics", {})
        if use_vocoder is None and not beats_griffin_lim(m):
            log(f"note: this run's vocoder did not beat Griffin–Lim on held-out clips (log-mel L1 "
                f"{m.get('vocoder_mel_l1', float('nan')):.3f} vs {m.get('griffin_lim_mel_l1', float('nan')):.3f}, "
                f"multi-resolution STFT {m.get('vocoder_stft', float('nan')):.3f} vs "
                f"{m.get('griffin_lim_stft', float('nan')):.3f}, pitch-class similarity "
                f"{m.get('vocoder_pitch_similarity', float('nan')):.2f} vs "
                f"{m.get('griffin_lim_pitch_similarity', float('nan')):.2f}; train it longer), "
                "so Griffin–Lim makes the waveform")
            return None
        return vocoder

    @torch.no_grad()
    def encode_text(self, captions):
        """captions → dict of the flow model's text inputs: txt (B, L, d), txt_mask (B, L), y (B, D).

        Every batch is padded to the tokenizer's full length L, so a caption's computation has the
        same shapes whatever shares its batch: padding to the longest caption instead changes how
        the kernels block the (masked) sums, and under bf16 those last-bit differences flip roundings
        that 25 sampling steps amplify into an audibly different clip."""
        ids, mask = self.tokenizer(list(captions), pad_to_max=True)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return {"txt": self.t5(ids, mask), "txt_mask": mask, "y": self.clap.embed_text((ids, mask))}

    @torch.no_grad()
    def generate_latents(self, captions, seconds=CLIP_SECONDS, steps=DEFAULT_STEPS, cfg=DEFAULT_CFG, sampler=None,
                         negative_prompt="", seed=0, shift=1.0):
        """Sample VAE latents (B, 8, T/4, 16) for the captions. Each caption gets its own noise,
        drawn from (seed, index), so a clip does not depend on which other captions share the batch.
        sampler: euler or heun for rectified flow, ddim for a DDPM run (None: the run's default)."""
        sampler = sampler or ("ddim" if self.objective == "ddpm" else "euler")
        if (sampler == "ddim") != (self.objective == "ddpm"):
            raise ValueError(f"--sampler {sampler} does not fit a {self.objective} model; use "
                             f"{'ddim' if self.objective == 'ddpm' else 'euler or heun'}")
        frames, vae = frames_for(seconds), self.vae.config
        noise = torch.stack([
            torch.randn(vae.latent_channels, frames // vae.downsample, N_MELS // vae.downsample,
                        generator=torch.Generator().manual_seed(seed * NOISE_SEED_STRIDE + i))
            for i in range(len(captions))]).to(self.device)
        cond = self.encode_text(captions)  # both at the tokenizer's full length: they stack into one batch
        uncond = self.encode_text([negative_prompt] * len(captions))
        model_fn = lambda z, t, c: self.flow_model.velocity(z, t, c["txt"], c["txt_mask"], c["y"])
        guided = flow.guided_velocity_fn(model_fn, cond, uncond, cfg)  # for DDPM the output is ε

        def velocity_fn(z, t):  # the network at the pipeline's precision; the ODE's state z stays fp32
            with autocast(self.device, self.precision):
                return guided(z, t).float()

        if sampler == "ddim":
            return flow.ddim_sample(velocity_fn, noise, steps=steps)
        return flow.sample(velocity_fn, noise, steps=steps, sampler=sampler, shift=shift)

    @torch.no_grad()
    def latents_to_audio(self, latents):
        """Latents → (log-mel (B, T, 64), waveform (B, 160·T)); Griffin–Lim if no vocoder was loaded."""
        with autocast(self.device, self.precision):
            mel = self.vae.decode(latents).float()
        return mel, self.mel_to_audio(mel)

    @torch.no_grad()
    def mel_to_audio(self, mel):
        """Log-mel (B, T, 64) → waveform (B, 160·T) by the vocoder, or Griffin–Lim if none was loaded."""
        if self.vocoder is None:
            return griffin_lim(mel)
        with autocast(self.device, self.precision):
            return self.vocoder(mel).float()

    @torch.no_grad()
    def through_vae(self, mel, chunk_frames=1024):
        """Log-mel (B, T, 64) → its VAE reconstruction, in chunks of 10 s (the VAE is convolutional, so
        a long file needs no more memory than a chunk); T is cut to a multiple of the VAE's downsampling."""
        mel = mel[:, :mel.shape[1] // self.vae.config.downsample * self.vae.config.downsample]
        with autocast(self.device, self.precision):
            return torch.cat([self.vae.decode(self.vae.encode(part)).float() for part in mel.split(chunk_frames, 1)], 1)

    def generate(self, captions, **options):
        return self.latents_to_audio(self.generate_latents(captions, **options))


def load_stage(run_dir, stage, device="cpu", return_checkpoint=False):
    """Rebuild one trained part from its checkpoint (eval mode, frozen)."""
    path = stage_path(run_dir, stage)
    checkpoint = load_checkpoint(path, made_by=train_command(run_dir))
    if not checkpoint.get("done"):
        raise CheckpointError(f"{path} is an unfinished training checkpoint: run `{train_command(run_dir, stage)}` "
                              f"to finish it (it resumes from step {checkpoint.get('step', 0)})")
    model = model_from_checkpoint(stage, checkpoint, device, path, fix=f"retrain it with `{train_command(run_dir, stage)}`")
    return (model, checkpoint) if return_checkpoint else model


def model_from_checkpoint(stage, checkpoint, device="cpu", path="the checkpoint", fix="retrain it"):
    """A stage's model rebuilt from a loaded checkpoint (finished, or a snapshot taken mid-run), with
    its EMA weights where it has them (the ones to sample with); eval mode, frozen."""
    model_class, config_class = MODEL_CLASSES[stage]
    stored = {key: value for key, value in checkpoint["config"].items() if RETIRED_SETTINGS.get(key, object()) != value}
    try:
        config = config_class(**stored)
    except (TypeError, ValueError) as error:  # a config this version of the code no longer builds
        raise CheckpointError(f"{path} was written by another version of this code ({error}); delete it and {fix}") from None
    model = model_class(config)
    try:
        model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its stored config {config} "
                              f"({str(error).splitlines()[0]}); {fix}") from None
    return model.to(device).eval().requires_grad_(False)


def beats_griffin_lim(metrics):
    """Whether a vocoder stage's held-out metrics beat Griffin–Lim on both of its distances to the
    real audio (log-mel L1 and multi-resolution STFT) and keep the notes' pitch classes at least as
    well (chroma similarity to the real audio, pitch.py). A number a run lacks (a checkpoint from
    an older version, or trained elsewhere) gets the benefit of the doubt."""
    closer = [(metrics.get(f"vocoder_{k}"), metrics.get(f"griffin_lim_{k}")) for k in ("mel_l1", "stft")]
    ours, theirs = metrics.get("vocoder_pitch_similarity"), metrics.get("griffin_lim_pitch_similarity")
    in_tune = ours is None or theirs is None or ours >= theirs
    return in_tune and all(ours is None or theirs is None or ours < theirs for ours, theirs in closer)


def frames_for(seconds):
    """Mel frames for a duration, rounded to the nearest length the VAE and patching accept."""
    frames = round(seconds * SAMPLE_RATE / HOP / FRAMES_MULTIPLE) * FRAMES_MULTIPLE
    if frames < FRAMES_MULTIPLE:
        raise ValueError(f"--seconds {seconds} is too short: the shortest clip is "
                         f"{FRAMES_MULTIPLE * HOP / SAMPLE_RATE:.2f} s")
    if seconds > MAX_SECONDS:  # attention's cost grows with the square of the token count
        raise ValueError(f"--seconds {seconds} is too long: at most {MAX_SECONDS} s per clip "
                         f"({MAX_SECONDS * FRAMES_PER_SECOND} tokens); generate several clips instead")
    return frames


def check_compatible(flow_config, t5_config, clap_config, run_dir):
    """The flow model must have been trained on this run's text encoders' widths."""
    if flow_config.context_in_dim != t5_config.d_model or flow_config.vec_in_dim != clap_config.embed_dim:
        raise CheckpointError(
            f"{run_dir}/flow.pt was trained for text widths (T5 {flow_config.context_in_dim}, CLAP "
            f"{flow_config.vec_in_dim}) but this run's encoders give (T5 {t5_config.d_model}, CLAP "
            f"{clap_config.embed_dim}); retrain with `{train_command(run_dir, 'flow')}`")

