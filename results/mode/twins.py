"""How results/mode/twins.json was made (a one-off record, not part of the project's CLIs).

How much does each attribute change what the flow model has to predict? The composer draws a clip's
score from its generator, so a clip rendered again from the same generator with one attribute
changed is its twin: the same key, bpm, progression and melody contour, only that attribute
different (the mode twin plays the same scale degrees in the other mode: the third, sixth and
seventh a semitone apart; the tempo twin moves its bpm to the same place in the next tempo's range).
For 256 training clips and each attribute, the mean squared difference between the clip and its
twin, as log-mels and as the VAE latents the flow model learns (the scale factor makes the latents'
variance about 1), beside the difference between two unrelated clips.

    python results/mode/twins.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import ATTRIBUTES, log_mels  # noqa: E402
from data import SAMPLE_RATE  # noqa: E402
from music import TEMPOS, TRAIN_COMBINATIONS, render_clip, sample_attributes  # noqa: E402
from pipeline import Pipeline  # noqa: E402
from swap_loss import swapped  # noqa: E402

NUM_CLIPS, SECONDS, SOURCE = 256, 2.56, "pretrained/tiny"


def twin(attributes, name):
    """The attributes with `name` moved to its next value (a tempo twin keeps its place in the range)."""
    out = swapped(attributes, name)
    if name == "tempo":
        (low, high), (new_low, new_high) = TEMPOS[attributes["tempo"]], TEMPOS[out["tempo"]]
        out["bpm"] = new_low + (attributes["bpm"] - low) / (high - low) * (new_high - new_low)
    return out


def clips(attribute=None):
    """(N, samples): clip i from generator (3, i), with `attribute` moved to its next value."""
    out = []
    for i in range(NUM_CLIPS):
        rng = np.random.default_rng([3, i])
        a = sample_attributes(TRAIN_COMBINATIONS, rng)
        out.append(torch.from_numpy(render_clip(twin(a, attribute) if attribute else a, SECONDS, SAMPLE_RATE, rng)))
    return torch.stack(out)


@torch.no_grad()
def main():
    vae = Pipeline(SOURCE, "cpu", use_vocoder=False).vae
    mel = {"original": log_mels(clips())}
    for name in ATTRIBUTES:
        mel[name] = log_mels(clips(name))
    latent = {k: vae.encode(v) for k, v in mel.items()}
    out = {"num_clips": NUM_CLIPS, "latent_variance": latent["original"].var().item(), "twins": {}}
    for name, domain in (("log_mel", mel), ("latent", latent)):
        base = domain["original"]
        rows = {attribute: (domain[attribute] - base).square().mean().item() for attribute in ATTRIBUTES}
        rows["unrelated clip"] = (base.roll(1, 0) - base).square().mean().item()
        out["twins"][name] = rows
        print(name, json.dumps(rows), flush=True)
    with open("results/mode/twins.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
