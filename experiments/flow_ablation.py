"""The paper's ablations in miniature: at the same flow budget, what does rectified flow buy over
DDPM, and what does a wider transformer buy?

    python experiments/flow_ablation.py objective   # -> results/abl_rf/sweep.json, results/abl_ddpm/sweep.json
    python experiments/flow_ablation.py size        # -> results/size_{narrow,tiny,wide}/metrics.json

Each arm is the flow stage of `train.py --tiny` (train.TINY, with its cosine schedule over --steps)
with one change, trained by train.train into runs/<arm> on the frozen VAE, vocoder and text
encoders of --source, so that only the transformer differs:

objective: rectified flow against DDPM (`objective="ddpm"`: the same network predicting the noise),
  400 steps each; every arm sampled with its own samplers (Euler and Heun; DDIM) at 2-50 network
  evaluations, 32 held-out captions, cfg 4 (evaluate.py --sweep).
size: the presets tiny-narrow, tiny and tiny-wide (widths 64, 128, 256, depth 2 + 2), 1000 steps each;
  64 held-out captions, Euler 25, cfg 4 (evaluate.py).
"""

import argparse
import json
import os
import shutil
from dataclasses import asdict, replace

import train
from evaluate import Evaluator

COPIED = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt", "attribute_classifier.pt", "mel_attribute_classifier.pt")
ARMS = {  # ablation -> (flow steps, {results folder: changes to train.TINY})
    "objective": (400, {"abl_rf": {"objective": "rectified_flow"}, "abl_ddpm": {"objective": "ddpm"}}),
    "size": (1000, {"size_narrow": {"preset": "tiny-narrow"}, "size_tiny": {"preset": "tiny"},
                    "size_wide": {"preset": "tiny-wide"}}),
}


def write(path, out):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ablation", choices=ARMS)
    parser.add_argument("--steps", type=int, help="flow steps of every arm (default: 400 objective, 1000 size)")
    parser.add_argument("--source", default="pretrained/tiny", help="run whose frozen parts to train on")
    args = parser.parse_args(argv)
    default_steps, arms = ARMS[args.ablation]
    steps = args.steps or default_steps
    for name, changes in arms.items():
        run_dir = os.path.join("runs", name)
        os.makedirs(run_dir, exist_ok=True)
        for part in COPIED:
            if not os.path.exists(os.path.join(run_dir, part)):
                shutil.copy(os.path.join(args.source, part), run_dir)
        config = replace(train.TINY, flow=replace(train.TINY.flow, steps=steps), sample_every=0, **changes)
        metrics = train.train(run_dir, config, ["flow"])["flow"]
        evaluator = Evaluator(run_dir, num=32 if args.ablation == "objective" else 64)
        if args.ablation == "objective":
            write(os.path.join("results", name, "sweep.json"),
                  evaluator.sweep(nfes=(2, 5, 10, 25, 50), cfgs=(4.0,), steps=25))
        else:
            write(os.path.join("results", name, "metrics.json"), evaluator.evaluate(steps=25))
            write(os.path.join("results", name, "stage_metrics.json"),
                  {"flow": {**metrics, "steps": steps, "run_config": asdict(config)}})


if __name__ == "__main__":
    main()
