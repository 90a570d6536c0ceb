"""Five captions a user might type: what does the shipped model play for each, and where is an
attribute lost when one goes wrong?

    python experiments/listening.py      # -> results/listening/: report.json, listening.png,
                                         #    clip_1.wav ... clip_5.wav, bells.json

The report: each caption played as `sample.py --prompt CAPTION --seed s` plays it (2.56 s, Euler 25,
cfg 4, the run's HiFi-GAN; seed 0 -> clip_<n>.wav), beside a real clip of the same attributes at the
middle of its tempo range from the dataset's composer. Measured: the run's audio attribute
classifier on seeds 0-7 (how often each attribute comes out right), the steadiness of the pulse (the
onset autocorrelation's highest peak at the lags of 60-160 bpm eighths and quarters, and its lag),
and the times of seed 0's onsets beside the real clip's; listening.png shows the log-mels.

The bells: which link loses the third of the slow major bells caption? Four bells captions, seeds 0-7,
each judged three ways: the generated log-mel by the run's mel classifier (the flow model's output),
the run's HiFi-GAN audio and the Griffin-Lim audio of the same mels by its audio classifier; and
eight real slow major bells clips played back both ways. Each number is the share heard as major.
"""

import argparse
import json
import os

import numpy as np
import torch
from matplotlib.figure import Figure

from audio import FRAMES_PER_SECOND, SAMPLE_RATE, griffin_lim, save_wav
from classifier import ATTRIBUTES, eighth_frames, load_or_train_classifier, log_mels, onset_autocorrelation, onset_peaks
from common import autocast
from music import TEMPOS, render_clip
from pipeline import Pipeline

OUT, SECONDS, SEEDS = "results/listening", 2.56, range(8)
CAPTIONS = [  # (caption as typed, what it asks for)
    ("A fast piano piece in a major key, with drums.", dict(instrument="piano", tempo="fast", mode="major", drums=True)),
    ("slow organ, minor key, no drums", dict(instrument="organ", tempo="slow", mode="minor", drums=False)),
    ("can you play a gloomy flute tune, moderate tempo, with drums?",
     dict(instrument="flute", tempo="moderate", mode="minor", drums=True)),
    ("FAST HAPPY ORGAN WITH DRUMS", dict(instrument="organ", tempo="fast", mode="major", drums=True)),
    ("A slow, calm bells melody in a major key without drums.",
     dict(instrument="bells", tempo="slow", mode="major", drums=False)),
]
BELLS = ["A slow, calm bells melody in a major key without drums.",  # the report's fifth caption
         "A slow bells melody in a minor key without drums.",
         "slow bells, major key, no drums",
         "A fast, cheerful bells tune in a major key, with drums."]
MID_BPM = {tempo: (low + high) / 2 for tempo, (low, high) in TEMPOS.items()}


def real_clip(asked, seed):
    """A real clip of the asked attributes at the middle of its tempo range, in C."""
    attributes = dict(asked, bpm=MID_BPM[asked["tempo"]], key="C")
    return torch.from_numpy(render_clip(attributes, SECONDS, SAMPLE_RATE, np.random.default_rng(seed)))


def pulse(audio):
    """Each clip's highest onset-autocorrelation peak at 15-110 frames, and its lag in frames."""
    value, index = onset_autocorrelation(log_mels(audio))[:, 14:110].max(1)
    return [{"peak": round(v, 2), "lag_frames": i + 15} for v, i in zip(value.tolist(), index.tolist())]


def onset_times(clip):
    """Seconds of one clip's onset peaks (spectral-flux maxima): where notes and drum hits start."""
    mel = log_mels(clip[None])[0]
    return [round(frame / FRAMES_PER_SECOND, 2) for frame in onset_peaks(torch.relu(mel.diff(dim=0)).mean(1))]


def heard(classifier, clips):
    """{attribute: the value the classifier hears} for each clip."""
    posteriors = classifier.posteriors(clips)
    return [{name: ATTRIBUTES[name][posteriors[name][i].argmax().item()] for name in ATTRIBUTES}
            for i in range(len(clips))]


