"""The five training recipes that `train.py` runs, one small class each.

A stage is a model, its optimiser(s), and one function that takes a step:

    vae      log-mel clips → L1 reconstruction + small KL            (then: measure the latent scale)
    vocoder  audio crops → multi-resolution STFT loss, then HiFi-GAN's adversarial game
    clap     (caption, log-mel) pairs → symmetric InfoNCE
    t5       captions → span-corruption denoising
    flow     frozen VAE latents + frozen text features → rectified-flow velocity loss, with EMA

The loop around them (resume, atomic saves, Ctrl-C, NaN checks, loss curves) lives once in
`train.py`. Data are rendered or read once per run (`Context`), and the flow stage encodes
every clip once with the frozen models and caches the result (`<run>/flow_cache.pt`).

Batches are drawn from a generator seeded by (seed, step), and under torchrun each process
takes its own slice of that global batch: a distributed sampler that also makes a resumed
run draw exactly the batches the uninterrupted run would have drawn.
"""

import copy
import math
import os
from functools import cached_property

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import flow
import text
import vae as vae_lib
import vocoder as vocoder_lib
from common import load_checkpoint, load_stage, save_checkpoint
from data import N_MELS, AudioFolderDataset, MelSpectrogram, SynthMusicDataset, save_wav
from model import PRESETS, FluxMusic
from pipeline import Pipeline


# ----------------------------------------------------------------------------- data, once per run

class Clips:
    """Audio clips held in memory: audio (N, samples), captions, attributes (None for a folder)."""

    def __init__(self, dataset, desc):
        items = [dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False)]
        self.audio = torch.stack([item["audio"] for item in items])
        self.captions = [item["caption"] for item in items]
        self.attributes = [item.get("attributes") for item in items]

    def __len__(self):
        return len(self.captions)


