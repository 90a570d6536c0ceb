"""Does crossfading the windows of a long piece take away its seams?

    python experiments/seam_blend.py --run pretrained/tiny     # -> results/long/seam_blend.json

Long pieces are made window by window (longform.fill); where a window's new frames begin, the
log-mel jumps about twice as much as real music does at the same places (docs/RESULTS.md, *Long
pieces*). With `blend` b, each window remakes the last b frames it was given and fades from the
old ones to the new over them. For b in --blends, held-out captions are made into pieces of
--seconds, and the seam statistic of evaluate_long (the largest spectral flux near each place a
window's new music begins) is taken over the whole fade, from 2 mel frames before it starts to 2
after it ends, for the generated log-mels (VAE output) and for real clips of the same captions
rendered as long, and for the same generated pieces over as many frames half-way between two
seams ("between": what the piece itself does where no window begins). A seamless piece scores
the same at its seams as between them. Also reported: the median flux over all frames, which says
whether a fade only blurs, and the flux within 2 frames of the fade's start and of its end (the
places it could still jump; for b = 0 both are the seam itself).
"""

import argparse
import json
import os
import time

import numpy as np
import torch

import longform
from audio import MelSpectrogram
from classifier import render
from common import default_run
from evaluate_long import spectral_flux
from pipeline import Pipeline

REACH = 2  # mel frames either side, as evaluate_long.SEAM_REACH


def seam_over(mel, regions):
    """Mean and max over regions (first, last mel frame) of the largest flux inside each."""
    flux = spectral_flux(mel)
    peaks = [flux[max(a, 1):b + 1].max().item() for a, b in regions if a < len(flux)]
    return float(np.mean(peaks)), float(np.max(peaks))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="default: runs/tiny, else pretrained/tiny")
    parser.add_argument("--pieces", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.48)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--blends", type=int, nargs="+", default=[0, 8, 16], help="latent frames (multiples of 2)")
    parser.add_argument("--out", default="results/long/seam_blend.json")
    args = parser.parse_args(argv)
    run = args.run or default_run()
    pipe = Pipeline(run, "cpu", precision="fp32", use_vocoder=False)
    real, captions, _ = render("test", args.pieces, args.seconds, 0)
    real_mels = [MelSpectrogram()(clip) for clip in real]
    window, down = pipe.window_frames(), pipe.vae.config.downsample
    rows = []
    for blend in args.blends:
        started, mels = time.time(), []
        for i, caption in enumerate(captions):
            latent = pipe.piece_latent([(0, caption)], args.seconds, steps=args.steps, seed=i, blend=blend)
            mels.append(pipe.vae.decode(latent[None])[0])
        frames = mels[0].shape[0] // down
        found = longform.windows(torch.zeros(frames, dtype=torch.bool), window, longform.default_overlap(window))
        regions = [((first - min(blend, first - start)) * down - REACH, first * down + REACH)
                   for start, first in found if first > 0]
        generated = [seam_over(m, regions) for m in mels]
        at_ends = [seam_over(m, [(a, a + 2 * REACH) for a, _ in regions] + [(b - 2 * REACH, b) for _, b in regions])
                   for m in mels]  # the two places a fade could still jump: where it starts and where it ends
        half = longform.default_overlap(window) // 2 * down  # mel frames from a seam to half-way to the next
        between = [seam_over(m, [(a + half, b + half) for a, b in regions if b + half < len(m)]) for m in mels]
        reference = [seam_over(m[:mels[0].shape[0]], regions) for m in real_mels]
        rows.append({"blend": blend, "seconds_of_fade": blend * down / 100,
                     "seam_mean": float(np.mean([g[0] for g in generated])), "seam_max": max(g[1] for g in generated),
                     "between_mean": float(np.mean([g[0] for g in between])),
                     "fade_ends_mean": float(np.mean([g[0] for g in at_ends])),
                     "real_seam_mean": float(np.mean([r[0] for r in reference])),
                     "median_flux": float(np.median(torch.cat([spectral_flux(m)[1:] for m in mels]).numpy())),
                     "real_median_flux": float(np.median(torch.cat([spectral_flux(m)[1:] for m in real_mels]).numpy())),
                     "wall_seconds": round(time.time() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print("| blend (latent frames) | fade | seam mean / max | between seams | real, same frames | at the fade's two ends | median flux | real median flux |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['blend']} | {r['seconds_of_fade']:.2f} s | {r['seam_mean']:.3f} / {r['seam_max']:.3f} | "
              f"{r['between_mean']:.3f} | {r['real_seam_mean']:.3f} | {r['fade_ends_mean']:.3f} | {r['median_flux']:.3f} | {r['real_median_flux']:.3f} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"run": run, "pieces": args.pieces, "seconds": args.seconds, "steps": args.steps, "rows": rows}, f,
                  indent=1)


if __name__ == "__main__":
    main()
