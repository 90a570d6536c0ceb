"""How results/mode/twins.json was made (a one-off record, not part of the project's CLIs).

How much does each attribute change what the flow model has to predict? The composer draws a clip's
score from its generator, so a clip rendered again from the same generator with one attribute
changed is its twin: the same key, bpm, progression and melody contour, only that attribute
different (the mode twin plays the same scale degrees in the other mode: the third, sixth and
seventh a semitone apart; the tempo twin moves its bpm to the same place in the next tempo's range).
For 256 training clips and each attribute, the mean squared difference between the clip and its
twin, as log-mels and as the VAE latents the flow model learns (the scale factor makes the latents'
variance about 1), beside the difference between two unrelated clips.

And is a change the same in every key? For the mode twins (minor minus major) and, as a control,
the drum twins (with minus without), each clip's difference averaged over time (a spectral profile:
64 mel bands, or 8 channels x 16 rows of latent), and the mean cosine similarity between the
profiles of two clips in the same key and of two clips in different keys. A change that a word alone
predicts is alike in every clip; one that depends on the key is alike only within a key.

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
    """(N, samples) and the N originals' attributes: clip i from generator (3, i), with `attribute`
    moved to its next value."""
    audio, attributes = [], []
    for i in range(NUM_CLIPS):
        rng = np.random.default_rng([3, i])
        attributes.append(sample_attributes(TRAIN_COMBINATIONS, rng))
        a = twin(attributes[-1], attribute) if attribute else attributes[-1]
        audio.append(torch.from_numpy(render_clip(a, SECONDS, SAMPLE_RATE, rng)))
    return torch.stack(audio), attributes


def key_consistency(original, changed, sign, keys):
    """Mean cosine similarity of the clips' time-averaged differences (changed - original) * sign,
    for pairs of clips in the same key and in different keys."""
    profile = ((changed - original) * sign.view(-1, *[1] * (original.dim() - 1)))
    profile = profile.mean(1 if original.dim() == 3 else 2).flatten(1)  # mel (B, T, 64); latent (B, C, T, F)
    profile = torch.nn.functional.normalize(profile, dim=1)
    cosine = profile @ profile.T
    same = torch.tensor([[a == b for b in keys] for a in keys]) & ~torch.eye(len(keys), dtype=torch.bool)
    different = torch.tensor([[a != b for b in keys] for a in keys])
    return {"same_key": cosine[same].mean().item(), "different_keys": cosine[different].mean().item()}


@torch.no_grad()
def main():
    vae = Pipeline(SOURCE, "cpu", use_vocoder=False).vae
    audio, attributes = clips()
    mel = {"original": log_mels(audio)}
    for name in ATTRIBUTES:
        mel[name] = log_mels(clips(name)[0])
    latent = {k: vae.encode(v) for k, v in mel.items()}
    out = {"num_clips": NUM_CLIPS, "latent_variance": latent["original"].var().item(), "twins": {}}
    for name, domain in (("log_mel", mel), ("latent", latent)):
        base = domain["original"]
        rows = {attribute: (domain[attribute] - base).square().mean().item() for attribute in ATTRIBUTES}
        rows["unrelated clip"] = (base.roll(1, 0) - base).square().mean().item()
        out["twins"][name] = rows
        print(name, json.dumps(rows), flush=True)
    keys = [a["key"] for a in attributes]
    signs = {"mode": torch.tensor([1.0 if a["mode"] == "major" else -1.0 for a in attributes]),  # minor - major
             "drums": torch.tensor([-1.0 if a["drums"] else 1.0 for a in attributes])}  # with - without
    out["key_consistency"] = {f"{attribute} ({name})": key_consistency(domain["original"], domain[attribute],
                                                                        signs[attribute], keys)
                              for attribute in signs for name, domain in (("log_mel", mel), ("latent", latent))}
    print(json.dumps(out["key_consistency"]), flush=True)
    with open("results/mode/twins.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
