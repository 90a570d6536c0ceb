"""What does each step of a stage's training buy? Quality against training steps, for the flow
stage and for the vocoder stage.

    python experiments/training_curve.py flow --steps 16000 --snapshot-every 2000
        # -> results/training_curve/flow_recipe_16000.json: --tiny's flow recipe at twice its steps
    python experiments/training_curve.py flow --steps 5000 --time-mean 0      # the paper's training t
    python experiments/training_curve.py flow --steps 5000 --time-mean 1      # (docs/RESULTS.md, "The beat grid")
    python experiments/training_curve.py vocoder --arm istft_phase3           # -> results/training_curve/vocoder.json
    python experiments/training_curve.py plot results/training_curve/flow_recipe_16000.json \
        --out results/training_curve/flow_recipe_16000.png

flow: the flow stage of `train.py --tiny` (train.TINY, its cosine schedule stretched over --steps,
with --time-mean if given), trained by train.train on the frozen VAE, vocoder and text encoders of
--source into runs/curve_flow_<label>. The EMA weights are kept every --snapshot-every steps, and
each snapshot is judged as every flow experiment here is (evaluate.MelJudge: the 64 held-out test
captions, Euler 25, cfg 4, the mel-domain classifier, FAD between CLAP audio embeddings of real and
generated log-mels, the beat grid).

vocoder: the vocoder stage of train.TINY, trained from nothing into runs/curve_vocoder_<arm> with
reconstruction steps and then, in some arms, GAN steps. The generator is kept every 500 steps and
each copy is measured against Griffin-Lim on the first 32 held-out clips (vocoder.compare_with_griffin_lim:
log-mel L1 of the re-analysed audio, multi-resolution STFT distance) and by the pitch judge
(pitch.judge: in-scale energy, mode by scale fit, notes heard, pitch-class similarity). Arms
(VOCODER_ARMS): istft (the free phase model, no phase loss: the recipe before the pitch judge),
istft_phase1 / istft_phase3 (with the phase-advance loss at weight 1 or 3), istft_phase3_gan500
(3500 of those, then 500 GAN steps), magnitude_phase3 (the phase from the magnitude's slope, with
the phase loss at 3), magnitude_phase3_fine (also a 4096-point STFT in the loss), hann_ratio_phase3_fine
(the same with the exact two-bin Hann estimate, detached), magnitude_phase10_fine (the phase loss at 10),
magnitude_phase3_fine_8000 (the recipe at twice the steps), magnitude_phase3_wide (twice the channels),
waveform (HiFi-GAN's original waveform head).

How the snapshots are kept: train.py rewrites a stage's checkpoint every save_every steps (set here to
the snapshot interval); a thread copies each one that lands on a snapshot step while the stage trains
in the main thread, which keeps Ctrl-C. Rerunning a command resumes a stopped training.
"""

import argparse
import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, is_dataclass, replace

import torch
from matplotlib.figure import Figure

import train
from audio import MelSpectrogram
from classifier import CHANCE, render
import pitch
from data import CLIP_SECONDS, SynthMusicDataset
from evaluate import MelJudge
from pipeline import model_from_checkpoint
from vocoder import HiFiGAN, HiFiGANConfig, compare_with_griffin_lim

OUT = "results/training_curve"
FROZEN = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt")
VOCODER_EVERY, VOCODER_CLIPS = 500, 32


def vocoder_arm(phase_model, phase_weight, fine_stft=False, channels=128, **more):
    """An arm's vocoder settings, every knob the recipe has turned spelled out (so an arm means the
    same thing whatever train.TINY's defaults are): 4000 reconstruction steps unless `more` says."""
    return {"vocoder_phase_model": phase_model, "vocoder_phase_weight": phase_weight,
            "vocoder_fine_stft": fine_stft, "vocoder_channels": channels, **more}


