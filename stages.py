"""Orchestration of the five training stages that `train.py` runs, one small class each.

For the first four stages, what a model learns from (its batch) and what it minimises (its
loss) live in the model's own file, beside the model, and this file only calls them; the flow
stage's step, the heart of the method, is written out here in `FlowStage.train_step`:

    vae      vae.training_batch (crops + posterior noise)  -> VAE.loss: L1 + small KL; then the latent scale
    vocoder  vocoder.training_batch (audio crops)          -> reconstruction_loss (warm-up), then the GAN:
                                                              discriminator_loss, generator_loss
    clap     text.clap_training_batch (caption, mel pairs) -> CLAP.loss: symmetric InfoNCE
    t5       text.t5_training_batch (span corruption)      -> text.t5_pretrain_loss: denoising cross-entropy
    flow     frozen VAE latents + frozen text features     -> z_t = (1-t) x0 + t eps, MSE to eps - x0, EMA

What a long run needs around them is here: a learning-rate schedule, the optimisers, EMA,
data-parallel sharding, and held-out metrics at the end; the loop itself (resume, atomic
checkpoints, Ctrl-C, NaN checks, loss curves) is `train.run_stage`. Data are rendered or read
once per run (`Context`), and the flow stage encodes every clip once with the frozen models
and caches the result (`<run>/flow_cache.pt`).

Randomness: every step draws its whole batch (clips, crops, noise, t, dropped captions) from
one generator seeded by (seed, stage, step), for the *global* batch; under torchrun each
process then keeps its own rows (`Context.shard`). So a resumed run draws exactly the
batches the uninterrupted one would have, and N processes train what one process would.

References
- Fei et al., "FLUX that Plays Music" (FluxMusic), arXiv 2409.00587 (training recipe: AdamW, EMA,
  10% caption dropout)
- Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (AdamW), arXiv 1711.05101;
  "SGDR: Stochastic Gradient Descent with Warm Restarts" (cosine decay), arXiv 1608.03983
"""

import copy
import math
import os
from dataclasses import replace
from functools import cached_property

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import flow
import longform
import text
import vae as vae_lib
import vocoder as vocoder_lib
from common import STAGES, autocast, describe_precision, load_checkpoint, precision_for, save_checkpoint
from audio import MelSpectrogram, save_wav
from data import AudioFolderDataset, SynthMusicDataset
from model import PRESETS, FluxMusic
from pipeline import Pipeline, load_stage

ENCODE_BATCH = 64            # clips per forward when computing mels and frozen features (memory, not maths)
SAMPLES_PER_CHECK = 2        # held-out captions the flow stage plays as it trains
VAL_TIMES = (0.05, 0.95)     # the flow's held-out loss is measured at evenly spaced t in this range
HELD_OUT_SEED = 0            # held-out noise and span corruption: the same in every run, so runs compare


# ----------------------------------------------------------------------------- data, once per run

class Clips:
    """Clips in memory: audio (N, samples), one caption a clip (what metrics and samples read),
    attributes (None for a folder), and every phrasing of every clip, flat, with the clip each
    describes (what the text encoders and the flow model train on)."""

    def __init__(self, dataset, desc, progress=True):
        items = [dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=not progress)]
        self.audio = torch.stack([item["audio"] for item in items])
        self.captions = [item["caption"] for item in items]
        self.attributes = [item.get("attributes") for item in items]
        groups = [item.get("captions", [item["caption"]]) for item in items]
        self.phrasings = [caption for group in groups for caption in group]
        self.phrasing_clip = torch.tensor([i for i, group in enumerate(groups) for _ in group])

    def __len__(self):
        return len(self.captions)


