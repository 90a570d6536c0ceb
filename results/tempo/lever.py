"""How results/tempo/lever_<arm>.json was made (a one-off record, not part of the project's CLIs).

One lever against tempo and mode, at the `--tiny` flow budget: the flow stage of `train.py --tiny`
(5000 steps, its own cosine schedule, seed, lr, batch) trained on the frozen VAE and text encoders of
pretrained/tiny with one change, the EMA weights copied at every 1000 steps, and each copy judged like
results/tiny/flow_curve.json (64 held-out captions, Euler 25, cfg 4, the mel-domain classifier, FAD
between CLAP audio embeddings), so the two curves compare step for step. Also the beat grid itself:
the onset strength's autocorrelation (classifier.py's tempo feature), its highest peak at the lags of
60-160 bpm eighths and quarters (15-110 frames: is there any steady pulse?), its value at the
clip's true eighth (is it the caption's pulse?), and the share of onsets on the clip's eighth grid
(the first one after the opening note, and all later ones).

    python results/tempo/lever.py theta100      # RoPE theta 10000 -> 100 (axes of 32 and 8 tokens)
    python results/tempo/lever.py time_mean1    # logit-normal mean 0 -> 1: 35% of the training t above 0.8, not 8%
    STEPS=8000 python results/tempo/lever.py recipe   # the current recipe (mean 1), a longer schedule
    python results/tempo/lever.py freq_patch8   # tokens of 2 x 8 latent cells: 64 music tokens, not 256
    python results/tempo/lever.py lr_decay20    # peak learning rate held to 80% of the steps, then cosine
    STEPS=2500 SNAPSHOT_EVERY=500 python results/tempo/lever.py depth4   # 4 + 4 blocks, the recipe's CPU time
    python results/tempo/lever.py rope_fast     # RoPE time frequencies up to 2.5 rad per token, not 1
    python results/tempo/lever.py rope_fast_time   # the same time ids, theta kept at 10000
    STEPS=8000 python results/tempo/lever.py rope_fast_time   # the shipped recipe, a longer schedule
    python results/tempo/lever.py partial_tags  # 30% of the training captions name only some attributes
    STEPS=2000 python results/tempo/lever.py key_in_caption   # every caption names its key: "..., in D minor"
    STEPS=8000 python results/tempo/lever.py one_key   # every clip in C, captions unchanged
    STEPS=16000 SNAPSHOT_EVERY=2000 python results/tempo/lever.py recipe   # the final recipe (four
                                    # phrasings a clip, since 2026-12-04), twice --tiny's flow steps

Each arm trains on the built-in clips, which start on the downbeat, with the flow cache
runs/flow_cache_tiny.pt (the first arm run on a machine encodes it; earlier arms used
runs/text_path_both's, the same features). lever_random_start.json was made by this script's random_start arm at commit
290330a, where music.py cut each clip from a random point of its first beat (reverted after the arm
lost tempo; README, "The beat grid"); that arm encoded those clips itself and judged them with a
classifier trained on them.

Every arm but one_key ran while the dataset drew each clip's key from all twelve (before music.KEYS
became ("C",) on 2026-12-04, the one_key arm's result); to rerun one as it ran, set
music.KEYS = music.NOTE_NAMES first. The one_key wrapper is now what the dataset does anyway.

An arm of other than 5000 steps writes runs/tempo_<arm>_<steps> and lever_<arm>_<steps>.json.

The theta100 and freq_patch8 arms were stopped after 2000 steps (no better than the recipe there) and
their snapshots judged with JUDGE_ONLY=1.
"""
import dataclasses
import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.getcwd())
import data  # noqa: E402
import model  # noqa: E402
import train  # noqa: E402
from classifier import accuracy, load_or_train_classifier, log_mels, render  # noqa: E402
from common import MODEL_CLASSES  # noqa: E402
from evaluate import embedding_frechet_distance  # noqa: E402
from music import DRUM_TAGS, INSTRUMENT_WORDS, MODE_TAGS, MODES, TEMPLATES, TEMPO_WORDS  # noqa: E402
from pipeline import Pipeline  # noqa: E402