class Context:
    """What every stage reads: the run's settings, the clips and their log-mels."""

    def __init__(self, run_dir, config, data_dir, world):
        self.run_dir, self.config, self.data_dir, self.world = run_dir, config, data_dir, world
        self.device = world.device
        self.mel_fn = MelSpectrogram().to(self.device)

    @cached_property
    def datasets(self):
        c = self.config
        if self.data_dir is None:
            return (SynthMusicDataset("train", c.num_clips, c.seconds, c.seed),
                    SynthMusicDataset("test", c.num_val_clips, c.seconds, c.seed))
        train = AudioFolderDataset(self.data_dir, c.seconds, train=True, seed=c.seed)
        val = AudioFolderDataset(self.data_dir, c.seconds, train=False, seed=c.seed)
        held_out = max(1, len(val) // 10) if len(val) > 1 else 0
        train_ids = list(range(len(val) - held_out))
        val_ids = list(range(len(val) - held_out, len(val))) or [0]
        return torch.utils.data.Subset(train, train_ids), torch.utils.data.Subset(val, val_ids)

    @cached_property
    def train(self):
        return Clips(self.datasets[0], "rendering training clips")

    @cached_property
    def val(self):
        return Clips(self.datasets[1], "rendering held-out clips")

    @torch.no_grad()
    def mels(self, clips):
        return torch.cat([self.mel_fn(a.to(self.device)) for a in clips.audio.split(64)])

    @cached_property
    def train_mels(self):
        return self.mels(self.train)

    @cached_property
    def val_mels(self):
        return self.mels(self.val)

    def batch_indices(self, step, batch_size, n):
        """This process's share of the global batch for `step` (same on every rerun)."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        return self.shard(torch.randint(n, (batch_size,), generator=generator))

    def shard(self, global_batch):
        """This process's rows of something drawn for the whole global batch."""
        return global_batch[self.world.rank::self.world.size]


class Objective(nn.Module):
    """Wraps `loss_fn(model, *batch)` as a module's forward, so DistributedDataParallel (which
    averages gradients across processes inside forward/backward hooks) sees the whole loss."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, *batch):
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


# ----------------------------------------------------------------------------- the stages

class Stage:
    """Defaults shared by every stage; subclasses set model/optimizers and `train_step`."""
    name = ""
    ema = None

    def __init__(self, context):
        self.context, self.run_config, self.device = context, context.config, context.device
        self.schedule = getattr(self.run_config, self.name)
        self.extra_modules, self.optimizers = {}, {}
        context.train  # render (or read) the clips now, before the progress bar starts

    def describe(self):
        params = sum(p.numel() for p in self.model.parameters())
        s = self.schedule
        return f"{params / 1e6:.2f} M parameters, {s.steps} steps of batch {s.batch_size}, lr {s.lr:g}"

    def adamw(self, module, betas=(0.9, 0.999), weight_decay=0.0):
        return torch.optim.AdamW(module.parameters(), lr=self.schedule.lr, betas=betas, weight_decay=weight_decay)

    def after_step(self, done_steps):
        pass

    def learning_rate(self, step):
        return self.schedule.lr * learning_rate_factor(step, self.schedule.steps)


def learning_rate_factor(step, steps, warmup_fraction=0.05, floor=0.1):
    """Linear warm-up (Adam's early moment estimates are noisy), then cosine decay to 10%.
    A pure function of the step, so a resumed run follows the same schedule."""
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class VAEStage(Stage):
    name = "vae"

    def __init__(self, context):
        super().__init__(context)
        self.model = vae_lib.VAE(vae_lib.VAEConfig()).to(self.device)
        self.objective = distributed(Objective(self.model, lambda m, mel, noise: m.loss(mel, noise)[0]),
                                     context.world)
        self.optimizers["main"] = self.adamw(self.model)

    def train_step(self, step):
        # short random windows: a convolutional VAE learns the same local filters from 64 frames
        # as from a whole clip, at a quarter of the cost per step
        mels, frames = self.context.train_mels, min(self.run_config.vae_crop_frames, self.context.train_mels.shape[1])
        ids = self.context.batch_indices(step, self.schedule.batch_size, len(mels))
        generator = torch.Generator().manual_seed(self.run_config.seed * 7 + step)
        starts = self.context.shard(torch.randint(mels.shape[1] - frames + 1, (self.schedule.batch_size,),
                                                  generator=generator))
        batch = mels[ids[:, None], starts[:, None] + torch.arange(frames)]
        c = self.model.config  # the posterior draw too is made for the global batch, then sharded
        noise = self.context.shard(torch.randn(self.schedule.batch_size, c.latent_channels, frames // c.downsample,
                                               N_MELS // c.downsample, generator=generator)).to(self.device)
        return {"loss": optimise(self.objective(batch, noise), self.model, self.optimizers["main"])}

    @torch.no_grad()
    def finish(self):
        self.model.eval()
        self.model.measure_scale_factor(self.context.train_mels)
        val = self.context.val_mels
        recon = self.model.decode(self.model.encode(val))
        mean_mel = self.context.train_mels.mean(dim=(0, 1))
        return {"val_mel_l1": (recon - val).abs().mean().item(),
                "mean_mel_baseline_l1": (mean_mel - val).abs().mean().item(),
                "scale_factor": float(self.model.scale_factor)}


class VocoderStage(Stage):
    """Reconstruction-only warm-up (cheap, gets the generator near real audio), then the GAN."""
    name = "vocoder"

    def __init__(self, context):
        super().__init__(context)
        self.model = vocoder_lib.HiFiGAN(vocoder_lib.HiFiGANConfig()).to(self.device)
        self.disc = vocoder_lib.Discriminators(vocoder_lib.HiFiGANConfig()).to(self.device)
        self.extra_modules["discriminators"] = self.disc
        mel_fn, disc = context.mel_fn, (self.disc,)  # a tuple: the generator must not adopt the discriminators

        def generator_loss(g, mel, real, adversarial):
            if adversarial:
                return vocoder_lib.generator_loss(disc[0], real, g(mel), mel_fn)[0]
            return vocoder_lib.reconstruction_loss(real, g(mel))

        self.generator = distributed(Objective(self.model, generator_loss), context.world)
        self.discriminator = distributed(Objective(self.disc, lambda d, real, fake: vocoder_lib.discriminator_loss(
            d, real, fake)[0]), context.world)
        self.optimizers["generator"] = self.adamw(self.model, betas=(0.8, 0.99))
        self.optimizers["discriminator"] = self.adamw(self.disc, betas=(0.8, 0.99))

    def crops(self, step):
        """Random windows of `vocoder_segment` samples, aligned to the hop, with their log-mels."""
        audio = self.context.train.audio
        ids = self.context.batch_indices(step, self.schedule.batch_size, len(audio))
        segment = self.run_config.vocoder_segment
        generator = torch.Generator().manual_seed(step)
        hops = (audio.shape[1] - segment) // 160
        starts = self.context.shard(torch.randint(hops + 1, (self.schedule.batch_size,), generator=generator)) * 160
        real = torch.stack([audio[i, s:s + segment] for i, s in zip(ids.tolist(), starts.tolist())]).to(self.device)
        with torch.no_grad():
            mel = self.context.mel_fn(real)
        return mel, real

    def learning_rate(self, step):
        """Cosine over the reconstruction warm-up at `lr`, then HiFi-GAN's gentler constant GAN rate."""
        warmup = self.run_config.vocoder_warmup
        if step < warmup:
            return self.schedule.lr * learning_rate_factor(step, warmup)
        return self.run_config.vocoder_gan_lr

    def train_step(self, step):
        mel, real = self.crops(step)
        if step < self.run_config.vocoder_warmup:
            loss = self.generator(mel, real, False)
            return {"stft_loss": optimise(loss, self.model, self.optimizers["generator"])}
        with torch.no_grad():
            fake = self.model(mel)
        d_loss = optimise(self.discriminator(real, fake), self.disc, self.optimizers["discriminator"])
        self.disc.requires_grad_(False)  # the generator's step must not move the discriminators
        g_loss = optimise(self.generator(mel, real, True), self.model, self.optimizers["generator"])
        self.disc.requires_grad_(True)
        return {"d_loss": d_loss, "g_loss": g_loss}

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
        self.objective = distributed(Objective(self.model, lambda m, captions, mel: m.loss(captions, mel)),
                                     context.world)
        self.optimizers["main"] = self.adamw(self.model, weight_decay=0.01)

    def train_step(self, step):
        ids = self.context.batch_indices(step, self.schedule.batch_size, len(self.context.train))
        captions = [self.context.train.captions[i] for i in ids.tolist()]
        loss = self.objective(captions, self.context.train_mels[ids])
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
        self.objective = distributed(Objective(self.pair, lambda m, captions, generator: text.t5_pretrain_loss(
            m["encoder"], m["decoder"], captions, generator)), context.world)
        self.optimizers["main"] = self.adamw(self.pair, weight_decay=0.01)

    def train_step(self, step):
        ids = self.context.batch_indices(step, self.schedule.batch_size, len(self.context.train))
        captions = [self.context.train.captions[i] for i in ids.tolist()]
        generator = torch.Generator().manual_seed(self.run_config.seed * 7919 + step)
        return {"loss": optimise(self.objective(captions, generator), self.pair, self.optimizers["main"])}

    @torch.no_grad()
    def finish(self):
        self.pair.eval()
        generator = torch.Generator().manual_seed(0)
        loss = text.t5_pretrain_loss(self.model, self.decoder, self.context.val.captions, generator)
        return {"val_denoising_loss": loss.item()}


class FlowStage(Stage):
    """The rectified-flow transformer on cached, frozen latents and text features."""
    name = "flow"

    def __init__(self, context):
        super().__init__(context)
        self.cache = self.frozen_features()
        base = PRESETS[self.run_config.preset]
        config = type(base)(**{**base.__dict__, "context_in_dim": self.cache["txt"].shape[-1],
                               "vec_in_dim": self.cache["y"].shape[-1]})
        self.model = FluxMusic(config).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.loss_fn = ddpm_loss if self.run_config.objective == "ddpm" else velocity_loss
        self.objective = distributed(Objective(self.model, self.loss_fn), context.world)
        if self.run_config.compile:  # fuses the many small ops of a narrow model; weights stay shared
            self.objective = torch.compile(self.objective)
        self.optimizers["main"] = self.adamw(self.model, weight_decay=0.0)
        autocast = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast)

    def frozen_features(self):
        """Every training clip through the frozen VAE and text encoders, once; cached on disk."""
        path = os.path.join(self.context.run_dir, "flow_cache.pt")
        if os.path.exists(path):
            cache = load_checkpoint(path)
            if cache["num_clips"] == len(self.context.train):
                return cache
        run = self.context.run_dir
        vae = load_stage(run, "vae", self.device)
        t5, clap = load_stage(run, "t5", self.device), load_stage(run, "clap", self.device)
        tokenizer = text.ByteTokenizer(t5.config.max_length)
        captions = self.context.train.captions
        with torch.no_grad():
            latents = torch.cat([vae.encode(m) for m in self.context.train_mels.split(64)])
            ids, mask = tokenizer(captions + [""])
            ids, mask = ids.to(self.device), mask.to(self.device)
            txt = torch.cat([t5(i, m) for i, m in zip(ids.split(64), mask.split(64))])
            y = torch.cat([clap.embed_text((i, m)) for i, m in zip(ids.split(64), mask.split(64))])
        cache = {"num_clips": len(captions), "latents": latents.cpu(), "txt": txt[:-1].cpu(),
                 "txt_mask": mask[:-1].cpu(), "y": y[:-1].cpu(), "empty_txt": txt[-1].cpu(),
                 "empty_mask": mask[-1].cpu(), "empty_y": y[-1].cpu()}
        if self.context.world.main:
            save_checkpoint(cache, path)
        return cache

    def batch(self, step):
        """Latents and text for this step, with ~10% of captions swapped for the empty caption."""
        c = self.cache
        ids = self.context.batch_indices(step, self.schedule.batch_size, c["num_clips"])
        generator = torch.Generator().manual_seed(self.run_config.seed * 31337 + step)
        drop = torch.rand(len(ids), generator=generator) < self.run_config.caption_dropout
        txt, mask, y = c["txt"][ids].clone(), c["txt_mask"][ids].clone(), c["y"][ids].clone()
        txt[drop], mask[drop], y[drop] = c["empty_txt"], c["empty_mask"], c["empty_y"]
        noise = torch.randn(c["latents"][ids].shape, generator=generator)
        if self.run_config.objective == "ddpm":  # t = k / K for a uniform integer step k
            t = flow.sample_ddpm_timesteps(len(ids), generator=generator) / flow.DDPM_STEPS
        else:
            t = flow.sample_timesteps(len(ids), generator=generator)
        move = lambda *xs: [x.to(self.device) for x in xs]
        return move(c["latents"][ids], noise, t, txt, mask, y)

    def train_step(self, step):
        with self.autocast:
            loss = self.objective(*self.batch(step))
        value = optimise(loss, self.model, self.optimizers["main"])
        decay = min(self.run_config.ema_decay, (1 + step) / (10 + step))  # short warm-up: early EMA tracks fast
        with torch.no_grad():
            for ema_p, p in zip(self.ema.parameters(), self.model.parameters()):
                ema_p.lerp_(p, 1 - decay)
        return {"loss": value}

    def after_step(self, done_steps):
        every = self.run_config.sample_every
        if every and (done_steps % every == 0 or done_steps == self.schedule.steps):
            self.write_samples(done_steps)

    @torch.no_grad()
    def write_samples(self, done_steps):
        pipe = Pipeline(self.context.run_dir, self.device, flow_model=self.ema.eval(),
                        objective=self.run_config.objective, log=lambda message: None)
        captions = self.context.val.captions[:2]
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
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        t = torch.linspace(0.05, 0.95, len(x0)).to(self.device)
        loss = self.loss_fn(self.ema, x0, noise, t, cond["txt"], cond["txt_mask"], cond["y"])
        return {"val_flow_loss": loss.item()}


def velocity_loss(model, x0, noise, t, txt, txt_mask, y):
    """Rectified flow: z_t on the straight line, the network predicts the velocity ε − x0."""
    z_t = flow.interpolate(x0, noise, t)
    return flow.flow_loss(model.velocity(z_t, t, txt, txt_mask, y), x0, noise)


DDPM_ALPHAS_CUMPROD = flow.ddpm_schedule()


def ddpm_loss(model, x0, noise, t, txt, txt_mask, y):
    """The DDPM baseline on the same network: z_k = √ᾱ_k x0 + √(1−ᾱ_k) ε, the network predicts ε.
    t carries the step as k / K, which is also what the network is told."""
    k = (t * flow.DDPM_STEPS).round().long().clamp(max=flow.DDPM_STEPS - 1)
    z_k = flow.ddpm_noising(x0, noise, k, DDPM_ALPHAS_CUMPROD)
    return flow.ddpm_loss(model.velocity(z_k, t, txt, txt_mask, y), noise)


STAGE_CLASSES = {cls.name: cls for cls in (VAEStage, VocoderStage, CLAPStage, T5Stage, FlowStage)}


def build(name, context, world):
    torch.manual_seed(context.config.seed)  # the same initial weights on every process and rerun
    return STAGE_CLASSES[name](context)