def share_major(classifier, clips):
    return round(sum(h["mode"] == "major" for h in heard(classifier, clips)) / len(clips), 3)


def report(pipe, classifier, run):
    rows, pictures = [], []
    for n, (caption, asked) in enumerate(CAPTIONS, 1):
        mels, audio = map(torch.cat, zip(*[pipe.generate([caption], seconds=SECONDS, seed=s) for s in SEEDS]))
        save_wav(os.path.join(OUT, f"clip_{n}.wav"), audio[0])
        real = real_clip(asked, n)[None]
        judged, pulses = heard(classifier, audio), pulse(audio)
        rows.append({"caption": caption, "asked": asked, "seed_0_heard_as": judged[0],
                     "right_over_8_seeds": {name: sum(h[name] == asked[name] for h in judged) / len(judged)
                                            for name in ATTRIBUTES},
                     "seed_0_pulse": pulses[0], "seed_0_onsets_s": onset_times(audio[0]),
                     "pulse_peak_over_8_seeds": round(float(np.mean([p["peak"] for p in pulses])), 2),
                     "real_reference": {"bpm": MID_BPM[asked["tempo"]],
                                        "eighth_frames": round(eighth_frames(MID_BPM[asked["tempo"]]), 1),
                                        "heard_as": heard(classifier, real)[0], "pulse": pulse(real)[0],
                                        "onsets_s": onset_times(real[0])}})
        pictures.append((caption, log_mels(real)[0], mels[0]))
        print(json.dumps(rows[-1]), flush=True)
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump({"run": run, "seconds": SECONDS, "steps": 25, "cfg": 4.0, "rows": rows}, f, indent=1)
    fig = Figure(figsize=(10, 2.0 * len(CAPTIONS)))
    axes = fig.subplots(len(CAPTIONS), 2, sharex=True, sharey=True)
    for (caption, real, fake), row in zip(pictures, axes):
        for ax, mel, title in ((row[0], real, f"real: {caption}"), (row[1], fake, "generated, seed 0")):
            ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-12, vmax=1,
                      extent=[0, mel.shape[0] / FRAMES_PER_SECOND, 0, 64])
            ax.set_title(title, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "listening.png"), dpi=90)


def bells(pipe, audio_judge, mel_judge, run):
    def three_ways(mels, audio):
        return {"log-mel": share_major(mel_judge, mels), "the run's vocoder": share_major(audio_judge, audio),
                "Griffin-Lim": share_major(audio_judge, griffin_lim(mels))}

    rows = []
    for caption in BELLS:
        mels, audio = map(torch.cat, zip(*[pipe.generate([caption], seconds=SECONDS, seed=s) for s in SEEDS]))
        rows.append({"caption": caption, "heard_major": three_ways(mels, audio)})
        print(json.dumps(rows[-1]), flush=True)
    real = torch.stack([real_clip(CAPTIONS[-1][1], s) for s in SEEDS])
    mels = log_mels(real)
    with autocast(pipe.device, pipe.precision):  # the vocoder as the pipeline runs it on generated mels
        vocoded = pipe.vocoder(mels).float()
    rows.append({"caption": "real slow major bells (8 renders)", "clean audio heard major": share_major(audio_judge, real),
                 "heard_major": three_ways(mels, vocoded)})
    print(json.dumps(rows[-1]), flush=True)
    with open(os.path.join(OUT, "bells.json"), "w") as f:
        json.dump({"run": run, "seconds": SECONDS, "steps": 25, "cfg": 4.0, "seeds": len(SEEDS), "rows": rows}, f,
                  indent=1)


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="pretrained/tiny", help="trained run to play (default pretrained/tiny)")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    pipe = Pipeline(args.run, "cpu")
    audio_judge, _ = load_or_train_classifier(args.run, SECONDS)
    mel_judge, _ = load_or_train_classifier(args.run, SECONDS, input="mel")
    report(pipe, audio_judge, args.run)
    bells(pipe, audio_judge, mel_judge, args.run)


if __name__ == "__main__":
    main()