STEPS = int(os.environ.get("STEPS", 5000))
EVERY = int(os.environ.get("SNAPSHOT_EVERY", 1000))
SNAPSHOTS = tuple(sorted(set(range(EVERY, STEPS + 1, EVERY)) | {STEPS}))  # the finished model always
SOURCE = "pretrained/tiny"
FROZEN = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt", "mel_attribute_classifier.pt")
ARMS = {  # arm -> (changes to model.PRESETS["tiny"], changes to the RunConfig)
    "theta100": ({"theta": 100}, {}),
    "time_mean1": ({}, {"time_mean": 1.0}),
    "recipe": ({}, {}),  # train.TINY as it is (mean 1 since the time_mean1 arm)
    # tokens of 2 latent frames x 8 frequency rows (64 tokens, not 256): an onset is broadband,
    # and two tokens at a time, not eight, then decide where in its 80 ms it falls
    "freq_patch8": ({"freq_patch": 8, "in_channels": 128}, {}),
    # hold the peak learning rate until the last 20% of the steps, then decay (the 8000-step schedule,
    # whose rate at every step is higher, was ahead of the 5000-step one at every snapshot from 2000 on)
    "lr_decay20": ({}, {"flow": {"lr_decay": 0.2}}),
    # twice the blocks (4 double + 4 single): a step costs twice as much, so run at half the steps
    # (STEPS=2500) it is the same CPU time as the recipe's 5000; can deeper attention relate onsets?
    "depth4": ({"depth": 4, "depth_single_blocks": 4}, {"save_every": 100}),  # snapshots at 500s
    # RoPE's fastest rotation is 1 rad per id, but an eighth note lasts 2.3-6.3 time tokens (fast to slow),
    # a pulse of 1.0-2.7 rad per token; time ids of 2.5 per token and theta 30 give the six time
    # frequencies 2.5, 1.42, 0.81, 0.46, 0.26, 0.15 rad per token: eighths, quarters, chords, the clip
    "rope_fast": ({"time_id_scale": 2.5, "theta": 30}, {}),
    # rope_fast lost mode (0.44 -> 0.28): theta 30 also speeds up the frequency axis and leaves no time
    # channel still over the clip. Scaling the time ids alone keeps theta 10000: time frequencies 2.5,
    # 0.54, 0.12, 0.025, 0.005, 0.001 rad per token, the last three nearly constant over 32 tokens
    "rope_fast_time": ({"time_id_scale": 2.5}, {}),
    # the flow model does not use the mode word (results/mode/siblings.py: swapping it changes the
    # clip's mode in 0.44-0.59 of pairs), although c and y carry it (linear probes 0.99 / 0.96, results/mode/probe.py). In a
    # full caption the other words may leave the mode word little to add; a caption that names only
    # some attributes ("minor key, drums") gives the loss a gain that only the words present can pay
    "partial_tags": ({}, {}),
    # partial_tags did not help, and a mode change is alike only within a key (results/mode/twins.py):
    # "minor" says which rows hold the third only once the key is known. Every caption names its key
    # ("..., in D minor"), training and held-out alike
    "key_in_caption": ({}, {}),
    # key_in_caption did not help either. The test of the key explanation itself: every clip in C (the
    # key still drawn, then replaced, so every other draw is as before), captions unchanged. In one key
    # "minor" always lowers the same rows (E, A, B -> E flat, A flat, B flat), so the word can pay from
    # the first step, as the drum words do. Its clips differ, so it encodes its own cache and trains its
    # own mel judge on them
    "one_key": ({}, {}),
}


def onset_autocorrelation(mel, max_lag=120):
    """(B, T, 64) log-mel -> (B, max_lag - 1) autocorrelation of the spectral flux at lags 1 .. max_lag - 1."""
    onset = F.relu(mel.diff(dim=1)).mean(2)
    onset = onset - onset.mean(1, keepdim=True)
    power = onset.square().mean(1) + 1e-8
    return torch.stack([(onset[:, :-lag] * onset[:, lag:]).mean(1) / power for lag in range(1, max_lag)], 1)


def onset_peaks(onset):
    """Frames where the spectral flux has a local maximum above its mean + one standard deviation."""
    high = onset.mean() + onset.std()
    return [t for t in range(1, len(onset) - 1) if onset[t] > high and onset[t] >= onset[t - 1]
            and onset[t] >= onset[t + 1]]


def onsets_on_grid(mel, attributes, lead=3, tolerance=3):
    """Share of onset peaks within `tolerance` frames of the clip's eighth-note grid k * 3000 / bpm,
    for the first peak after the opening note and for all later ones. The flux peaks `lead` frames
    early: the 1024-sample window reaches a note 3.2 frames before its centre does."""
    first, later, kept = [], [], []
    for clip, a in zip(mel, attributes):
        eighth = 3000.0 / a["bpm"]
        peaks = [p for p in onset_peaks(F.relu(clip.diff(dim=0)).mean(1)) if p > 8]
        near = [min(abs(p - (k * eighth - lead)) for k in range(1, int(len(clip) / eighth) + 2)) <= tolerance
                for p in peaks]
        first += near[:1]
        later += near[1:]
        # the same with the grid through the first peak: does the clip keep the spacing its first onset
        # sets, whatever its phase?
        kept += [min(abs(p - peaks[0] - k * eighth) for k in range(int(len(clip) / eighth) + 2)) <= tolerance
                 for p in peaks[1:]]
    return {"first_onset_on_grid": sum(first) / max(1, len(first)),
            "later_onsets_on_grid": sum(later) / max(1, len(later)),
            "later_onsets_on_first_onsets_grid": sum(kept) / max(1, len(kept))}


