"""Train every part of FluxMusic from nothing, in order: vae, vocoder, clap, t5, flow.

    python train.py --tiny                 # all five stages, sized for a laptop (or, slowly, a CPU)
    python train.py --smoke                # a few steps of everything, for tests
    python train.py --stage flow           # one stage (earlier stages must be done)
    python train.py --data DIR             # your own audio + captions instead of the built-in set
    torchrun --nproc_per_node=2 train.py --run-dir runs/ddp   # data-parallel on GPUs (or CPU processes)

The first four stages build the frozen parts that the paper takes pretrained: a mel VAE
(its latent space is where the music is generated), a HiFi-GAN vocoder (mel → waveform),
and two text encoders (CLAP's pooled y and T5's token features c). The last stage trains
the rectified-flow transformer on the frozen latents and text features:

    x0 = VAE.encode(mel),  ε ~ N(0, I),  t = sigmoid(m + n) with n ~ N(0, 1),  z_t = (1 − t)·x0 + t·ε
    loss = ‖v_θ(z_t, t, y, c) − (ε − x0)‖²,   with the caption replaced by "" 10% of the time

The paper's logit-normal has m = 0; `--tiny` uses m = 1 (`RunConfig.time_mean`), which trains more
near noise, where a clip's beat grid is decided (docs/RESULTS.md, "The beat grid").

Every stage writes `<run>/<stage>.pt` atomically every few hundred steps (weights, optimiser,
EMA, step) and resumes from it; a finished stage is skipped on rerun. Ctrl-C finishes the
current step, saves, and exits; a NaN loss stops the stage and keeps the last good file.
Each stage also writes its loss curve as `<stage>_loss.csv` and `.png`.

Speed: every stage but the vocoder runs its forward pass under bf16 autocast where the hardware
has native bf16 (`--precision auto`, the default; `common.py` explains bf16 and what stays fp32),
and the flow stage is compiled with `torch.compile` (`--no-compile` keeps it eager; a failed
compile falls back to eager with one warning). `--precision fp32` gives the float32 run.

What each stage learns from and minimises is in `stages.py` (the flow step written out in
`FlowStage.train_step`; the others call their model's file, e.g. `vae.training_batch`); this file
holds the loop around it. From Python (the notebooks do this): `train.train(run_dir, config, ["vae"])`.
"""

import argparse
import contextlib
import csv
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.distributed as dist
from matplotlib.figure import Figure
from tqdm import tqdm

import stages
from common import (PRECISIONS, STAGES, CheckpointError, checkpoint_dict, git_commit, load_checkpoint, pick_device,
                    positive_int, save_checkpoint, stage_path)
from data import CAPTIONS_PER_CLIP, CLIP_SECONDS
from model import PRESETS
from vocoder import HEADS


@dataclass
class StageSize:
    """How much one stage trains: optimiser steps, clips per step, peak learning rate (warmed up,
    then decayed by stages.learning_rate_factor)."""
    steps: int
    batch_size: int
    lr: float