class Context:
    """What every stage reads: the run's settings, the clips and their log-mels, and the
    per-step random generators and batch sharding that make runs reproducible."""

    def __init__(self, run_dir, config, data_dir, world, progress=True):
        self.run_dir, self.config, self.data_dir, self.world = run_dir, config, data_dir, world
        self.progress = progress  # progress bars on (a terminal) or off (a notebook's stored output)
        self.device = world.device
        self.precision = precision_for(config.precision, self.device)  # "auto" -> "bf16" or "fp32" here
        self.mel_fn = MelSpectrogram().to(self.device)

    @cached_property
    def datasets(self):
        c = self.config
        if self.data_dir is None:
            return (SynthMusicDataset("train", c.num_clips, c.seconds, c.seed, c.captions_per_clip),
                    SynthMusicDataset("test", c.num_val_clips, c.seconds, c.seed))
        train, held_out = AudioFolderDataset(self.data_dir, c.seconds).split_by_file()
        # held-out metrics on at most num_val_clips windows, spread evenly over the held-out files
        keep = torch.linspace(0, len(held_out) - 1, min(len(held_out), c.num_val_clips)).round().long()
        return train, torch.utils.data.Subset(held_out, keep.tolist())

    @cached_property
    def train(self):
        return Clips(self.datasets[0], "rendering training clips", self.progress)

    @cached_property
    def val(self):
        return Clips(self.datasets[1], "rendering held-out clips", self.progress)

    @torch.no_grad()
    def mels(self, clips):
        return torch.cat([self.mel_fn(a.to(self.device)) for a in clips.audio.split(ENCODE_BATCH)])

    @cached_property
    def train_mels(self):
        return self.mels(self.train)

    @cached_property
    def val_mels(self):
        return self.mels(self.val)

    def step_generator(self, stage, step):
        """The one source of randomness for a stage's step: a pure function of (seed, stage, step),
        so a resumed run draws the same batches. NumPy's SeedSequence mixes the three numbers
        into unrelated streams (plain seed + step would give stage A at step 5 and stage B at
        step 5 the same random numbers, and seed 0 at step 1 those of seed 1 at step 0)."""
        entropy = np.random.SeedSequence([self.config.seed, STAGES.index(stage), step])
        return torch.Generator().manual_seed(int(entropy.generate_state(1)[0]))

    def shard(self, batch):
        """This process's rows of a global batch: a tensor or list, or a tuple of them (None stays None)."""
        if batch is None:
            return None
        if isinstance(batch, tuple):
            return tuple(self.shard(part) for part in batch)
        rows = batch[self.world.rank::self.world.size]
        return rows.to(self.device) if torch.is_tensor(rows) else rows


class Objective(nn.Module):
    """Wraps `loss_fn(model, *batch)` as a module's forward, so DistributedDataParallel (which
    averages gradients across processes inside forward/backward hooks) sees the whole loss,
    computed under `precision` (bf16 autocast or fp32; the backward pass follows the forward's
    dtypes, and the optimiser only ever sees float32 weights and gradients)."""

    def __init__(self, model, loss_fn, precision="fp32"):
        super().__init__()
        self.model, self.loss_fn, self.precision = model, loss_fn, precision

    def forward(self, *batch):
        with autocast(next(self.model.parameters()).device, self.precision):
            return self.loss_fn(self.model, *batch)


def distributed(objective, world):
    if world.size == 1:
        return objective
    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(objective, device_ids=ids)


def optimise(loss, model, optimizer, max_norm=1.0):
    """Backward, clip, step — unless the loss is not finite (the caller then stops the stage)."""
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
    return loss.item()


def compiled_or_eager(module):
    """`module` compiled by torch.compile, which compiles on the first call; if that call fails (no
    C++ compiler, an unsupported platform) it says so once and runs `module` eagerly from then on."""
    state = {"run": torch.compile(module)}

    def call(*args):
        try:
            return state["run"](*args)
        except Exception as error:
            if state["run"] is module:
                raise
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
            print(f"warning: torch.compile failed ({reason}); the flow stage runs eagerly (--no-compile skips trying)")
            state["run"] = module
            return module(*args)
    return call


def learning_rate_factor(step, steps, warmup_fraction=0.05, floor=0.1):
    """Linear warm-up (Adam's early moment estimates are noisy), then a cosine decay to `floor`.
    A pure function of the step, so a resumed run follows the same schedule."""
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- the stages

