"""Where does a note's exact pitch live in the STFT the log-mel is made from: its magnitude or its phase?

    python experiments/pitch_oracle.py            # -> results/pitch/oracle.json

Held-out real clips are turned back into sound from their own STFT (n_fft 1024, hop 160: the
frames of the log-mel) with one half of it replaced: the magnitude by the least-squares magnitude
that the 64-band log-mel allows (audio.mel_to_linear, where the iSTFT vocoder starts), or the
phase by every bin turning at its own centre frequency (what a phase model that knows nothing
gives), or by the phase the vocoder's "from_magnitude" and "hann_ratio" models derive from the true
magnitude (their ceilings: a generator whose magnitude were perfect). Each is judged by pitch.py: in-scale energy,
mode by scale fit, notes heard at their pitch. The vocoder and Griffin-Lim of a run (--run) are
judged beside them, and the mean pitch-class profile of the major and of the minor clips, for the
audio and through the vocoder, shows which notes a vocoder moves.
"""

import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

import pitch
from audio import HOP, N_FFT, MelSpectrogram, griffin_lim, inverse_stft, mel_to_linear
from common import default_run
from data import CLIP_SECONDS, SynthMusicDataset
from music import NOTE_NAMES
from pipeline import load_stage
from vocoder import MAGNITUDE_FLOOR, STFT_BINS, head_log_magnitude, istft_head


def stft_frames(audio, frames):
    """The complex STFT whose magnitudes MelSpectrogram pools: (B, 513, frames)."""
    pad = (N_FFT - HOP) // 2
    padded = F.pad(audio[:, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(padded, N_FFT, HOP, window=torch.hann_window(N_FFT), center=False, return_complex=True)
    return spec[..., :frames]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=32, help="held-out test clips (default 32)")
    parser.add_argument("--run", help="run whose vocoder to judge beside the oracles (default: runs/tiny, "
                                      "else pretrained/tiny)")
    parser.add_argument("--out", default="results/pitch/oracle.json")
    args = parser.parse_args(argv)
    dataset = SynthMusicDataset("test", args.num, CLIP_SECONDS, 0)
    items = [dataset[i] for i in range(args.num)]
    audio = torch.stack([item["audio"] for item in items])
    attributes = [item["attributes"] for item in items]
    scores = [dataset.score(i) for i in range(args.num)]
    mel = MelSpectrogram()(audio)
    frames = mel.shape[1]
    true = stft_frames(audio, frames)
    least_squares = mel_to_linear(mel).transpose(1, 2)
    bins = torch.arange(true.shape[1])[:, None]  # each bin turning at its centre frequency, from torch.stft's reference
    centre = torch.remainder(2 * math.pi * bins * HOP / N_FFT * torch.arange(frames) - math.pi * bins, 2 * math.pi)
    play = lambda spec: inverse_stft(spec, frames)[:, :audio.shape[1]]
    vocoder = load_stage(args.run or default_run(), "vocoder")
    least_log, no_correction = least_squares.clamp(min=MAGNITUDE_FLOOR).log(), torch.zeros_like(least_squares)
    with torch.no_grad():
        cases = {"the audio": audio,
                 "its STFT, inverted": play(true),
                 "least-squares magnitude + true phase": play(torch.polar(least_squares, true.angle())),
                 "true magnitude + bin-centre phase": play(torch.polar(true.abs(), centre.expand_as(least_squares))),
                 # the iSTFT head given the true magnitude and no phase correction (tanh 0 = 0)
                 "true magnitude + phase from its slope (from_magnitude)": istft_head(
                     torch.cat([true.abs().clamp(min=MAGNITUDE_FLOOR).log() - least_log, no_correction], 1), mel,
                     "from_magnitude")[:, :audio.shape[1]],
                 "true magnitude + phase from its Hann ratio (hann_ratio)": istft_head(
                     torch.cat([true.abs().clamp(min=MAGNITUDE_FLOOR).log() - least_log, no_correction], 1), mel,
                     "hann_ratio")[:, :audio.shape[1]],
                 "Griffin-Lim (least-squares magnitude, phase by iteration)": griffin_lim(mel)[:, :audio.shape[1]],
                 "the run's vocoder": vocoder(mel)[:, :audio.shape[1]]}
        if vocoder.config.head == "istft":  # its magnitude with each phase: which half loses the pitch
            correction = vocoder.head_input(mel)[:, :STFT_BINS]
            magnitude = head_log_magnitude(correction, mel).exp()
            cases["the run's vocoder's magnitude + true phase"] = play(torch.polar(magnitude, true.angle()))
            cases["the run's vocoder's magnitude + phase from its slope"] = istft_head(
                torch.cat([correction, no_correction], 1), mel, "from_magnitude")[:, :audio.shape[1]]
    results = {name: pitch.judge(clips, attributes, scores, audio) for name, clips in cases.items()}
    for name, judged in results.items():
        print(f"{name:58s} " + "  ".join(f"{k} {v:.3f}" for k, v in judged.items()))
    profiles = {}  # each clip's chroma as shares of its energy, averaged over the clips of each mode
    for name in ("the audio", "the run's vocoder"):
        shares = pitch.chroma(cases[name])
        shares = shares / shares.sum(1, keepdim=True)
        for mode in ("major", "minor"):
            chosen = torch.tensor([a["mode"] == mode for a in attributes])
            profiles[f"{name}, {mode}"] = dict(zip(NOTE_NAMES, shares[chosen].mean(0).tolist()))
    print(f"{'mean pitch-class shares':32s}" + "".join(f"{note:>6s}" for note in NOTE_NAMES))
    for name, profile in profiles.items():
        print(f"{name:32s}" + "".join(f"{share:6.3f}" for share in profile.values()))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"num": args.num, "run": args.run or default_run(log=lambda message: None), "results": results,
                   "profiles": profiles}, f, indent=1)


if __name__ == "__main__":
    main()
