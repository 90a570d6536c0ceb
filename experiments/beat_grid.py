"""Where does a flow model lose the beat grid, and at which noise level is it decided?

    python experiments/beat_grid.py --flow pretrained/tiny/flow.pt --name shipped
        # -> results/beat_grid/shipped.json
    python experiments/beat_grid.py --flow runs/curve_flow_time_mean0_5000/flow.pt --name time_mean0
        # after `python experiments/training_curve.py flow --steps 5000 --time-mean 0`

A caption's tempo is the spacing of its onsets. For one flow checkpoint, on the frozen parts of
--source and the 64 held-out test clips (evaluate.MelJudge):

1. the generated clips (Euler 25, cfg 4) against the real ones, over all clips and per tempo: the
   mean spectral flux (how much onset energy), classifier.beat_grid (a steady pulse? the asked one?
   onsets on the clip's eighth-note grid?) and the lag of the autocorrelation's highest peak;
2. the same noise with only the tempo word changed ("A {slow|moderate|fast} piano piece ...");
3. denoising: each real clip's latent noised to z_t = (1 - t) x0 + t eps, the model's one-step
   estimate x0_hat = z_t - t v(z_t, t) decoded and judged, for t from 0.2 to 0.95. A grid the model
   keeps at t was still visible in z_t; where x0_hat loses it, sampling has to invent it.
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F

import flow
from classifier import accuracy, beat_grid, eighth_frames, onset_autocorrelation
from evaluate import MelJudge
from pipeline import model_from_checkpoint
from music import TEMPOS

TIMES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
PULSE_LAGS = slice(17, 50)  # autocorrelation index 17 = lag 18 frames: where a 60-160 bpm eighth or quarter peaks


def peak_lag(mel):
    """Mean lag (frames) of each clip's highest autocorrelation peak between 18 and 50 frames."""
    return (onset_autocorrelation(mel)[:, PULSE_LAGS].argmax(1) + PULSE_LAGS.start + 1).float().mean().item()


def per_tempo(mel, attributes):
    """The beat grid of the clips asked for each tempo, beside their true eighth note."""
    rows = {}
    for tempo in TEMPOS:
        idx = [i for i, a in enumerate(attributes) if a["tempo"] == tempo]
        rows[tempo] = {"clips": len(idx), "mean_flux": F.relu(mel[idx].diff(dim=1)).mean().item(),
                       **beat_grid(mel[idx], [attributes[i] for i in idx]), "peak_lag_frames": peak_lag(mel[idx]),
                       "true_eighth_frames": sum(eighth_frames(attributes[i]["bpm"]) for i in idx) / len(idx)}
    return rows


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", default="pretrained/tiny/flow.pt", help="flow checkpoint to examine")
    parser.add_argument("--name", default="shipped", help="results/beat_grid/<name>.json")
    parser.add_argument("--source", default="pretrained/tiny", help="run whose frozen parts and judge to use")
    args = parser.parse_args(argv)

    judge = MelJudge(args.source)
    model = model_from_checkpoint("flow", torch.load(args.flow, weights_only=True))
    real, attributes = judge.real, judge.attributes
    generated = judge.generate(model)
    out = {"checkpoint": args.flow, "real_all": beat_grid(real, attributes),
           "generated_all": beat_grid(generated, attributes),
           "real": per_tempo(real, attributes), "generated": per_tempo(generated, attributes), "tempo_word_swap": {}}
    for word in TEMPOS:
        mel = judge.generate(model, [f"A {word} piano piece in a major key, with drums."] * 16, seed=5)
        out["tempo_word_swap"][word] = {"peak_lag_frames": peak_lag(mel),
                                        "pulse_peak": onset_autocorrelation(mel)[:, 14:110].max(1).values.mean().item()}
    pipe = judge.pipe
    x0 = pipe.vae.encode(real)
    text = pipe.encode_text(judge.captions)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out["denoising"] = []
    for t in TIMES:
        times = torch.full((len(x0),), t)
        z = flow.interpolate(x0, noise, times)
        estimate = pipe.vae.decode(z - t * model.velocity(z, times, text["txt"], text["txt_mask"], text["y"]))
        out["denoising"].append({"t": t, **beat_grid(estimate, attributes), "attribute_accuracy_on_mel":
                                 accuracy(judge.classifier.posteriors(estimate), attributes)})
        print(json.dumps(out["denoising"][-1]), flush=True)
    path = os.path.join("results", "beat_grid", f"{args.name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