class Stage:
    """One model's training. A subclass sets `name`, builds `model` and `optimizers` (and,
    if it has them, `extra_modules` to checkpoint and an `ema` copy), and provides:

        train_step(step) -> {loss name: value}    one optimiser step on the step's batch
        finish()         -> {metric: value}       held-out metrics of the trained model
    """
    name = ""
    ema = None
    bf16 = True  # whether bf16 autocast (where the run's precision allows it) pays for this stage

    def __init__(self, context):
        self.context, self.run_config, self.device = context, context.config, context.device
        self.size = getattr(self.run_config, self.name)  # steps, batch_size, lr
        self.precision = context.precision if self.bf16 else "fp32"
        self.extra_modules, self.optimizers = {}, {}
        context.train  # render (or read) the clips now, before the progress bar starts

    def train_step(self, step):
        raise NotImplementedError

    def finish(self):
        raise NotImplementedError

    def after_step(self, done_steps):
        """Called after every step on the main process (the flow stage writes samples)."""

    def describe(self):
        params = sum(p.numel() for p in self.model.parameters())
        s = self.size
        precision = describe_precision(self.precision, self.device) if self.bf16 else "fp32 (this stage's choice)"
        return f"{params / 1e6:.2f} M parameters, {s.steps} steps of batch {s.batch_size}, lr {s.lr:g}, {precision}"

    def wrap(self, model, loss_fn):
        """`loss_fn(model, *batch)` as this stage's (data-parallel) objective at its precision."""
        return distributed(Objective(model, loss_fn, self.precision), self.context.world)

    def adamw(self, module, betas=(0.9, 0.999), weight_decay=0.0):
        # fused: one kernel updates every tensor, not several launches per tensor; fp32 moments either way
        fused = self.device.type in ("cpu", "cuda")  # where PyTorch has the fused kernel
        return torch.optim.AdamW(module.parameters(), lr=self.size.lr, betas=betas, weight_decay=weight_decay,
                                 fused=fused)

    def learning_rate(self, step):
        return self.size.lr * learning_rate_factor(step, self.size.steps)

    def rng(self, step):
        """The step's random number generator (see Context.step_generator)."""
        return self.context.step_generator(self.name, step)


class VAEStage(Stage):
    name = "vae"

    def __init__(self, context):
        super().__init__(context)
        self.model = vae_lib.VAE(vae_lib.VAEConfig()).to(self.device)
        self.objective = self.wrap(self.model, lambda m, mel, noise: m.loss(mel, noise))
        self.optimizers["main"] = self.adamw(self.model)

    def train_step(self, step):
        frames = min(self.run_config.vae_crop_frames, self.context.train_mels.shape[1])
        batch = vae_lib.training_batch(self.context.train_mels, self.size.batch_size, frames, self.model.config,
                                       self.rng(step))
        loss, logs = self.objective(*self.context.shard(batch))
        return {"loss": optimise(loss, self.model, self.optimizers["main"]), **logs}

    @torch.no_grad()
    def finish(self):
        self.model.eval()
        self.model.measure_scale_factor(self.context.train_mels)
        val = self.context.val_mels
        mean_mel = self.context.train_mels.mean(dim=(0, 1))
        return {"val_mel_l1": vae_lib.reconstruction_l1(self.model, val),
                "mean_mel_baseline_l1": (mean_mel - val).abs().mean().item(),
                "scale_factor": float(self.model.scale_factor)}