@dataclass
class RunConfig:
    """Everything that sizes a run; saved into every checkpoint. The defaults are `--tiny`,
    sized to train in under an hour on a 2-core CPU."""
    seconds: float = CLIP_SECONDS   # clip length; 2.56 s = 256 mel frames = 256 flow tokens
    num_clips: int = 2400           # training clips rendered from the built-in dataset
    captions_per_clip: int = CAPTIONS_PER_CLIP  # phrasings of each built-in clip that training sees
    num_val_clips: int = 64         # held-out clips (the compositional "test" split) for metrics
    seed: int = 0
    preset: str = "tiny"            # transformer size, model.PRESETS
    objective: str = "rectified_flow"  # or "ddpm": the classic baseline, same network and budget
    vae: StageSize = field(default_factory=lambda: StageSize(1200, 16, 2e-3))
    vae_crop_frames: int = 64       # the VAE trains on random 64-frame windows
    # reconstruction only: at this budget GAN steps cost ~10x a warm-up step and did not pay back
    # (docs/RESULTS.md, "The vocoder: reconstruction only"); a longer schedule adds them after the warm-up
    vocoder: StageSize = field(default_factory=lambda: StageSize(4000, 8, 1e-3))
    vocoder_warmup: int = 4000      # reconstruction-only steps before the discriminators join
    vocoder_gan_lr: float = 2e-4    # HiFi-GAN's own rate for the adversarial phase
    vocoder_segment: int = 8320     # samples per vocoder training crop (52 frames)
    vocoder_head: str = "istft"     # HiFi-GAN's output head: "istft" (frame rate, the default) or "waveform"
    # the notes in tune (docs/RESULTS.md, "The phase from the magnitude"): the iSTFT head's phase from its
    # magnitude ("free": the net says it), the phase-advance loss at 3, and a 4096-point STFT in the loss
    vocoder_phase_model: str = "from_magnitude"
    vocoder_phase_weight: float = 3.0
    vocoder_fine_stft: bool = True
    vocoder_channels: int = 128        # the iSTFT generator's width after conv_pre (halved twice before conv_post)
    # four phrasings a clip are more text to learn (docs/RESULTS.md, "Caption phrasings")
    clap: StageSize = field(default_factory=lambda: StageSize(1800, 64, 2e-3))
    t5: StageSize = field(default_factory=lambda: StageSize(1800, 64, 2e-3))
    # tempo still climbs after 5000 steps (docs/RESULTS.md, "The shipped recipe, longer")
    flow: StageSize = field(default_factory=lambda: StageSize(8000, 16, 1e-3))
    caption_dropout: float = 0.1
    # known frames in training (longform.py): a known prefix a quarter of the time, a gap to fill a quarter
    context_prefix: float = 0.25
    context_span: float = 0.25
    # logit-normal t = sigmoid(time_mean + n): 1 puts 35% of the steps above t = 0.8, where the beat grid
    # is decided, against 8% at the paper's 0 (docs/RESULTS.md, "The beat grid")
    time_mean: float = 1.0
    ema_decay: float = 0.999
    save_every: int = 200
    sample_every: int = 500         # flow samples written as training goes (0: never)
    sample_steps: int = 25
    precision: str = "auto"         # bf16 autocast where the hardware has it natively, else fp32 (common.py)
    compile: bool = True            # torch.compile the flow stage (eager if compiling fails)


TINY = RunConfig()
SMOKE = RunConfig(num_clips=12, num_val_clips=4, vae=StageSize(3, 4, 1e-3), vae_crop_frames=32,
                  vocoder=StageSize(4, 2, 2e-4), vocoder_warmup=2, clap=StageSize(3, 4, 5e-4),
                  t5=StageSize(3, 4, 1e-3), flow=StageSize(6, 4, 5e-4), save_every=2, sample_every=4, sample_steps=2,
                  compile=False)


# ----------------------------------------------------------------------------- distributed

@dataclass
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self):
        return self.rank == 0


def setup_world(device_name):
    """Single process, or one process per device under torchrun (NCCL on GPUs, gloo on CPU)."""
    if "RANK" not in os.environ:
        return World(device=pick_device(device_name))
    rank, size, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, device)


# ----------------------------------------------------------------------------- the training loop

class StopRequested(Exception):
    """Ctrl-C arrived; the loop finishes the current step, saves and exits."""


class Diverged(Exception):
    """The loss became NaN/Inf; nothing from this step is saved."""