def beat_grid(mel, attributes):
    ac = onset_autocorrelation(mel)
    eighth = [round(3000.0 / a["bpm"]) for a in attributes]  # frames of 10 ms
    return {"pulse_peak": ac[:, 14:110].max(1).values.mean().item(),
            "at_true_eighth": torch.stack([ac[i, e - 1] for i, e in enumerate(eighth)]).mean().item(),
            **onsets_on_grid(mel, attributes)}


def flow_model(checkpoint):
    """The EMA transformer of a flow checkpoint, finished or a mid-run snapshot (common.load_stage
    takes finished ones only)."""
    model_class, config_class = MODEL_CLASSES["flow"]
    model = model_class(config_class(**checkpoint["config"]))
    model.load_state_dict(checkpoint["ema"] or checkpoint["model"])
    return model.eval()


def judging_set(num_clips, classifier_dir=SOURCE):
    """What judge() needs: the frozen parts of SOURCE (judge swaps in each flow model), the mel-domain
    classifier, and the first num_clips held-out test clips as captions, attributes, log-mels and
    CLAP audio embeddings."""
    pipe = Pipeline(SOURCE, "cpu", use_vocoder=False)
    classifier, _ = load_or_train_classifier(classifier_dir, 2.56, 0, 1200, 600, "cpu", print, input="mel")
    audio, captions, attributes = render("test", num_clips, 2.56, 0)
    real = log_mels(audio)
    return pipe, classifier, captions, attributes, real, pipe.clap.embed_audio(real)


def judge(pipe, classifier, checkpoint, captions, attributes, real_embedding, noise_seed=0):
    """Generate one clip per caption (batches of 16, batch s drawn with seed noise_seed + s) and score them."""
    pipe.flow_model = flow_model(checkpoint)
    mels = torch.cat([pipe.vae.decode(pipe.generate_latents(captions[s:s + 16], seconds=2.56, steps=25,
                                                            seed=noise_seed + s))
                      for s in range(0, len(captions), 16)])
    posteriors = classifier.posteriors(mels)
    return {"attribute_accuracy_on_mel": accuracy(posteriors, attributes),
            "mode_accuracy_by_asked": mode_by_asked(posteriors["mode"], attributes),
            "fad_clap_mel": embedding_frechet_distance(real_embedding, pipe.clap.embed_audio(mels)),
            "beat_grid": beat_grid(mels, attributes)}


def mode_by_asked(mode_posteriors, attributes):
    """{asked mode: mode accuracy on its clips}: a judge that hears one mode everywhere scores 1 and
    0 here, and mode accuracy below chance shows as both under 0.5 (the other mode heard)."""
    asked = {mode: [i for i, a in enumerate(attributes) if a["mode"] == mode] for mode in MODES}
    return {mode: accuracy({"mode": mode_posteriors[ids]}, [attributes[i] for i in ids])["mode"]
            for mode, ids in asked.items() if ids}


def partial_tag_caption(whole, share=0.3):
    """whole (an attributes_to_caption), with `share` of the captions a tag list of a random nonempty
    part of the four attributes (each kept with probability 1/2). The choice comes from a child of the
    clip's generator (Generator.spawn does not advance it), so every clip's audio stays as it was."""
    def caption(attributes, rng, templates=TEMPLATES):
        text = whole(attributes, rng, templates)
        child = rng.spawn(1)[0]
        if child.random() >= share:
            return text
        tags = [child.choice(INSTRUMENT_WORDS[attributes["instrument"]]), child.choice(TEMPO_WORDS[attributes["tempo"]]),
                child.choice(MODE_TAGS[attributes["mode"]]), child.choice(DRUM_TAGS[bool(attributes["drums"])])]
        keep = []
        while not keep:
            keep = [tag for tag in tags if child.random() < 0.5]
        return ", ".join(keep[i] for i in child.permutation(len(keep)))

    return caption