VOCODER_ARMS = {"istft": vocoder_arm("free", 0.0), "istft_phase1": vocoder_arm("free", 1.0),
                "istft_phase3": vocoder_arm("free", 3.0),
                "istft_phase3_gan500": vocoder_arm("free", 3.0, vocoder_warmup=3500),
                "magnitude_phase3": vocoder_arm("from_magnitude", 3.0),
                "magnitude_phase3_fine": vocoder_arm("from_magnitude", 3.0, fine_stft=True),
                "hann_ratio_phase3_fine": vocoder_arm("hann_ratio", 3.0, fine_stft=True),
                "magnitude_phase10_fine": vocoder_arm("from_magnitude", 10.0, fine_stft=True),
                "magnitude_phase3_fine_8000": vocoder_arm("from_magnitude", 3.0, fine_stft=True, vocoder_warmup=8000,
                                                          vocoder=replace(train.TINY.vocoder, steps=8000)),
                "magnitude_phase3_wide": vocoder_arm("from_magnitude", 3.0, channels=256),
                "waveform": vocoder_arm("free", 0.0, vocoder_head="waveform")}


@contextlib.contextmanager
def keeping_snapshots(path, steps):
    """While the block trains, copy each checkpoint written to `path` at one of `steps` to
    <path>_step<N>.pt; yields {step: seconds since the block began}."""
    seconds, stop, start = {}, threading.Event(), time.time()

    def keep():
        copy = path + ".copy"
        shutil.copy(path, copy)  # a copy first: train.py may replace `path` while we read it
        checkpoint = torch.load(copy, weights_only=True)
        if checkpoint["step"] in steps and not checkpoint["done"]:
            os.replace(copy, f"{path[:-3]}_step{checkpoint['step']}.pt")
            seconds[checkpoint["step"]] = round(time.time() - start, 1)
        else:
            os.remove(copy)

    def watch():
        last = None
        while True:
            finished = stop.is_set()  # look once more after training has ended
            stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else None
            if stamp not in (None, last):
                last = stamp
                keep()
            if finished or stop.wait(0.5):
                if finished:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seconds
    finally:
        stop.set()
        thread.join()


def snapshot_path(run_dir, stage, step, steps):
    """The finished checkpoint for the last step, the kept copy for the others."""
    return os.path.join(run_dir, f"{stage}.pt" if step == steps else f"{stage}_step{step}.pt")


def flow_curve(args):
    label = f"time_mean{args.time_mean:g}" if args.time_mean is not None else "recipe"
    label = f"{label}_{args.steps}"
    run_dir = f"runs/curve_flow_{label}"
    os.makedirs(run_dir, exist_ok=True)
    for name in FROZEN:
        if not os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(args.source, name), run_dir)
    config = replace(train.TINY, flow=replace(train.TINY.flow, steps=args.steps), sample_every=0,
                     save_every=args.snapshot_every)
    if args.time_mean is not None:
        config = replace(config, time_mean=args.time_mean)
    snapshots = list(range(args.snapshot_every, args.steps, args.snapshot_every)) + [args.steps]
    metrics = {}
    if not args.judge_only:
        with keeping_snapshots(os.path.join(run_dir, "flow.pt"), snapshots):
            metrics = train.train(run_dir, config, ["flow"])["flow"]
    judge = MelJudge(args.source, device=args.device)
    out = {"stage": "flow", "label": label, "steps": args.steps, "time_mean": config.time_mean,
           "source": args.source, "train_seconds": metrics.get("train_seconds"),
           "val_flow_loss": metrics.get("val_flow_loss"), **judge.judge_real(), "rows": []}
    for step in snapshots:
        path = snapshot_path(run_dir, "flow", step, args.steps)
        if not os.path.exists(path):
            continue  # a stopped training is judged on the snapshots it reached (--judge-only)
        checkpoint = torch.load(path, weights_only=True)
        row = {"flow_steps": step, **judge.judge(model_from_checkpoint("flow", checkpoint, args.device))}
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    write(os.path.join(OUT, f"flow_{label}.json"), out)


