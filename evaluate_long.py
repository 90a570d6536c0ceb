"""Long pieces, continuations and infills, judged (`python evaluate.py --long`).

    python evaluate.py --long --run pretrained/tiny      # -> <run>/long.json and a table

A long piece is heard the way a listener skims one: in 2.56 s windows (the trained clip), each
judged like a single generated clip by the attribute classifier and the pitch judge (evaluate.py).

- Attributes per window: accuracy against the caption, to compare with single clips of the same
  captions (the "single_clips" row).
- Agreement: how often a window's instrument, tempo, mode and drums (the classifier's top
  guesses) all equal the first window's: does the piece stay one piece?
- Silence: the fraction of 0.5 s stretches quieter than -50 dBFS RMS.
- The seam: the spectral flux d[t] = mean over mel bands |m[t] - m[t - 1]| of the log-mel m
  (a note onset or a jump makes it large). At each place where a window's new frames begin, the
  largest d within 2 frames; averaged over those places, and its maximum. The same statistic at
  the same places of real clips of the same captions rendered just as long is what a seamless
  piece scores (real music has onsets there too).
- Speed: seconds of music per second of wall clock, decoding included.

Continuation: held-out real clips, continued with the empty caption, so only the known frames
can say what to play: each generated window is judged against the clip's own attributes.
Infill: the middle second of a held-out real clip made anew; its log-mel L1 to the original (a
second performance of the same caption, a different melody, is the reference: L1 there means
"other notes, same kind of music") and the seam at both ends of the span.
"""

import time

import numpy as np
import torch

import longform
import pitch
from audio import FRAMES_PER_SECOND, SAMPLE_RATE
from classifier import ATTRIBUTES, accuracy, render
from data import CLIP_SECONDS

WINDOW_SAMPLES = round(CLIP_SECONDS * SAMPLE_RATE)
SILENCE_DB, STRETCH_SECONDS, SEAM_REACH = -50.0, 0.5, 2


def windows(audio):
    """(B, N) -> (B * W, WINDOW_SAMPLES): every whole 2.56 s window of every piece, piece-major."""
    count = audio.shape[1] // WINDOW_SAMPLES
    return audio[:, :count * WINDOW_SAMPLES].reshape(-1, WINDOW_SAMPLES), count


def spectral_flux(mel):
    """(T, 64) log-mel -> (T,) mean absolute change from the frame before (0 for the first)."""
    return torch.cat([mel.new_zeros(1), (mel[1:] - mel[:-1]).abs().mean(dim=1)])


def seam(mel, boundaries):
    """The largest flux within SEAM_REACH frames of each boundary (mel frames): (mean, max)."""
    flux = spectral_flux(mel)
    peaks = [flux[max(b - SEAM_REACH, 1):b + SEAM_REACH + 1].max().item() for b in boundaries if 0 < b < len(flux)]
    return (float(np.mean(peaks)), float(np.max(peaks))) if peaks else (float("nan"), float("nan"))