@contextlib.contextmanager
def ctrl_c_saves_and_stops():
    """While training: the first Ctrl-C finishes the step and saves; a second stops at once
    (files are atomic anyway). The previous handler comes back afterwards."""
    state = {"stop": False}

    def handler(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (press again to quit at once)", flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def resumable_checkpoint(job, step, history):
    """Everything needed to resume a stage mid-way: the weights plus optimisers, extra modules, RNG."""
    return checkpoint_dict(job.name, job.model, step, False, asdict(job.run_config), history, job.ema,
                           extra={name: m.state_dict() for name, m in job.extra_modules.items()},
                           optimizers={name: o.state_dict() for name, o in job.optimizers.items()},
                           rng=torch.get_rng_state())


def restore(job, checkpoint, path):
    if checkpoint["config"] != asdict(job.model.config):
        raise CheckpointError(f"{path} was trained with config {checkpoint['config']}, not this run's "
                              f"{asdict(job.model.config)}; use the same --preset/--tiny/--smoke, or another --run")
    trained_objective = checkpoint.get("run_config", {}).get("objective", "rectified_flow")
    if trained_objective != job.run_config.objective:
        raise CheckpointError(f"{path} was trained with --objective {trained_objective}; pass the same "
                              f"--objective to resume it, or use another --run")
    job.model.load_state_dict(checkpoint["model"])
    if job.ema is not None and checkpoint.get("ema") is not None:
        job.ema.load_state_dict(checkpoint["ema"])
    for name, module in job.extra_modules.items():
        module.load_state_dict(checkpoint["extra"][name])
    for name, optimizer in job.optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    torch.set_rng_state(checkpoint["rng"])
    return checkpoint["step"], checkpoint["history"]


def run_stage(name, context, world, stop_state):
    """Build, resume, train and finish one stage; returns its metrics."""
    path = stage_path(context.run_dir, name)
    existing = load_checkpoint(path) if os.path.exists(path) else None
    if existing is not None and existing.get("done"):
        if world.main:
            print(f"[{name}] already trained: {path} (delete it to retrain)")
        return existing.get("metrics", {})
    job = stages.build(name, context)
    step, history = restore(job, existing, path) if existing is not None else (0, [])
    if world.main:
        print(f"[{name}] {job.describe()} — {'resuming at step ' + str(step) if step else 'starting'}; "
              f"checkpoint: {path}")
    start = time.time()
    bar = tqdm(range(step, job.size.steps), initial=step, total=job.size.steps,
               desc=name, disable=not (world.main and context.progress), dynamic_ncols=True)
    for step in bar:
        for optimizer in job.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = job.learning_rate(step)
        logs = job.train_step(step)
        if not all(math.isfinite(v) for v in logs.values()):
            raise Diverged(f"[{name}] loss became {logs} at step {step}; kept the last good checkpoint "
                           f"{path}; lower the learning rate and rerun `python train.py --stage {name}`")
        history.append({"step": step + 1, **logs})
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
        done_steps = step + 1
        if world.main and (done_steps % context.config.save_every == 0 or stop_state["stop"]):
            save_checkpoint(resumable_checkpoint(job, done_steps, history), path)
            write_loss_curve(context.run_dir, name, history)
        if world.main:
            job.after_step(done_steps)
        if stop_state["stop"]:
            raise StopRequested(f"[{name}] stopped at step {done_steps}; saved {path}. "
                                f"Rerun the same command to resume.")
    bar.close()
    metrics = job.finish() if world.main else {}
    metrics["train_seconds"] = round(time.time() - start, 1)
    if world.main:
        # every module's weights (the T5 decoder and the discriminators too, to inspect or train further),
        # but no optimiser state
        final = checkpoint_dict(name, job.model, job.size.steps, True, asdict(job.run_config), history, job.ema,
                                metrics=metrics, extra={n: m.state_dict() for n, m in job.extra_modules.items()})
        save_checkpoint(final, path)
        write_loss_curve(context.run_dir, name, history)
        print(f"[{name}] done in {metrics['train_seconds']:.0f} s: "
              + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    return metrics


def write_loss_curve(run_dir, name, history):
    """<stage>_loss.csv (every logged value) and <stage>_loss.png (their curves)."""
    if not history:
        return
    keys = list(dict.fromkeys(key for row in history for key in row))  # every phase's losses, in order
    with open(os.path.join(run_dir, f"{name}_loss.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    # a bare Figure, not pyplot: drawing to a file must not switch the backend of a notebook that trains
    fig = Figure(figsize=(6, 3.5), dpi=80)
    ax = fig.subplots()
    for key in keys[1:]:  # each loss over the steps that logged it (the vocoder's phases log different ones)
        logged = [(row["step"], row[key]) for row in history if key in row]
        ax.plot([s for s, _ in logged], smooth([v for _, v in logged]), label=key)
    ax.set_xlabel("step"), ax.set_yscale("log"), ax.set_title(f"{name} training loss"), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, f"{name}_loss.png"))


def smooth(values, width=25):
    """Running mean, so a noisy per-step loss reads as a curve."""
    out, total, window = [], 0.0, []
    for value in values:
        window.append(value)
        total += value
        if len(window) > width:
            total -= window.pop(0)
        out.append(abs(total / len(window)) + 1e-12)
    return out


# ----------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train FluxMusic from scratch: vae, vocoder, clap, t5, flow.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="the laptop/CPU-sized pipeline (default)")
    size.add_argument("--smoke", action="store_true", help="a few steps of every stage on a few clips (tests)")
    parser.add_argument("--run", "--run-dir", dest="run", default=None,
                        help="run directory (default runs/tiny, or runs/smoke with --smoke); under torchrun "
                             "spell it --run-dir, since torchrun reads --run as its own --run-path")
    parser.add_argument("--stage", choices=STAGES, help="train only this stage")
    parser.add_argument("--data", help="folder of your own audio files with captions (metadata.jsonl or .txt)")
    parser.add_argument("--preset", default="tiny",
                        help="transformer size: tiny (default), tiny-narrow, tiny-wide, small, base, large, giant")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flow-steps", type=positive_int, help="override the flow stage's step count")
    parser.add_argument("--objective", choices=["rectified_flow", "ddpm"], default="rectified_flow",
                        help="the flow stage's training objective (ddpm: the classic ε-prediction baseline)")
    parser.add_argument("--time-mean", type=float,
                        help=f"mean of the logit-normal training t (default {TINY.time_mean:g}; the paper's is 0); "
                             f"> 0 spends more steps near noise, where a clip's beat grid is decided")
    parser.add_argument("--vocoder-head", choices=HEADS, default=TINY.vocoder_head,
                        help="the vocoder stage's HiFi-GAN output head: istft (default; at the mel frame rate, "
                             "beats Griffin-Lim within --tiny) or waveform (the original, upsampling by 160)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): bf16 autocast where the CPU/GPU has native bf16, else fp32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the flow stage (default on for --tiny, off for --smoke; "
                             "falls back to eager if compiling fails)")
    args = parser.parse_args(argv)
    if args.run is None:
        args.run = "runs/smoke" if args.smoke else "runs/tiny"
    if os.path.exists(args.run) and not os.path.isdir(args.run):
        parser.error(f"--run {args.run} is a file, not a folder: name a folder for the run's checkpoints "
                     f"(it is made if missing)")
    if args.data and not os.path.isdir(args.data):
        problem = "is a file, not a folder" if os.path.exists(args.data) else "no such folder"
        parser.error(f"--data {args.data}: {problem} (it should hold audio files and captions)")
    if args.preset not in PRESETS:
        parser.error(f"--preset {args.preset}: choose one of {', '.join(PRESETS)}")
    return args


def make_run_config(args):
    config = SMOKE if args.smoke else TINY
    config = replace(config, seed=args.seed, preset=args.preset, objective=args.objective,
                     time_mean=config.time_mean if args.time_mean is None else args.time_mean,
                     vocoder_head=args.vocoder_head,
                     precision=args.precision, compile=config.compile if args.compile is None else args.compile)
    if args.flow_steps:
        config = replace(config, flow=replace(config.flow, steps=args.flow_steps))
    return config


def train(run_dir, config, names=STAGES, data_dir=None, device=None, progress=True):
    """Train `names` (in order) into `run_dir` with `config`; returns {stage: metrics}. What the
    command line runs, and what the notebooks call with smaller configs. Raises StopRequested,
    Diverged, CheckpointError or ValueError with a one-line message."""
    world = setup_world(device)
    try:
        os.makedirs(run_dir, exist_ok=True)
        torch.manual_seed(config.seed + world.rank)
        context = stages.Context(run_dir, config, data_dir, world, progress=progress)
        with ctrl_c_saves_and_stops() as stop_state:
            results = {name: run_stage(name, context, world, stop_state) for name in names}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if world.main:
        with open(os.path.join(run_dir, "timings.json"), "w") as f:
            json.dump({name: metrics.get("train_seconds") for name, metrics in results.items()}, f, indent=1)
    return results


def write_made_by(run_dir, argv):
    """<run>/made_by.json, once per run: the command and the git commit that trained it (and
    whether the working tree had uncommitted changes), so shipped weights say where they came from."""
    path = os.path.join(run_dir, "made_by.json")
    if os.path.exists(path):
        return
    commit, changes = git_commit()
    os.makedirs(run_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"command": " ".join(["python", "train.py", *argv]), "commit": commit,
                   "uncommitted_changes": changes, "date": time.strftime("%Y-%m-%d")}, f, indent=1)


def main(argv=None):
    args = parse_args(argv)
    if int(os.environ.get("RANK", 0)) == 0:
        write_made_by(args.run, sys.argv[1:] if argv is None else argv)
    # a skipped-files warning is one line for the user, not Python's "file:line: UserWarning" and source
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        train(args.run, make_run_config(args), [args.stage] if args.stage else STAGES, args.data, args.device)
    except (StopRequested, Diverged, CheckpointError, ValueError) as error:
        print(str(error), file=sys.stderr)
        sys.exit(130 if isinstance(error, StopRequested) else 1)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"all done: checkpoints in {args.run}/ — try `python sample.py --run {args.run}`")


if __name__ == "__main__":
    main()
