"""How results/mode/probe.json was made (a one-off record, not part of the project's CLIs).

Do the text features carry each attribute? A linear probe (softmax regression on standardised
features, 300 Adam steps) reads each attribute from the frozen text encoders of pretrained/tiny:
CLAP's pooled y and T5's token features c averaged over the caption, fitted on 2000 captions of the
training combinations and scored on 400 captions of the held-out test combinations. If a probe
reads an attribute, the flow model is given it; whether it uses it is results/mode/siblings.py's
question.

    python results/mode/probe.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
import text  # noqa: E402
from classifier import ATTRIBUTES  # noqa: E402
from common import load_stage  # noqa: E402
from music import TEST_COMBINATIONS, TRAIN_COMBINATIONS, attributes_to_caption, sample_attributes  # noqa: E402

SOURCE = "pretrained/tiny"


def captions(combinations, num, seed):
    attributes, out = [], []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        attributes.append(sample_attributes(combinations, rng))
        out.append(attributes_to_caption(attributes[-1], rng))
    return attributes, out


def features(t5, clap, tokenizer, texts):
    ids, mask = tokenizer(texts)
    c = t5(ids, mask)
    return {"clap_y": clap.embed_text((ids, mask)),
            "t5_c_mean": (c * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)}


def probe(x_train, y_train, x_test, y_test, steps=300):
    """Held-out accuracy of a softmax regression fitted on (x_train, y_train)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(x_train.shape[1], int(y_train.max()) + 1, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(x_train @ weight, y_train) + 1e-3 * weight.square().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return ((x_test @ weight).argmax(1) == y_test).float().mean().item()


@torch.no_grad()
def main():
    torch.manual_seed(0)
    t5, clap = load_stage(SOURCE, "t5", "cpu"), load_stage(SOURCE, "clap", "cpu")
    tokenizer = text.ByteTokenizer(t5.config.max_length)
    train_attributes, train_captions = captions(TRAIN_COMBINATIONS, 2000, 1)
    test_attributes, test_captions = captions(TEST_COMBINATIONS, 400, 2)
    train_x, test_x = (features(t5, clap, tokenizer, c) for c in (train_captions, test_captions))
    out = {}
    for name, values in ATTRIBUTES.items():
        train_y, test_y = (torch.tensor([values.index(a[name]) for a in group])
                           for group in (train_attributes, test_attributes))
        out[name] = {key: probe(train_x[key], train_y, test_x[key], test_y) for key in train_x}
        print(name, out[name], flush=True)
    with open("results/mode/probe.json", "w") as f:
        json.dump({"train_captions": 2000, "test_captions": 400, "accuracy_on_held_out_combinations": out}, f, indent=1)


if __name__ == "__main__":
    main()
