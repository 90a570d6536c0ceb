"""How results/tempo/lever_<arm>.json was made (a one-off record, not part of the project's CLIs).

One lever against tempo and mode, at the `--tiny` flow budget: the flow stage of `train.py --tiny`
(5000 steps, its own cosine schedule, seed, lr, batch) trained on the frozen VAE and text encoders of
pretrained/tiny with one change, the EMA weights copied at every 1000 steps, and each copy judged like
results/tiny/flow_curve.json (64 held-out captions, Euler 25, cfg 4, the mel-domain classifier, FAD
between CLAP audio embeddings), so the two curves compare step for step. Also the beat grid itself:
the onset strength's autocorrelation (classifier.py's tempo feature), its highest peak at the lags of
60-160 bpm eighths and quarters (15-110 frames: is there any steady pulse?) and its value at the
clip's true eighth (is it the caption's pulse?).

    python results/tempo/lever.py theta100      # RoPE theta 10000 -> 100 (axes of 32 and 8 tokens)
    python results/tempo/lever.py recipe        # nothing changed: the control at this machine's precision
"""
import dataclasses
import json
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.getcwd())
import model  # noqa: E402
import train  # noqa: E402
from classifier import accuracy, load_or_train_classifier, log_mels, render  # noqa: E402
from common import MODEL_CLASSES  # noqa: E402
from evaluate import embedding_frechet_distance  # noqa: E402
from pipeline import Pipeline  # noqa: E402

STEPS = int(os.environ.get("STEPS", 5000))
SNAPSHOTS = tuple(range(1000, STEPS + 1, 1000))
SOURCE = "pretrained/tiny"
FROZEN = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt", "mel_attribute_classifier.pt")
ARMS = {  # arm -> (changes to model.PRESETS["tiny"], changes to the RunConfig)
    "recipe": ({}, {}),
    "theta100": ({"theta": 100}, {}),
    "time_mean1": ({}, {"time_mean": 1.0}),
}


def onset_autocorrelation(mel, max_lag=120):
    """(B, T, 64) log-mel -> (B, max_lag - 1) autocorrelation of the spectral flux at lags 1 .. max_lag - 1."""
    onset = F.relu(mel.diff(dim=1)).mean(2)
    onset = onset - onset.mean(1, keepdim=True)
    power = onset.square().mean(1) + 1e-8
    return torch.stack([(onset[:, :-lag] * onset[:, lag:]).mean(1) / power for lag in range(1, max_lag)], 1)


def beat_grid(mel, attributes):
    ac = onset_autocorrelation(mel)
    eighth = [round(3000.0 / a["bpm"]) for a in attributes]  # frames of 10 ms
    return {"pulse_peak": ac[:, 14:110].max(1).values.mean().item(),
            "at_true_eighth": torch.stack([ac[i, e - 1] for i, e in enumerate(eighth)]).mean().item()}


def judge(pipe, classifier, checkpoint, captions, attributes, real_embedding):
    model_class, config_class = MODEL_CLASSES["flow"]
    pipe.flow_model = model_class(config_class(**checkpoint["config"]))
    pipe.flow_model.load_state_dict(checkpoint["ema"] or checkpoint["model"])
    pipe.flow_model.eval()
    mels = torch.cat([pipe.vae.decode(pipe.generate_latents(captions[s:s + 16], seconds=2.56, steps=25, seed=s))
                      for s in range(0, 64, 16)])
    return {"attribute_accuracy_on_mel": accuracy(classifier.posteriors(mels), attributes),
            "fad_clap_mel": embedding_frechet_distance(real_embedding, pipe.clap.embed_audio(mels)),
            "beat_grid": beat_grid(mels, attributes)}


def run(arm):
    preset_changes, config_changes = ARMS[arm]
    run_dir = f"runs/tempo_{arm}"
    os.makedirs(run_dir, exist_ok=True)
    for name in FROZEN:
        if not os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(SOURCE, name), run_dir)
    shared = "runs/text_path_both/flow_cache.pt"  # the frozen parts' features, the same for every arm
    if os.path.exists(shared) and not os.path.exists(os.path.join(run_dir, "flow_cache.pt")):
        shutil.copy(shared, run_dir)
    model.PRESETS["tiny"] = dataclasses.replace(model.PRESETS["tiny"], **preset_changes)
    original_save = train.save_checkpoint

    def save_and_snapshot(checkpoint, path):
        original_save(checkpoint, path)
        if path.endswith("flow.pt") and checkpoint.get("step") in SNAPSHOTS and not checkpoint.get("done"):
            shutil.copy(path, os.path.join(run_dir, f"flow_step{checkpoint['step']}.pt"))

    train.save_checkpoint = save_and_snapshot
    config = dataclasses.replace(train.TINY, flow=dataclasses.replace(train.TINY.flow, steps=STEPS),
                                 sample_every=0, **config_changes)
    start = time.time()
    metrics = train.train(run_dir, config, ["flow"], progress=False)["flow"]
    seconds = time.time() - start

    torch.set_grad_enabled(False)
    pipe = Pipeline(run_dir, "cpu", use_vocoder=False)
    classifier, _ = load_or_train_classifier(run_dir, 2.56, 0, 1200, 600, "cpu", print, input="mel")
    audio, captions, attributes = render("test", 64, 2.56, 0)
    real = log_mels(audio)
    out = {"arm": arm, "preset_changes": preset_changes, "config_changes": config_changes,
           "train_seconds": round(seconds, 1), "val_flow_loss": metrics.get("val_flow_loss"),
           "real_beat_grid": beat_grid(real, attributes), "rows": []}
    real_embedding = pipe.clap.embed_audio(real)
    for step in SNAPSHOTS:
        path = os.path.join(run_dir, "flow.pt" if step == STEPS else f"flow_step{step}.pt")
        row = {"flow_steps": step, **judge(pipe, classifier, torch.load(path, weights_only=True), captions,
                                           attributes, real_embedding)}
        out["rows"].append(row)
        print(arm, row, flush=True)
    with open(f"results/tempo/lever_{arm}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        run(name)
