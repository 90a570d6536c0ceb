"""How results/tempo/guidance.json was made (a one-off record, not part of the project's CLIs).

Sampling-side levers for tempo on the shipped run (no training): the guidance scale, and a scale that
depends on t, strong only where the beat grid is decided (t above 0.6, see grid.py's denoising
check) or only below it. 64 held-out captions, Euler 25, the seeds and mel-domain judge of lever.py.

    python results/tempo/guidance.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flow  # noqa: E402
import lever  # noqa: E402

ARMS = {  # name -> (scale where t > SPLIT, scale where t <= SPLIT)
    "cfg 4": (4, 4), "cfg 7": (7, 7), "cfg 10": (10, 10),
    "cfg 10 above t = 0.6, 4 below": (10, 4), "cfg 4 above t = 0.6, 10 below": (4, 10),
}
SPLIT = 0.6


def guided_by_time(guided_velocity_fn, high, low):
    """flow.guided_velocity_fn with the scale chosen per step from t (the pipeline's own scale ignored)."""
    def make(model_fn, cond, uncond, scale):
        above, below = (guided_velocity_fn(model_fn, cond, uncond, s) for s in (high, low))
        return lambda z, t: (above if t[0].item() > SPLIT else below)(z, t)
    return make


def main():
    torch.set_grad_enabled(False)
    pipe, classifier, captions, attributes, real, real_embedding = lever.judging_set(64)
    checkpoint = torch.load("pretrained/tiny/flow.pt", weights_only=True)
    out = {"checkpoint": "pretrained/tiny/flow.pt", "split_t": SPLIT, "real_beat_grid": lever.beat_grid(real, attributes),
           "rows": []}
    original = flow.guided_velocity_fn
    for name, (high, low) in ARMS.items():
        flow.guided_velocity_fn = guided_by_time(original, high, low)
        row = {"guidance": name, **lever.judge(pipe, classifier, checkpoint, captions, attributes, real_embedding)}
        flow.guided_velocity_fn = original
        out["rows"].append(row)
        print(row, flush=True)
    with open("results/tempo/guidance.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
