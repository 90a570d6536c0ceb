"""What inference needs from a training run, and nothing else: the weights a user samples with.

    python export.py --run runs/tiny --out pretrained/tiny

A finished run folder holds much more than sampling needs: every stage's loss history, the
flow model's raw weights beside its EMA copy, the T5 decoder and the HiFi-GAN discriminators
(pretraining-only modules), and the flow stage's feature cache (every training clip encoded:
~200 MB). An exported folder keeps, per stage, only the weights `load_stage` loads (the EMA
copy where there is one, since those are the weights to sample with), the model's config, the
stage's held-out metrics and the run's settings; plus the attribute classifiers `evaluate.py`
would otherwise retrain, the run's metrics JSON, and `made_by.json` (the command and the git
commit that trained the run). The weights are stored in bf16 (half of fp32's bytes; loading
widens them back): bf16 keeps fp32's exponent range and 8 of its 24 significant bits, which moves
no held-out metric beyond the noise of the evaluation (docs/RESULTS.md, "Shipping in bf16"), and
every shipped version stays in the history of every clone. It is an ordinary run folder to
`sample.py`, `evaluate.py` and the notebooks, which use `runs/tiny` when it exists and
`pretrained/tiny` otherwise (`common.default_run`).
"""

import argparse
import json
import os
import shutil
import sys

import torch

from common import STAGES, CheckpointError, checkpoint_dict, save_checkpoint, stage_path
from pipeline import load_stage

# evaluation files worth shipping with the weights: small, and slow to remake
KEPT_FILES = ("attribute_classifier.pt", "mel_attribute_classifier.pt", "metrics.json", "chain.json", "sweep.json",
              "timings.json", "made_by.json")


STORAGE = {"bf16": torch.bfloat16, "fp32": torch.float32}


def inference_checkpoint(run_dir, stage, dtype=torch.bfloat16):
    """One finished stage's checkpoint without its training state: the weights `load_stage`
    samples with (the EMA copy where there is one) with every float tensor stored as `dtype`, its
    config, metrics and run settings."""
    model, checkpoint = load_stage(run_dir, stage, return_checkpoint=True)  # refuses an unfinished stage
    exported = checkpoint_dict(stage, model, checkpoint["step"], True, checkpoint.get("run_config", {}),
                               metrics=checkpoint.get("metrics"))
    exported["model"] = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                         for name, tensor in exported["model"].items()}
    return exported


def export(run_dir, out_dir, dtype=torch.bfloat16):
    """Write run_dir's inference weights (as `dtype`) and evaluation files into out_dir; returns its
    size in bytes."""
    checkpoints = {stage: inference_checkpoint(run_dir, stage, dtype) for stage in STAGES}
    os.makedirs(out_dir, exist_ok=True)
    for stage, checkpoint in checkpoints.items():
        save_checkpoint(checkpoint, stage_path(out_dir, stage))
    for name in KEPT_FILES:
        if os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(run_dir, name), os.path.join(out_dir, name))
    return sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Copy a run's inference weights (no training state) to a folder.")
    parser.add_argument("--run", default="runs/tiny", help="finished run folder (default runs/tiny)")
    parser.add_argument("--out", default="pretrained/tiny", help="where to write them (default pretrained/tiny)")
    parser.add_argument("--storage", choices=STORAGE, default="bf16",
                        help="the weights' stored precision (default bf16: half the size, the same metrics)")
    args = parser.parse_args(argv)
    if os.path.abspath(args.run) == os.path.abspath(args.out):
        parser.error("--out must differ from --run: exporting in place would delete the training state")
    try:
        size = export(args.run, args.out, STORAGE[args.storage])
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    made_by = os.path.join(args.out, "made_by.json")
    if os.path.exists(made_by):
        with open(made_by) as f:
            print(f"made by: {json.load(f)}")
    print(f"wrote {args.out}/: {size / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
