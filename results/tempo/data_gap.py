"""How results/tempo/data_gap.json was made (a one-off record, not part of the project's CLIs).

Is the flow model short of data? The velocity loss of a flow checkpoint on 128 of the 2400 clips it
trained on (from its flow cache) against 128 clips of the same training combinations it never saw
(train-split clips 2400-2527, encoded by the same frozen parts), at the same fixed noise and evenly
spaced t. A large gap would say it memorises; a small one that more clips would not help.

    python results/tempo/data_gap.py runs/tempo_recipe_8000   # after STEPS=8000 python results/tempo/lever.py recipe
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flow  # noqa: E402
import lever  # noqa: E402
from classifier import log_mels  # noqa: E402
from data import SynthMusicDataset  # noqa: E402
from pipeline import Pipeline  # noqa: E402

CLIPS = 128


def velocity_loss(model, x0, txt, txt_mask, y):
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    return flow.rectified_flow_loss(lambda z, t: model.velocity(z, t, txt, txt_mask, y), x0, noise,
                                    torch.linspace(0.02, 0.98, len(x0))).item()


def main(run_dir):
    torch.set_grad_enabled(False)
    pipe = Pipeline("pretrained/tiny", "cpu", use_vocoder=False)  # the frozen parts the run trained on
    cache = torch.load(os.path.join(run_dir, "flow_cache.pt"), weights_only=True)
    num_trained = cache["num_clips"]
    unseen = [SynthMusicDataset("train", num_trained + CLIPS)[i] for i in range(num_trained, num_trained + CLIPS)]
    x0 = pipe.vae.encode(log_mels(torch.stack([c["audio"] for c in unseen])))
    cond = pipe.encode_text([c["caption"] for c in unseen])
    rows = []
    for name in sorted(f for f in os.listdir(run_dir) if f.startswith("flow") and f.endswith(".pt") and "cache" not in f):
        model = lever.flow_model(torch.load(os.path.join(run_dir, name), weights_only=True))
        rows.append({"checkpoint": name,
                     "trained_clips": velocity_loss(model, cache["latents"][:CLIPS], cache["txt"][:CLIPS],
                                                    cache["txt_mask"][:CLIPS], cache["y"][:CLIPS]),
                     "unseen_clips": velocity_loss(model, x0, cond["txt"], cond["txt_mask"], cond["y"])})
        print(rows[-1], flush=True)
    with open("results/tempo/data_gap.json", "w") as f:
        json.dump({"run": run_dir, "clips": CLIPS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
