"""How results/listening/ was made (a one-off record, not part of the project's CLIs).

Five captions a user might type, each played by the shipped run as `sample.py --prompt CAPTION` plays it
(2.56 s, Euler 25 steps, cfg 4, the run's HiFi-GAN, seed 0 -> clip_<n>.wav), beside a real clip
of the same attributes from the synthetic dataset's composer. README describes each attribute
from these log-mels; this script adds what can be measured about the same clips: the run's audio attribute classifier on seed 0 and on seeds 0-7 (how often each attribute
comes out right for that caption), the steadiness of the pulse (the onset autocorrelation's
highest peak at 60-160 bpm lags, and the lag: a real clip's is its eighth or quarter note), and
the times of seed 0's onsets beside the real clip's.

    python results/listening/report.py     # -> report.json, listening.png, clip_<n>.wav
"""
import json
import os
import sys

import matplotlib
import numpy as np
import soundfile
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "results", "tempo"))
from classifier import ATTRIBUTES, load_or_train_classifier, log_mels  # noqa: E402
from data import SAMPLE_RATE  # noqa: E402
from lever import onset_autocorrelation, onset_peaks  # noqa: E402
from music import TEMPOS, render_clip  # noqa: E402
from pipeline import Pipeline  # noqa: E402

RUN, OUT, SECONDS, SEEDS = "pretrained/tiny", "results/listening", 2.56, range(8)
CAPTIONS = [  # (caption as typed, what it asks for)
    ("A fast piano piece in a major key, with drums.", dict(instrument="piano", tempo="fast", mode="major", drums=True)),
    ("slow organ, minor key, no drums", dict(instrument="organ", tempo="slow", mode="minor", drums=False)),
    ("can you play a gloomy flute tune, moderate tempo, with drums?",
     dict(instrument="flute", tempo="moderate", mode="minor", drums=True)),
    ("FAST HAPPY ORGAN WITH DRUMS", dict(instrument="organ", tempo="fast", mode="major", drums=True)),
    ("A slow, calm bells melody in a major key without drums.",
     dict(instrument="bells", tempo="slow", mode="major", drums=False)),
]
MID_BPM = {tempo: (low + high) / 2 for tempo, (low, high) in TEMPOS.items()}  # the middle of each range


def pulse(audio):
    """Highest onset-autocorrelation peak at the lags of 60-160 bpm eighths and quarters, and its lag (frames)."""
    ac = onset_autocorrelation(log_mels(audio))[:, 14:110]
    value, index = ac.max(1)
    return [{"peak": round(v, 2), "lag_frames": i + 15} for v, i in zip(value.tolist(), index.tolist())]


def onset_times(audio):
    """Seconds of the onset peaks (spectral-flux maxima) of one clip: where new notes and drum hits start."""
    mel = log_mels(audio)[0]
    return [round(frame / 100, 2) for frame in onset_peaks(torch.relu(mel.diff(dim=0)).mean(1))]


def judged(classifier, audio):
    """{attribute: value the classifier hears} for each clip."""
    posteriors = classifier.posteriors(audio)
    return [{name: ATTRIBUTES[name][posteriors[name][i].argmax().item()] for name in ATTRIBUTES}
            for i in range(len(audio))]


def main():
    torch.set_grad_enabled(False)
    pipe = Pipeline(RUN, "cpu")
    classifier, _ = load_or_train_classifier(RUN, SECONDS)
    rows, real_mels, fake_mels = [], [], []
    for n, (caption, wanted) in enumerate(CAPTIONS, 1):
        mels, audio = zip(*[pipe.generate([caption], seconds=SECONDS, seed=s) for s in SEEDS])
        audio = torch.cat(audio)
        soundfile.write(os.path.join(OUT, f"clip_{n}.wav"), audio[0].numpy(), SAMPLE_RATE)
        attributes = dict(wanted, bpm=MID_BPM[wanted["tempo"]], key="C")
        real = torch.from_numpy(render_clip(attributes, SECONDS, SAMPLE_RATE, np.random.default_rng(n)))[None]
        heard, pulses = judged(classifier, audio), pulse(audio)
        rows.append({"caption": caption, "asked": wanted, "seed_0_heard_as": heard[0],
                     "right_over_8_seeds": {name: sum(h[name] == wanted[name] for h in heard) / len(heard)
                                            for name in ATTRIBUTES},
                     "seed_0_pulse": pulses[0], "seed_0_onsets_s": onset_times(audio[:1]),
                     "pulse_peak_over_8_seeds": round(float(np.mean([p["peak"] for p in pulses])), 2),
                     "real_reference": {"bpm": attributes["bpm"], "eighth_frames": round(3000 / attributes["bpm"], 1),
                                        "heard_as": judged(classifier, real)[0], "pulse": pulse(real)[0],
                                        "onsets_s": onset_times(real)}})
        real_mels.append(log_mels(real)[0])
        fake_mels.append(mels[0][0])
        print(json.dumps(rows[-1]), flush=True)
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump({"run": RUN, "seconds": SECONDS, "steps": 25, "cfg": 4.0, "rows": rows}, f, indent=1)
    fig, axes = plt.subplots(len(CAPTIONS), 2, figsize=(10, 2.0 * len(CAPTIONS)), sharex=True, sharey=True)
    for (caption, _), (ax_real, ax_fake), real, fake in zip(CAPTIONS, axes, real_mels, fake_mels):
        for ax, mel, title in ((ax_real, real, f"real: {caption}"), (ax_fake, fake, "generated, seed 0")):
            ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-12, vmax=1,
                      extent=[0, mel.shape[0] / 100, 0, 64])
            ax.set_title(title, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "listening.png"), dpi=90)


if __name__ == "__main__":
    main()