def key_caption(whole):
    """whole, with the clip's key and mode appended: "..., in D minor"."""
    def caption(attributes, rng, templates=TEMPLATES):
        return f"{whole(attributes, rng, templates).rstrip('.')}, in {attributes['key']} {attributes['mode']}"

    return caption


CAPTION_CHANGES = {"partial_tags": partial_tag_caption, "key_in_caption": key_caption}  # arm -> caption wrapper


def one_key(sample):
    """sample (data.sample_attributes), with every clip's key C."""
    def attributes(combinations, rng):
        return {**sample(combinations, rng), "key": "C"}

    return attributes


AUDIO_CHANGES = {"one_key": one_key}  # arm -> wrapper of data.sample_attributes


def run(arm):
    preset_changes, config_changes = ARMS[arm]
    label = arm if STEPS == 5000 else f"{arm}_{STEPS}"
    run_dir = f"runs/tempo_{label}"
    os.makedirs(run_dir, exist_ok=True)
    for name in FROZEN:
        if arm in AUDIO_CHANGES and name == "mel_attribute_classifier.pt":
            continue  # judged by a classifier trained on the arm's own clips
        if not os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(SOURCE, name), run_dir)
    shared = "runs/flow_cache_tiny.pt"  # the frozen parts' features, the same for every arm
    if arm in CAPTION_CHANGES:  # other captions: this arm encodes its own cache
        data.attributes_to_caption = CAPTION_CHANGES[arm](data.attributes_to_caption)
        shared = os.path.join(run_dir, "flow_cache.pt")
    if arm in AUDIO_CHANGES:  # other clips: its own cache too
        data.sample_attributes = AUDIO_CHANGES[arm](data.sample_attributes)
        shared = os.path.join(run_dir, "flow_cache.pt")
    if os.path.exists(shared) and not os.path.exists(os.path.join(run_dir, "flow_cache.pt")):
        shutil.copy(shared, os.path.join(run_dir, "flow_cache.pt"))
    model.PRESETS["tiny"] = dataclasses.replace(model.PRESETS["tiny"], **preset_changes)
    original_save = train.save_checkpoint

    def save_and_snapshot(checkpoint, path):
        original_save(checkpoint, path)
        if path.endswith("flow.pt") and checkpoint.get("step") in SNAPSHOTS and not checkpoint.get("done"):
            shutil.copy(path, os.path.join(run_dir, f"flow_step{checkpoint['step']}.pt"))

    train.save_checkpoint = save_and_snapshot
    changes = dict(config_changes)  # "flow" holds changes to the flow stage's StageSize
    flow_size = dataclasses.replace(train.TINY.flow, steps=STEPS, **changes.pop("flow", {}))
    config = dataclasses.replace(train.TINY, flow=flow_size, sample_every=0, **changes)
    if any(step % config.save_every for step in SNAPSHOTS if step < STEPS):  # the finished one is flow.pt
        sys.exit(f"SNAPSHOT_EVERY={EVERY} must be a multiple of save_every={config.save_every}")
    # a finished run is only judged; JUDGE_ONLY=1 judges the snapshots of an arm stopped early
    metrics = {} if os.environ.get("JUDGE_ONLY") else train.train(run_dir, config, ["flow"], progress=False)["flow"]
    if not os.path.exists(shared):  # the first arm on a machine encodes the clips; the others reuse them
        shutil.copy(os.path.join(run_dir, "flow_cache.pt"), shared)

    torch.set_grad_enabled(False)
    pipe, classifier, captions, attributes, real, real_embedding = judging_set(64, run_dir)
    out = {"arm": arm, "steps": STEPS, "preset_changes": preset_changes, "config_changes": config_changes,
           "train_seconds": metrics.get("train_seconds"), "val_flow_loss": metrics.get("val_flow_loss"),
           "real_beat_grid": beat_grid(real, attributes),
           "real_attribute_accuracy_on_mel": accuracy(classifier.posteriors(real), attributes), "rows": []}
    for step in SNAPSHOTS:
        path = os.path.join(run_dir, "flow.pt" if step == STEPS else f"flow_step{step}.pt")
        if not os.path.exists(path) or (step == STEPS and not torch.load(path, weights_only=True)["done"]):
            continue  # an arm stopped early is judged on the snapshots it reached
        row = {"flow_steps": step, **judge(pipe, classifier, torch.load(path, weights_only=True), captions,
                                           attributes, real_embedding)}
        out["rows"].append(row)
        print(arm, row, flush=True)
    with open(f"results/tempo/lever_{label}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ARMS:  # one arm a process: run() patches model and train
        sys.exit(f"usage: python results/tempo/lever.py ARM, one of {', '.join(ARMS)}")
    run(sys.argv[1])
