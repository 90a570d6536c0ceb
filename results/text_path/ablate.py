"""How results/text_path/ablate.json was made (a one-off record, not part of the project's CLIs).

Which text path carries the caption into the flow model? The transformer reads the caption
twice: T5's token features c (joint attention, per word) and CLAP's pooled y (added to the time
embedding: global adaLN modulation). Each arm trains the flow stage of `train.py --tiny` for
STEPS steps (its own cosine schedule, same seed, lr, batch) on the frozen VAE and text encoders
of pretrained/tiny, with one path replaced by what the empty caption "" gives, in training and in
sampling alike:

    both    c and y (the recipe)      c_only  y <- y("")      y_only  c <- c("")

(every arm with the paper's logit-normal t, mean 0, the recipe when the first two arms ran) then
generates the 64 held-out test captions (Euler 25, cfg 4) and judges the generated log-mels
with the run's mel-domain attribute classifier. Run from the repository root:

    python results/text_path/ablate.py both c_only y_only
"""
import dataclasses
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
import stages  # noqa: E402
import train  # noqa: E402
from classifier import accuracy, load_or_train_classifier, log_mels, render  # noqa: E402
from evaluate import embedding_frechet_distance  # noqa: E402
from pipeline import Pipeline  # noqa: E402

STEPS = int(os.environ.get("STEPS", 1000))
SOURCE = "pretrained/tiny"
FROZEN = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt", "mel_attribute_classifier.pt")


def ablate(arm, txt, mask, y, empty_txt, empty_mask, empty_y):
    """The text inputs of an arm: one path swapped for the empty caption's."""
    if arm == "c_only":
        y = empty_y.expand_as(y).clone()
    if arm == "y_only":
        txt, mask = empty_txt.expand(len(txt), -1, -1).clone(), empty_mask.expand(len(mask), -1).clone()
    return txt, mask, y


def run(arm, out):
    run_dir = f"runs/text_path_{arm}"
    os.makedirs(run_dir, exist_ok=True)
    for name in FROZEN:
        if not os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(SOURCE, name), run_dir)
    shared = "runs/text_path_both/flow_cache.pt"  # the same frozen features for every arm: encode them once
    if os.path.exists(shared) and not os.path.exists(os.path.join(run_dir, "flow_cache.pt")):
        shutil.copy(shared, run_dir)
    original = stages.FlowStage.frozen_features

    def frozen_features(stage):
        cache = dict(original(stage))
        cache["txt"], cache["txt_mask"], cache["y"] = ablate(arm, cache["txt"], cache["txt_mask"], cache["y"],
                                                             cache["empty_txt"], cache["empty_mask"], cache["empty_y"])
        return cache

    stages.FlowStage.frozen_features = frozen_features
    config = dataclasses.replace(train.TINY, flow=dataclasses.replace(train.TINY.flow, steps=STEPS),
                                 sample_every=0, precision="fp32", time_mean=0.0)  # the t of the first arms
    start = time.time()
    try:
        metrics = train.train(run_dir, config, ["flow"], progress=False)["flow"]
    finally:
        stages.FlowStage.frozen_features = original
    seconds = time.time() - start

    torch.set_grad_enabled(False)
    pipe = Pipeline(run_dir, "cpu", use_vocoder=False, precision="fp32")
    encode = pipe.encode_text
    empty = encode([""])

    def encode_ablated(captions):
        cond = encode(captions)
        txt, mask, y = ablate(arm, cond["txt"], cond["txt_mask"], cond["y"], empty["txt"][0], empty["txt_mask"][0],
                              empty["y"][0])
        return {"txt": txt, "txt_mask": mask, "y": y}

    pipe.encode_text = encode_ablated
    classifier, _ = load_or_train_classifier(run_dir, 2.56, 0, 1200, 600, "cpu", print, input="mel")
    audio, captions, attributes = render("test", 64, 2.56, 0)
    mels = torch.cat([pipe.vae.decode(pipe.generate_latents(captions[s:s + 16], seconds=2.56, steps=25, seed=s))
                      for s in range(0, 64, 16)])
    real = pipe.clap.embed_audio(log_mels(audio))
    out[arm] = {"flow_steps": STEPS, "train_seconds": round(seconds, 1), "val_flow_loss": metrics["val_flow_loss"],
                "attribute_accuracy_on_mel": accuracy(classifier.posteriors(mels), attributes),
                "fad_clap_mel": embedding_frechet_distance(real, pipe.clap.embed_audio(mels))}
    torch.set_grad_enabled(True)
    print(arm, out[arm], flush=True)


if __name__ == "__main__":
    path = "results/text_path/ablate.json"
    out = json.load(open(path)) if os.path.exists(path) else {}
    for arm in sys.argv[1:]:
        run(arm, out)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
