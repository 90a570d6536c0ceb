"""How results/tempo/rejudge.json was made (a one-off record, not part of the project's CLIs).

lever.py judges each snapshot on 64 held-out captions with one noise seed: ±0.06 on an accuracy,
±0.09 on a difference of two. To tell the schedules and the deeper model apart, this judges the
finished flow stages (and the 8000-step schedule at its 5000th step) again on 256 held-out clips, each with
two noise seeds (512 generations), otherwise exactly like lever.judge (Euler 25, cfg 4, the shipped
mel-domain classifier, FAD between CLAP audio embeddings of real and generated log-mels, the beat
grid).

    python results/tempo/rejudge.py    # after the lever.py arms named in FLOW_STAGES

A stage already in rejudge.json is kept, not judged again, so a stage added later costs only itself.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import accuracy  # noqa: E402
from lever import beat_grid, judge, judging_set, mode_by_asked  # noqa: E402

NUM_CLIPS, NOISE_SEEDS = 256, (0, 100_000)
FLOW_STAGES = {  # label -> checkpoint
    "cosine over 5000 steps (the recipe)": "runs/tempo_time_mean1/flow.pt",
    "cosine over 8000 steps, its 5000th step": "runs/tempo_recipe_8000/flow_step5000.pt",
    "cosine over 8000 steps, finished": "runs/tempo_recipe_8000/flow.pt",
    "peak to 4000, cosine over the last 1000 (lr_decay 0.2)": "runs/tempo_lr_decay20/flow.pt",
    "4 + 4 blocks, cosine over 2500 steps (the recipe's CPU time)": "runs/tempo_depth4_2500/flow.pt",
    "RoPE time ids x 2.5, theta 10000 (rope_fast_time)": "runs/tempo_rope_fast_time/flow.pt",
    "RoPE time ids x 2.5, theta 30 (rope_fast)": "runs/tempo_rope_fast/flow.pt",
    "the shipped recipe, 30% of the captions partial tag lists (partial_tags)": "runs/tempo_partial_tags/flow.pt",
}
OUT = "results/tempo/rejudge.json"


def mean_of(rows):
    """The mean of nested dicts of numbers."""
    if isinstance(rows[0], dict):
        return {k: mean_of([r[k] for r in rows]) for k in rows[0]}
    return sum(rows) / len(rows)


@torch.no_grad()
def main():
    pipe, classifier, captions, attributes, real, real_embedding = judging_set(NUM_CLIPS)
    heard = classifier.posteriors(real)
    out = {"num_clips": NUM_CLIPS, "noise_seeds": NOISE_SEEDS,
           "real": {"attribute_accuracy_on_mel": accuracy(heard, attributes),
                    "mode_accuracy_by_asked": mode_by_asked(heard["mode"], attributes),
                    "beat_grid": beat_grid(real, attributes)}, "flow_stages": {}}
    if os.path.exists(OUT):
        out["flow_stages"] = json.load(open(OUT))["flow_stages"]
    for label, path in FLOW_STAGES.items():
        if label in out["flow_stages"]:
            continue
        if not os.path.exists(path):
            print("missing", path)
            continue
        checkpoint = torch.load(path, weights_only=True)
        rows = [judge(pipe, classifier, checkpoint, captions, attributes, real_embedding, seed)
                for seed in NOISE_SEEDS]
        out["flow_stages"][label] = {"checkpoint": path, "step": checkpoint["step"], **mean_of(rows),
                                     "per_seed": rows}
        print(label, json.dumps(mean_of(rows)), flush=True)
        with open(OUT, "w") as f:  # after every stage, so a stopped run keeps what it judged
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