def vocoder_curve(args):
    arm = VOCODER_ARMS[args.arm]
    config = replace(train.TINY, **arm, save_every=VOCODER_EVERY)
    steps = config.vocoder.steps
    run_dir = f"runs/curve_vocoder_{args.arm}"
    snapshots = list(range(VOCODER_EVERY, steps, VOCODER_EVERY)) + [steps]
    start = time.time()
    with keeping_snapshots(os.path.join(run_dir, "vocoder.pt"), snapshots) as seconds:
        train.train(run_dir, config, ["vocoder"])
    seconds[steps] = round(time.time() - start, 1)  # the seconds column: training time to each snapshot
    audio, _, attributes = render("test", VOCODER_CLIPS, CLIP_SECONDS, 0)
    scores = [SynthMusicDataset("test", VOCODER_CLIPS, CLIP_SECONDS, 0).score(i) for i in range(VOCODER_CLIPS)]
    rows = []
    for step in snapshots:
        checkpoint = torch.load(snapshot_path(run_dir, "vocoder", step, steps), weights_only=True)
        generator = HiFiGAN(HiFiGANConfig(**checkpoint["config"]))
        generator.load_state_dict(checkpoint["model"])
        with torch.no_grad():
            measured = compare_with_griffin_lim(generator.eval(), audio, MelSpectrogram())
            vocoded = torch.cat([generator(m) for m in MelSpectrogram()(audio).split(16)])[:, :audio.shape[1]]
        rows.append({"step": step, "seconds": seconds.get(step), **measured,
                     **pitch.judge(vocoded, attributes, scores, audio)})
        print(json.dumps(rows[-1]), flush=True)
    path = os.path.join(OUT, "vocoder.json")
    out = json.load(open(path)) if os.path.exists(path) else {}
    out[args.arm] = {"config": checkpoint["config"], "changes": {k: asdict(v) if is_dataclass(v) else v for k, v in arm.items()}, "gan": steps - config.vocoder_warmup, "rows": rows}
    write(path, out)


def plot(args):
    """Accuracy per attribute (colour) and FAD against flow steps, one line style per JSON."""
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    for (path, style) in zip(args.json, ("-", "--", ":", "-.")):
        rows = json.load(open(path))["rows"]
        steps = [r["flow_steps"] for r in rows]
        for i, name in enumerate(CHANCE):
            axes[0].plot(steps, [r["attribute_accuracy_on_mel"][name] for r in rows], style, marker="o", ms=3,
                         color=f"C{i}", label=name if path == args.json[0] else None)
        axes[1].plot(steps, [r["fad_clap_mel"] for r in rows], style, marker="o", ms=3, color="k",
                     label=os.path.basename(path)[:-5])
    for i, chance in enumerate(CHANCE.values()):
        axes[0].axhline(chance, color=f"C{i}", lw=0.5, alpha=0.5)
    axes[0].set_title("attribute accuracy on the mel (thin lines: chance)", fontsize=9)
    axes[1].set_title("FAD between CLAP audio embeddings, on the mel", fontsize=9)
    for ax in axes:
        ax.set_xlabel("flow steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


def write(path, out):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    flow = sub.add_parser("flow", help="the flow stage on frozen parts, its EMA snapshots judged on the mel")
    flow.add_argument("--steps", type=int, default=train.TINY.flow.steps,
                      help=f"flow steps; the cosine schedule spans them (default {train.TINY.flow.steps}, --tiny's)")
    flow.add_argument("--snapshot-every", type=int, default=1000, help="steps between judged snapshots (default 1000)")
    flow.add_argument("--time-mean", type=float, help=f"logit-normal mean of the training t "
                                                      f"(default {train.TINY.time_mean:g}, --tiny's)")
    flow.add_argument("--source", default="pretrained/tiny", help="run whose frozen parts and judge to use")
    flow.add_argument("--judge-only", action="store_true", help="judge the snapshots already kept, train nothing")
    flow.add_argument("--device", default="cpu", help="where to judge (default cpu)")
    vocoder = sub.add_parser("vocoder", help="the vocoder stage, every 500th step against Griffin-Lim and by pitch")
    vocoder.add_argument("--arm", choices=VOCODER_ARMS, default="istft")
    drawing = sub.add_parser("plot", help="draw flow curves (JSON files this script wrote)")
    drawing.add_argument("json", nargs="+")
    drawing.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    if args.stage == "flow" and (args.snapshot_every < 1 or args.steps < args.snapshot_every):
        parser.error("--snapshot-every must be between 1 and --steps")
    return args


def main(argv=None):
    args = parse_args(argv)
    {"flow": flow_curve, "vocoder": vocoder_curve, "plot": plot}[args.stage](args)


if __name__ == "__main__":
    main()