class VocoderStage(Stage):
    """Reconstruction-only warm-up (cheap, gets the generator near real audio), then the GAN."""
    name = "vocoder"
    # fp32: its many narrow 1-D convolutions are bound by memory, so bf16 buys them nothing
    # (docs/RESULTS.md, "bf16 and compile"), and fp32 spares the GAN's delicate balance
    bf16 = False

    def __init__(self, context):
        super().__init__(context)
        config = vocoder_lib.HiFiGANConfig.for_head(self.run_config.vocoder_head, self.run_config.vocoder_phase_model,
                                                    self.run_config.vocoder_channels)
        self.model = vocoder_lib.HiFiGAN(config).to(self.device)
        self.disc = vocoder_lib.Discriminators(config).to(self.device)
        self.extra_modules["discriminators"] = self.disc
        mel_fn, disc = context.mel_fn, (self.disc,)  # a tuple: the generator must not adopt the discriminators
        phase_weight, fine = self.run_config.vocoder_phase_weight, self.run_config.vocoder_fine_stft

        def generator_loss(g, mel, real, adversarial):
            if adversarial:
                return vocoder_lib.generator_loss(disc[0], real, g(mel), mel_fn)
            return vocoder_lib.reconstruction_loss(real, g(mel), phase_weight=phase_weight, fine=fine)

        self.generator_objective = self.wrap(self.model, generator_loss)
        self.discriminator_objective = self.wrap(self.disc, vocoder_lib.discriminator_loss)
        self.optimizers["generator"] = self.adamw(self.model, betas=(0.8, 0.99))
        self.optimizers["discriminator"] = self.adamw(self.disc, betas=(0.8, 0.99))

    def learning_rate(self, step):
        """Cosine over the reconstruction warm-up at `lr`, then HiFi-GAN's gentler constant GAN rate."""
        warmup = self.run_config.vocoder_warmup
        if step < warmup:
            return self.size.lr * learning_rate_factor(step, warmup)
        return self.run_config.vocoder_gan_lr

    def train_step(self, step):
        audio = self.context.train.audio
        real = self.context.shard(vocoder_lib.training_batch(audio, self.size.batch_size,
                                                             self.run_config.vocoder_segment, self.rng(step)))
        with torch.no_grad():
            mel = self.context.mel_fn(real)
        if step < self.run_config.vocoder_warmup:
            loss, logs = self.generator_objective(mel, real, False)
            return {"reconstruction_loss": optimise(loss, self.model, self.optimizers["generator"]), **logs}
        with torch.no_grad():
            fake = self.model(mel)
        d_loss, d_logs = self.discriminator_objective(real, fake)
        d_loss = optimise(d_loss, self.disc, self.optimizers["discriminator"])
        self.disc.requires_grad_(False)  # the generator's step must not move the discriminators
        g_loss, g_logs = self.generator_objective(mel, real, True)
        g_loss = optimise(g_loss, self.model, self.optimizers["generator"])
        self.disc.requires_grad_(True)
        return {"d_loss": d_loss, "g_loss": g_loss, **d_logs, **g_logs}

    @torch.no_grad()
    def finish(self):
        self.model.eval()
        return vocoder_lib.compare_with_griffin_lim(self.model, self.context.val.audio.to(self.device),
                                                    self.context.mel_fn)


class CLAPStage(Stage):
    name = "clap"

    def __init__(self, context):
        super().__init__(context)
        self.model = text.CLAP(text.CLAPConfig()).to(self.device)
        self.objective = self.wrap(self.model, lambda m, captions, mel: m.loss(captions, mel))
        self.optimizers["main"] = self.adamw(self.model, weight_decay=0.01)

    def train_step(self, step):
        train = self.context.train
        batch = text.clap_training_batch(train.phrasings, self.context.train_mels, self.size.batch_size,
                                         self.rng(step), clip_of=train.phrasing_clip)
        loss = self.objective(*self.context.shard(batch))
        return {"loss": optimise(loss, self.model, self.optimizers["main"])}

    @torch.no_grad()
    def finish(self):
        self.model.eval()
        return text.clap_metrics(self.model, self.context.val.captions, self.context.val_mels,
                                 self.context.val.attributes)


class T5Stage(Stage):
    name = "t5"

    def __init__(self, context):
        super().__init__(context)
        self.model = text.T5Encoder(text.T5Config()).to(self.device)
        self.decoder = text.T5Decoder(self.model.config).to(self.device)  # only for pretraining; dropped after
        self.extra_modules["decoder"] = self.decoder
        self.pair = nn.ModuleDict({"encoder": self.model, "decoder": self.decoder})
        self.objective = self.wrap(self.pair, lambda m, *batch: text.t5_pretrain_loss(m["encoder"], m["decoder"], *batch))
        self.optimizers["main"] = self.adamw(self.pair, weight_decay=0.01)

    def train_step(self, step):
        batch = text.t5_training_batch(self.model.tokenizer, self.context.train.phrasings, self.size.batch_size,
                                       self.rng(step))
        loss = self.objective(*self.context.shard(batch))
        return {"loss": optimise(loss, self.pair, self.optimizers["main"])}

    @torch.no_grad()
    def finish(self):
        self.pair.eval()
        captions = self.context.val.captions
        held_out = torch.Generator().manual_seed(HELD_OUT_SEED)
        batch = text.span_corrupt(*self.model.tokenizer(captions), generator=held_out)
        loss = text.t5_pretrain_loss(self.model, self.decoder, *(t.to(self.device) for t in batch))
        return {"val_denoising_loss": loss.item()}