def silent_fraction(audio):
    """Fraction of 0.5 s stretches of (N,) audio quieter than SILENCE_DB RMS."""
    size = int(STRETCH_SECONDS * SAMPLE_RATE)
    stretches = audio[:len(audio) // size * size].reshape(-1, size)
    rms_db = 10 * torch.log10(stretches.pow(2).mean(dim=1) + 1e-12)
    return (rms_db < SILENCE_DB).float().mean().item()


def agreement(posteriors, count):
    """How often a window's four top guesses all equal its piece's first window's."""
    guesses = torch.stack([posteriors[name].argmax(dim=1) for name in ATTRIBUTES], dim=1).reshape(-1, count, len(ATTRIBUTES))
    same = (guesses[:, 1:] == guesses[:, :1]).all(dim=2)
    return same.float().mean().item() if count > 1 else float("nan")


def boundaries_of(pipe, known_frames):
    """Mel frames where each window of `pipe.fill_latent` (default window and overlap) begins
    its new frames: the places a seam could be."""
    window = pipe.window_frames()
    found = longform.windows(known_frames, window, longform.default_overlap(window))
    return [first * pipe.vae.config.downsample for _, first in found if first > 0]


class LongJudge:
    """The long-form measurements of one run, on its Evaluator's classifier and pipeline."""

    def __init__(self, evaluator, pieces=8, seconds=30.0, steps=25, log=print):
        self.e, self.pipe, self.log = evaluator, evaluator.pipe, log
        self.pieces, self.seconds, self.steps = pieces, seconds, steps
        self.real, self.captions, self.attributes = render("test", pieces, seconds, evaluator.seed)

    def judge_windows(self, audio, attributes):
        clips, count = windows(audio)
        expanded = [a for a in attributes for _ in range(count)]
        posteriors = self.e.classifier.posteriors(clips)
        return {"attribute_accuracy": accuracy(posteriors, expanded), "agreement": agreement(posteriors, count),
                "pitch": pitch.judge(clips, expanded), "windows_per_piece": count}

    def single_clips(self):
        """The same captions as clips of the trained length: what every window should match."""
        latents = self.pipe.generate_latents(self.captions, seconds=CLIP_SECONDS, steps=self.steps)
        return self.judge_windows(self.pipe.latents_to_audio(latents)[1].cpu()[:, :WINDOW_SAMPLES], self.attributes)

    def long_pieces(self, method):
        """30 s pieces for the held-out captions: "whole" (one latent) or windows by `method`."""
        mels, audio, started = [], [], time.time()
        for i, caption in enumerate(self.captions):
            if method == "whole":
                latent = self.pipe.generate_latents([caption], seconds=self.seconds, steps=self.steps, seed=i)[0]
            else:
                latent = self.pipe.piece_latent([(0, caption)], self.seconds, steps=self.steps, seed=i, method=method)
            mel, clip = self.pipe.latents_to_audio(latent[None])
            mels.append(mel[0].cpu()), audio.append(clip[0].cpu())
        wall = time.time() - started
        audio = torch.stack(audio)[:, :self.real.shape[1]]
        places = boundaries_of(self.pipe, torch.zeros(mels[0].shape[0] // self.pipe.vae.config.downsample, dtype=torch.bool))
        seams = [seam(m, places) for m in mels]
        result = self.judge_windows(audio, self.attributes)
        result.update(seam_mean=float(np.mean([s[0] for s in seams])), seam_max=float(np.max([s[1] for s in seams])),
                      silent_fraction=float(np.mean([silent_fraction(a) for a in audio])),
                      realtime_factor=self.pieces * self.seconds / wall)
        return result, places

    def real_reference(self, places):
        mels = [self.e.mel(a[None].to(self.pipe.device))[0].cpu() for a in self.real]
        seams = [seam(m, places) for m in mels]
        result = self.judge_windows(self.real, self.attributes)
        result.update(seam_mean=float(np.mean([s[0] for s in seams])), seam_max=float(np.max([s[1] for s in seams])),
                      silent_fraction=float(np.mean([silent_fraction(a) for a in self.real])))
        return result

    def continuations(self, method, more=7.68):
        """Held-out real clips continued with the empty caption, judged window by window after the clip."""
        real, _, attributes = render("test", self.pieces, CLIP_SECONDS, self.e.seed)
        generated = []
        for i, clip in enumerate(real):
            mel = self.e.mel(clip[None].to(self.pipe.device))
            latent = self.pipe.piece_latent([(0, "")], more, song_mel=mel, steps=self.steps, seed=i, method=method)
            generated.append(self.pipe.latents_to_audio(latent[None])[1][0].cpu()[WINDOW_SAMPLES:])
        return self.judge_windows(torch.stack(generated), attributes)

    def infills(self, method, seconds=5.12, span=(2.0, 3.0)):
        """The middle second of held-out real clips made anew: log-mel L1 over the span, seams at its ends."""
        real, _, attributes = render("test", self.pieces, seconds, self.e.seed)
        other, _, _ = render("test", self.pieces, seconds, self.e.seed + 1)  # another performance, same kind
        l1, reference, seams = [], [], []
        for i, clip in enumerate(real):
            mel = self.e.mel(clip[None].to(self.pipe.device))
            lo, hi = (f * self.pipe.vae.config.downsample for f in self.pipe.span_frames(*span, mel.shape[1]))
            latent = self.pipe.piece_latent([(0, "")], 0, song_mel=mel, regenerate=span, steps=self.steps, seed=i,
                                            method=method)
            new = self.pipe.latents_to_audio(latent[None])[0][0].cpu()
            kept = self.pipe.through_vae(mel)[0].cpu()  # the same clip through the VAE alone: what is not the span
            l1.append((new[lo:hi] - mel[0, lo:hi].cpu()).abs().mean().item())
            reference.append((self.e.mel(other[i][None].to(self.pipe.device))[0, lo:hi].cpu() - mel[0, lo:hi].cpu())
                             .abs().mean().item())
            seams.append(seam(new, [lo, hi])[0] - seam(kept, [lo, hi])[0])
        return {"span_log_mel_l1": float(np.mean(l1)), "other_performance_log_mel_l1": float(np.mean(reference)),
                "seam_excess": float(np.mean(seams))}

    def run(self):
        methods = ["repaint"] + (["trained"] if self.pipe.flow_model.config.audio_context else [])
        results = {"settings": {"pieces": self.pieces, "seconds": self.seconds, "steps": self.steps,
                                "run": self.pipe.run_dir}}
        results["single_clips"] = self.single_clips()
        for method in ["whole"] + methods:
            self.log(f"[long] {self.pieces} pieces of {self.seconds:g} s, {method}")
            results[f"long_{method}"], places = self.long_pieces(method)
        results["real_long"] = self.real_reference(places)
        for method in methods:
            self.log(f"[long] continuations and infills, {method}")
            results[f"continuation_{method}"] = self.continuations(method)
            results[f"infill_{method}"] = self.infills(method)
        return results


def long_table(results):
    """A markdown table of `LongJudge.run`'s results, one row per kind of piece."""
    lines = ["| pieces | instrument | tempo | mode | drums | agree with 1st window | pitch: in scale | pitch: mode "
             "| seam mean / max | silent | x real time |", "|" + "---|" * 11]
    for name, row in results.items():
        if "attribute_accuracy" not in row:
            continue
        acc, judged = row["attribute_accuracy"], row["pitch"]
        seam_cell = f"{row['seam_mean']:.3f} / {row['seam_max']:.3f}" if "seam_mean" in row else ""
        lines.append(f"| {name} | " + " | ".join(f"{acc[a]:.2f}" for a in ATTRIBUTES)
                     + f" | {row['agreement']:.2f} | {judged['in_scale_energy']:.2f} | {judged['mode_by_scale_fit']:.2f} | "
                     f"{seam_cell} | {row.get('silent_fraction', float('nan')):.2f} | "
                     f"{row.get('realtime_factor', float('nan')):.1f} |")
    for name, row in results.items():
        if "span_log_mel_l1" in row:
            lines.append(f"\n{name}: span log-mel L1 {row['span_log_mel_l1']:.3f} (another performance: "
                         f"{row['other_performance_log_mel_l1']:.3f}), seam excess over the VAE's own "
                         f"{row['seam_excess']:+.3f}")
    return "\n".join(lines)
