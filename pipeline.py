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

import math

import torch

import flow
import longform
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

    def check_sampler(self, sampler):
        """The sampler to use (None: the run's default), or a one-line error if it cannot fit the run."""
        sampler = sampler or ("ddim" if self.objective == "ddpm" else "euler")
        if (sampler == "ddim") != (self.objective == "ddpm"):
            raise ValueError(f"--sampler {sampler} does not fit a {self.objective} model; use "
                             f"{'ddim' if self.objective == 'ddpm' else 'euler or heun'}")
        return sampler

    def noise(self, latent_frames, seed):
        """ε for one latent (8, T, 16) from one integer seed, on the CPU's generator (the same on every device)."""
        vae = self.vae.config
        shape = (vae.latent_channels, latent_frames, N_MELS // vae.downsample)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)

    @torch.no_grad()
    def generate_latents(self, captions, seconds=CLIP_SECONDS, steps=DEFAULT_STEPS, cfg=DEFAULT_CFG, sampler=None,
                         negative_prompt="", seed=0, shift=1.0):
        """Sample VAE latents (B, 8, T/4, 16) for the captions. Each caption gets its own noise,
        drawn from (seed, index), so a clip does not depend on which other captions share the batch.
        sampler: euler or heun for rectified flow, ddim for a DDPM run (None: the run's default)."""
        sampler = self.check_sampler(sampler)
        latent_frames = frames_for(seconds) // self.vae.config.downsample
        noise = torch.stack([self.noise(latent_frames, seed * NOISE_SEED_STRIDE + i) for i in range(len(captions))])
        cond = self.encode_text(captions)  # both at the tokenizer's full length: they stack into one batch
        uncond = self.encode_text([negative_prompt] * len(captions))
        return self.solve(noise, cond, uncond, steps=steps, cfg=cfg, sampler=sampler, shift=shift)

    def solve(self, noise, cond, uncond, steps, cfg, sampler, shift=1.0, known_latent=None, known_frames=None,
              method="trained"):
        """The flow ODE from `noise` to a latent, guided by cond against uncond (encode_text's dicts).
        known_latent (B, 8, T, 16) and known_frames (B, T) bool: frames to keep (longform.py), which the
        network also reads with method "trained" and sees only on their path with "repaint"."""
        reads_known = known_frames is not None and method == "trained"
        known = {"known_latent": known_latent if reads_known else None,
                 "known_frames": known_frames if reads_known else None}
        model_fn = lambda z, t, c: self.flow_model.velocity(z, t, c["txt"], c["txt_mask"], c["y"],
                                                            known_latent=c["known_latent"],
                                                            known_frames=c["known_frames"])
        guided = flow.guided_velocity_fn(model_fn, {**cond, **known}, {**uncond, **known}, cfg)  # for DDPM: ε

        def velocity_fn(z, t):  # the network at the pipeline's precision; the ODE's state z stays fp32
            with autocast(self.device, self.precision):
                return guided(z, t).float()

        if sampler == "ddim":
            if known_frames is not None:
                raise ValueError("known frames (long pieces, --continue, --infill) need a rectified-flow run, "
                                 "not a DDPM one")
            return flow.ddim_sample(velocity_fn, noise, steps=steps)
        keep = None if known_frames is None else longform.keep_known(known_latent, known_frames, noise)
        return flow.sample(velocity_fn, noise, steps=steps, sampler=sampler, shift=shift, keep=keep)

    @torch.no_grad()
    def fill_latent(self, latent, known_frames, timeline, method=None, window=None, overlap=None, blend=None,
                    steps=DEFAULT_STEPS, cfg=DEFAULT_CFG, sampler=None, negative_prompt="", seed=0, shift=1.0):
        """Generate the unknown frames of one latent (8, T, 16), window by window (longform.fill).

        timeline: [(seconds, caption), ...], the caption in force from each time on (the first at 0).
        method: "trained" (the network reads the known frames; the default where it learned to) or
        "repaint" (training-free). window: latent frames a window spans (default: the trained clip's);
        overlap: how many already-made frames each next window sees (default: half a window); blend:
        how many of them it remakes and crossfades into (longform.fill; default longform.BLEND_FRAMES).
        Window w's noise comes from seed * NOISE_SEED_STRIDE + its start frame, so the first window of
        a piece from nothing is exactly `generate_latents`' clip for the first caption (up to the fade
        into the second window)."""
        sampler, method = self.check_sampler(sampler), method or self.default_context_method()
        if method not in longform.METHODS:
            raise ValueError(f"unknown context method {method!r}; use one of {', '.join(longform.METHODS)}")
        if method == "trained" and not self.flow_model.config.audio_context:
            raise ValueError("this run's flow model was not trained with known frames; use the training-free "
                             "method (--context repaint) or a run trained at HEAD")
        window = window or self.window_frames()
        overlap = longform.default_overlap(window) if overlap is None else overlap
        blend = min(longform.BLEND_FRAMES, overlap) if blend is None else blend
        check_timeline(timeline)
        encoded, uncond = {}, self.encode_text([negative_prompt])

        def sample_window(part, known, start):
            first_new = start + int((~known[0]).nonzero()[0])
            caption = caption_at(timeline, first_new * self.vae.config.downsample / FRAMES_PER_SECOND)
            if caption not in encoded:
                encoded[caption] = self.encode_text([caption])
            noise = self.noise(part.shape[2], seed * NOISE_SEED_STRIDE + start)[None]
            return self.solve(noise, encoded[caption], uncond, steps, cfg, sampler, shift, part, known, method)

        return longform.fill(sample_window, latent.to(self.device), known_frames.to(self.device), window, overlap,
                             blend)

    @torch.no_grad()
    def piece_latent(self, timeline, seconds, song_mel=None, regenerate=None, **options):
        """One latent for a piece, made by `fill_latent`: from nothing (`seconds` long), or continuing
        song_mel (1, T, 64) by `seconds`, or, with regenerate=(start, end) in seconds, song_mel with
        that span made anew (`seconds` unused)."""
        if song_mel is None:
            latent = torch.zeros(self.vae.config.latent_channels, frames_for(seconds, None) // self.vae.config.downsample,
                                 N_MELS // self.vae.config.downsample)
            return self.fill_latent(latent, torch.zeros(latent.shape[1], dtype=torch.bool), timeline, **options)
        song = self.encode_audio(song_mel).cpu()
        if regenerate is None:
            more = frames_for(seconds, None) // self.vae.config.downsample
            latent = torch.cat([song, torch.zeros(song.shape[0], more, song.shape[2])], dim=1)
            known = torch.arange(latent.shape[1]) < song.shape[1]
            return self.fill_latent(latent, known, timeline, **options)
        first, last = self.span_frames(*regenerate, song_mel.shape[1])
        known = (torch.arange(song.shape[1]) < first) | (torch.arange(song.shape[1]) >= last)
        return self.fill_latent(song, known, timeline, **options)

    def span_frames(self, start, end, mel_frames):
        """The latent frames [first, last) that regenerate seconds [start, end) of a song of `mel_frames`
        log-mel frames: widened to whole patches."""
        frames_per_second = FRAMES_PER_SECOND / self.vae.config.downsample
        latent_frames = mel_frames // FRAMES_MULTIPLE * PATCH
        song_seconds = latent_frames / frames_per_second
        if not 0 <= start < end <= song_seconds + 1e-6:
            raise ValueError(f"--start {start:g} and --end {end:g} must satisfy 0 <= start < end <= the song's "
                             f"{song_seconds:.2f} s")
        first = int(start * frames_per_second) // PATCH * PATCH
        last = min(math.ceil(math.ceil(end * frames_per_second - 1e-9) / PATCH) * PATCH, latent_frames)
        return first, last

    def window_frames(self):
        """Latent frames of one window: the clip length the flow model was trained on."""
        return frames_for(self.trained_seconds) // self.vae.config.downsample

    def default_context_method(self):
        return "trained" if self.flow_model.config.audio_context else "repaint"

    def encode_audio(self, mel):
        """Log-mel (1, T, 64) -> VAE latent (8, T/8*2, 16), T cut to whole patches."""
        mel = mel[:, :mel.shape[1] // FRAMES_MULTIPLE * FRAMES_MULTIPLE]
        if mel.shape[1] == 0:
            raise ValueError(f"the audio is shorter than {FRAMES_MULTIPLE * HOP / SAMPLE_RATE:.2f} s, the "
                             "shortest piece the VAE can encode")
        with autocast(self.device, self.precision):
            return self.vae.encode(mel.to(self.device)).float()[0]

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


def frames_for(seconds, longest=MAX_SECONDS):
    """Mel frames for a duration, rounded to the nearest length the VAE and patching accept; one
    latent is at most `longest` seconds (None: no limit, for a piece made window by window)."""
    frames = round(seconds * SAMPLE_RATE / HOP / FRAMES_MULTIPLE) * FRAMES_MULTIPLE
    if frames < FRAMES_MULTIPLE:
        raise ValueError(f"--seconds {seconds} is too short: the shortest clip is "
                         f"{FRAMES_MULTIPLE * HOP / SAMPLE_RATE:.2f} s")
    if longest is not None and seconds > longest:  # attention's cost grows with the square of the token count
        raise ValueError(f"--seconds {seconds} is too long for one latent: at most {longest} s "
                         f"({longest * FRAMES_PER_SECOND} tokens); make it window by window (--long windows)")
    return frames


def check_timeline(timeline):
    """[(seconds, caption), ...]: starts at 0, times strictly increasing."""
    times = [when for when, _ in timeline]
    if not times or times[0] != 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"a caption timeline must start at 0 s and go forward in time, got times {times}")


def caption_at(timeline, seconds):
    """The caption in force at `seconds` of a timeline [(start seconds, caption), ...]."""
    return [caption for when, caption in timeline if when <= seconds][-1]


def check_compatible(flow_config, t5_config, clap_config, run_dir):
    """The flow model must have been trained on this run's text encoders' widths."""
    if flow_config.context_in_dim != t5_config.d_model or flow_config.vec_in_dim != clap_config.embed_dim:
        raise CheckpointError(
            f"{run_dir}/flow.pt was trained for text widths (T5 {flow_config.context_in_dim}, CLAP "
            f"{flow_config.vec_in_dim}) but this run's encoders give (T5 {t5_config.d_model}, CLAP "
            f"{clap_config.embed_dim}); retrain with `{train_command(run_dir, 'flow')}`")

