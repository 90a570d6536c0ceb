"""How results/mode/swap_loss.json was made (a one-off record, not part of the project's CLIs).

Which words does a flow model use? Its velocity loss on real training clips with the true caption,
against the same caption with one attribute's words swapped (the same template and draws; the
tempo and the instrument moved to the next value, mode and drums flipped) and against the empty
caption, with the same noise and times for every variant. A word the model uses costs loss when it
is wrong; a word it ignores costs nothing. The times are 8 fixed values per clip, spread over (0, 1)
(0.06, 0.19, ..., 0.94), so every band of t counts alike; the gap is also given above t = 0.5.

    python results/mode/swap_loss.py [FLOW_CHECKPOINT ...]    # default: pretrained/tiny/flow.pt
    OUT=results/mode/swap_loss_partial_tags.json python results/mode/swap_loss.py \
        runs/tempo_partial_tags/flow_step{1000,2000,3000,4000}.pt runs/tempo_partial_tags/flow.pt
    CAPTIONS=key_in_caption OUT=results/mode/swap_loss_key_in_caption.json python results/mode/swap_loss.py \
        runs/tempo_key_in_caption_2000/flow_step1000.pt runs/tempo_key_in_caption_2000/flow.pt
    OUT=results/mode/swap_loss_one_key.json python results/mode/swap_loss.py   # the one-key pretrained/tiny

Every JSON here but swap_loss_one_key.json was made while the dataset drew twelve keys (before
music.KEYS = ("C",), 2026-12-04); to remake one, set music.KEYS = music.NOTE_NAMES first.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "results", "tempo"))
from classifier import ATTRIBUTES, log_mels, render  # noqa: E402
from flow import interpolate  # noqa: E402
import data  # noqa: E402
from lever import AUDIO_CHANGES, CAPTION_CHANGES, flow_model  # noqa: E402
from music import attributes_to_caption  # noqa: E402
from pipeline import Pipeline  # noqa: E402

NUM_CLIPS, TIMES, SOURCE = 256, torch.linspace(1 / 16, 15 / 16, 8), "pretrained/tiny"
# CAPTIONS=ARM: captions as that lever.py arm trained on (e.g. key_in_caption: "..., in D minor")
CAPTION = CAPTION_CHANGES[os.environ["CAPTIONS"]](attributes_to_caption) if "CAPTIONS" in os.environ else attributes_to_caption
if "CLIPS" in os.environ:  # CLIPS=ARM: clips as that lever.py arm trained on (e.g. one_key: every clip in C)
    data.sample_attributes = AUDIO_CHANGES[os.environ["CLIPS"]](data.sample_attributes)


def swapped(attributes, name):
    values = ATTRIBUTES[name]
    return {**attributes, name: values[(values.index(attributes[name]) + 1) % len(values)]}


def variants(attributes):
    """{variant: captions}: the true caption, each attribute swapped, and the empty caption."""
    def caption(a, i):
        return CAPTION(a, np.random.default_rng([7, i]))
    out = {"true": [caption(a, i) for i, a in enumerate(attributes)]}
    for name in ATTRIBUTES:
        out[f"{name} swapped"] = [caption(swapped(a, name), i) for i, a in enumerate(attributes)]
    out["empty"] = [""] * len(attributes)
    return out


@torch.no_grad()
def losses(pipe, latents, captions, noise):
    """(clips, times) velocity loss of each clip at each of TIMES."""
    text = pipe.encode_text(captions)
    rows = []
    for k, t in enumerate(TIMES):
        t = t.expand(len(latents))
        v = pipe.flow_model.velocity(interpolate(latents, noise[k], t), t, text["txt"], text["txt_mask"], text["y"])
        rows.append((v - (noise[k] - latents)).square().flatten(1).mean(1))
    return torch.stack(rows, 1)


def main():
    checkpoints = sys.argv[1:] or [os.path.join(SOURCE, "flow.pt")]
    pipe = Pipeline(SOURCE, "cpu", use_vocoder=False)
    audio, _, attributes = render("train", NUM_CLIPS, 2.56, 5)
    with torch.no_grad():
        latents = torch.cat([pipe.vae.encode(m) for m in log_mels(audio).split(64)])
    noise = torch.randn((len(TIMES),) + latents.shape, generator=torch.Generator().manual_seed(0))
    texts = variants(attributes)
    out = {"num_clips": NUM_CLIPS, "times": TIMES.tolist(), "examples": {k: v[:2] for k, v in texts.items()},
           "checkpoints": {}}
    for path in checkpoints:
        pipe.flow_model = flow_model(torch.load(path, weights_only=True))
        loss = {name: torch.cat([losses(pipe, latents[s:s + 64], captions[s:s + 64], noise[:, s:s + 64])
                                 for s in range(0, NUM_CLIPS, 64)]) for name, captions in texts.items()}
        base = loss["true"]
        row = {"loss_true": base.mean().item()}
        for name, value in loss.items():
            if name == "true":
                continue
            gap = (value - base).mean(1)  # per clip, over the times
            high = (value - base)[:, TIMES > 0.5].mean(1)
            row[name] = {"gap": gap.mean().item(), "gap_stderr": (gap.std() / len(gap) ** 0.5).item(),
                         "gap_above_t_half": high.mean().item()}
        out["checkpoints"][path] = row
        print(path, json.dumps(row), flush=True)
    with open(os.environ.get("OUT", "results/mode/swap_loss.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