class FlowStage(Stage):
    """The FluxMusic transformer on cached, frozen latents and text features, with an EMA copy."""
    name = "flow"

    def __init__(self, context):
        super().__init__(context)
        self.cache = self.frozen_features()
        base = PRESETS[self.run_config.preset]
        self.mask_mix = longform.MaskMix(self.run_config.context_prefix, self.run_config.context_span)
        config = replace(base, context_in_dim=self.cache["txt"].shape[-1], vec_in_dim=self.cache["y"].shape[-1],
                         audio_context=self.mask_mix.active)
        self.model = FluxMusic(config).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.net = distributed(self.model, context.world)  # under torchrun, DDP averages the gradients
        if self.run_config.compile:  # fuses the many small ops of a narrow model; weights stay shared
            self.net = compiled_or_eager(self.net)
        self.optimizers["main"] = self.adamw(self.model, weight_decay=0.0)

    def train_step(self, step):
        """One step of rectified flow, minRF's with a caption:
        z_t = (1 - t) x0 + t eps,  loss = || v_theta(z_t, t, c, y) - (eps - x0) ||^2,
        where some examples also see part of x0 and are scored only on the rest (longform.py)."""
        c, n, generator = self.cache, self.size.batch_size, self.rng(step)
        # the global batch: a random phrasing of a random clip, its caption swapped for "" with
        # probability caption_dropout (so one network also learns the unconditional field CFG needs)
        phrasing = torch.randint(c["num_captions"], (n,), generator=generator)
        drop = torch.rand(n, generator=generator) < self.run_config.caption_dropout
        txt = torch.where(drop[:, None, None], c["empty_txt"], c["txt"][phrasing])
        txt_mask = torch.where(drop[:, None], c["empty_mask"], c["txt_mask"][phrasing])
        y = torch.where(drop[:, None], c["empty_y"], c["y"][phrasing])
        x0 = c["latents"][c["caption_clip"][phrasing]]
        noise = torch.randn(x0.shape, generator=generator)
        if self.run_config.objective == "ddpm":  # the baseline: integer steps k, shown to the net as t = k / K
            t = flow.sample_ddpm_timesteps(n, generator=generator) / flow.DDPM_STEPS
        else:  # logit-normal t; time_mean > 0 leans towards noise, where the beat grid is decided
            t = flow.sample_timesteps(n, mean=self.run_config.time_mean, generator=generator)
        # some examples know part of their clip and learn to fill in the rest (longform.py)
        known = longform.draw_known_frames(n, x0.shape[2], self.mask_mix, generator) if self.mask_mix.active else None
        x0, noise, t, txt, txt_mask, y, known = self.context.shard((x0, noise, t, txt, txt_mask, y, known))
        z_t, target = self.path(x0, noise, t)
        with autocast(self.device, self.precision):
            v = self.model.velocity(z_t, t, txt, txt_mask, y, forward=self.net,  # through DDP and compile
                                    known_latent=x0 if known is not None else None, known_frames=known)
            loss = longform.masked_flow_loss(v, target, known) if known is not None else ((v - target) ** 2).mean()
        value = optimise(loss, self.model, self.optimizers["main"])
        decay = min(self.run_config.ema_decay, (1 + step) / (10 + step))  # short warm-up: early EMA tracks fast
        with torch.no_grad():
            for ema_p, p in zip(self.ema.parameters(), self.model.parameters()):
                ema_p.lerp_(p, 1 - decay)
        return {"loss": value}

    def path(self, x0, noise, t):
        """z_t and what the network regresses onto: the straight path and its velocity eps - x0; for
        the DDPM baseline, its curved path at step k = K t and the noise itself."""
        if self.run_config.objective == "ddpm":
            k = (t * flow.DDPM_STEPS).round().long().clamp(max=flow.DDPM_STEPS - 1)
            return flow.ddpm_noising(x0, noise, k, flow.DDPM_ALPHAS_CUMPROD), noise
        return flow.interpolate(x0, noise, t), noise - x0

    def frozen_features(self):
        """Every training clip through the frozen VAE, and every phrasing of it through the frozen
        text encoders, once; cached on disk."""
        path, train = os.path.join(self.context.run_dir, "flow_cache.pt"), self.context.train
        if os.path.exists(path):
            cache = load_checkpoint(path)
            if (cache["num_clips"], cache.get("num_captions")) == (len(train), len(train.phrasings)):
                return cache
        run = self.context.run_dir
        vae = load_stage(run, "vae", self.device)
        t5, clap = load_stage(run, "t5", self.device), load_stage(run, "clap", self.device)
        tokenizer = text.ByteTokenizer(t5.config.max_length)
        captions = train.phrasings
        with torch.no_grad():
            latents = torch.cat([vae.encode(m) for m in self.context.train_mels.split(ENCODE_BATCH)])
            ids, mask = tokenizer(captions + [""])
            ids, mask = ids.to(self.device), mask.to(self.device)
            chunks = list(zip(ids.split(ENCODE_BATCH), mask.split(ENCODE_BATCH)))
            txt = torch.cat([t5(i, m) for i, m in chunks])
            y = torch.cat([clap.embed_text((i, m)) for i, m in chunks])
        cache = {"num_clips": len(train), "num_captions": len(captions), "caption_clip": train.phrasing_clip,
                 "latents": latents.cpu(), "txt": txt[:-1].cpu(),
                 "txt_mask": mask[:-1].cpu(), "y": y[:-1].cpu(), "empty_txt": txt[-1].cpu(),
                 "empty_mask": mask[-1].cpu(), "empty_y": y[-1].cpu()}
        if self.context.world.main:
            save_checkpoint(cache, path)
        return cache

    def after_step(self, done_steps):
        every = self.run_config.sample_every
        if every and (done_steps % every == 0 or done_steps == self.size.steps):
            self.write_samples(done_steps)

    @torch.no_grad()
    def write_samples(self, done_steps):
        pipe = Pipeline(self.context.run_dir, self.device, flow_model=self.ema.eval(),
                        objective=self.run_config.objective, log=lambda message: None)
        captions = self.context.val.captions[:SAMPLES_PER_CHECK]
        _, audio = pipe.generate(captions, seconds=self.run_config.seconds, steps=self.run_config.sample_steps)
        folder = os.path.join(self.context.run_dir, "samples")
        for i, (caption, clip) in enumerate(zip(captions, audio)):
            save_wav(os.path.join(folder, f"step{done_steps:06d}_{i}.wav"), clip)
        with open(os.path.join(folder, "captions.txt"), "w") as f:
            f.write("\n".join(f"{i}: {c}" for i, c in enumerate(captions)) + "\n")

    @torch.no_grad()
    def finish(self):
        """Held-out loss of the EMA model at fixed noise and t (comparable across runs of one objective)."""
        pipe = Pipeline(self.context.run_dir, self.device, flow_model=self.ema.eval(), use_vocoder=False)
        x0 = pipe.vae.encode(self.context.val_mels)
        cond = pipe.encode_text(self.context.val.captions)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(HELD_OUT_SEED)).to(self.device)
        t = torch.linspace(*VAL_TIMES, len(x0)).to(self.device)
        z_t, target = self.path(x0, noise, t)
        loss = ((self.ema.velocity(z_t, t, cond["txt"], cond["txt_mask"], cond["y"]) - target) ** 2).mean()
        return {"val_flow_loss": loss.item()}


STAGE_CLASSES = {cls.name: cls for cls in (VAEStage, VocoderStage, CLAPStage, T5Stage, FlowStage)}


def build(name, context):
    torch.manual_seed(context.config.seed)  # the same initial weights on every process and rerun
    return STAGE_CLASSES[name](context)
