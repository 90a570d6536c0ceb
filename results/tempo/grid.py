"""How results/tempo/grid_<name>.json was made (a one-off record, not part of the project's CLIs).

Where does the flow model lose the beat grid? For a flow checkpoint on the frozen parts of
pretrained/tiny and the 64 held-out test clips:

1. generated clips (Euler 25, cfg 4, the seeds of results/tiny/flow_curve.py) against the real ones,
   over all clips and per tempo class: the mean spectral flux, lever.beat_grid and the autocorrelation peak's lag;
2. the same noise with only the tempo word changed ("A {slow|moderate|fast} piano piece ...");
3. denoising: each real clip's latent noised to z_t = (1 - t) x0 + t eps and the model's one-step
   estimate x0_hat = z_t - t v(z_t, t) decoded and judged, for t from 0.2 to 0.95. A grid the model
   keeps at t was still visible in z_t; where x0_hat loses it is where sampling must invent it.

    python results/tempo/grid.py recipe pretrained/tiny/flow.pt
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lever  # noqa: E402
from classifier import accuracy, load_or_train_classifier, log_mels, render  # noqa: E402
from pipeline import Pipeline  # noqa: E402

TIMES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def generate(pipe, captions, seed_offset=0):
    return torch.cat([pipe.vae.decode(pipe.generate_latents(captions[s:s + 16], seconds=2.56, steps=25,
                                                            seed=s + seed_offset))
                      for s in range(0, len(captions), 16)])


def per_tempo(mel, attributes):
    ac = lever.onset_autocorrelation(mel)
    rows = {}
    for tempo in ("slow", "moderate", "fast"):
        idx = [i for i, a in enumerate(attributes) if a["tempo"] == tempo]
        rows[tempo] = {"clips": len(idx), "mean_flux": F.relu(mel[idx].diff(dim=1)).mean().item(),
                       **lever.beat_grid(mel[idx], [attributes[i] for i in idx]),
                       "peak_lag_frames": (ac[idx, 17:50].argmax(1) + 18).float().mean().item(),
                       "true_eighth_frames": sum(3000.0 / attributes[i]["bpm"] for i in idx) / len(idx)}
    return rows


def main(name, checkpoint_path):
    torch.set_grad_enabled(False)
    pipe = Pipeline("pretrained/tiny", "cpu", use_vocoder=False)
    pipe.flow_model = lever.flow_model(torch.load(checkpoint_path, weights_only=True))
    classifier, _ = load_or_train_classifier("pretrained/tiny", 2.56, 0, 1200, 600, "cpu", print, input="mel")
    audio, captions, attributes = render("test", 64, 2.56, 0)
    real = log_mels(audio)
    generated = generate(pipe, captions)
    out = {"checkpoint": checkpoint_path, "real_all": lever.beat_grid(real, attributes),
           "generated_all": lever.beat_grid(generated, attributes),
           "real": per_tempo(real, attributes), "generated": per_tempo(generated, attributes)}
    swap = {}
    for word in ("slow", "moderate", "fast"):
        mel = generate(pipe, [f"A {word} piano piece in a major key, with drums."] * 16, seed_offset=5)
        ac = lever.onset_autocorrelation(mel)
        swap[word] = {"peak_lag_frames": (ac[:, 17:50].argmax(1) + 18).float().mean().item(),
                      "pulse_peak": ac[:, 14:110].max(1).values.mean().item()}
    out["tempo_word_swap"] = swap
    x0 = pipe.vae.encode(real)
    cond = pipe.encode_text(captions)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out["denoising"] = []
    for t in TIMES:
        z = (1 - t) * x0 + t * noise
        v = pipe.flow_model.velocity(z, torch.full((len(z),), t), cond["txt"], cond["txt_mask"], cond["y"])
        estimate = pipe.vae.decode(z - t * v)
        out["denoising"].append({"t": t, **lever.beat_grid(estimate, attributes),
                                 "attribute_accuracy_on_mel": accuracy(classifier.posteriors(estimate), attributes)})
        print(out["denoising"][-1], flush=True)
    with open(f"results/tempo/grid_{name}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
