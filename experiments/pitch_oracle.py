"""Where does a note's exact pitch live in the STFT the log-mel is made from: its magnitude or its phase?

    python experiments/pitch_oracle.py            # -> results/pitch/oracle.json

Held-out real clips are turned back into sound from their own STFT (n_fft 1024, hop 160: the
frames of the log-mel) with one half of it replaced: the magnitude by the least-squares magnitude
that the 64-band log-mel allows (audio.mel_to_linear, where the iSTFT vocoder starts), or the
phase by every bin turning at its own centre frequency (what a phase model that knows nothing
gives). Each is judged by pitch.py: in-scale energy, mode by scale fit, notes heard at their pitch.
The vocoder and Griffin-Lim of a run (--run) are judged beside them.
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
from pipeline import load_stage


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
    with torch.no_grad():
        cases = {"the audio": audio,
                 "its STFT, inverted": play(true),
                 "least-squares magnitude + true phase": play(torch.polar(least_squares, true.angle())),
                 "true magnitude + bin-centre phase": play(torch.polar(true.abs(), centre.expand_as(least_squares))),
                 "Griffin-Lim (least-squares magnitude, phase by iteration)": griffin_lim(mel)[:, :audio.shape[1]],
                 "the run's vocoder": vocoder(mel)[:, :audio.shape[1]]}
    results = {name: pitch.judge(clips, attributes, scores, audio) for name, clips in cases.items()}
    for name, judged in results.items():
        print(f"{name:58s} " + "  ".join(f"{k} {v:.3f}" for k, v in judged.items()))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"num": args.num, "run": args.run or default_run(log=lambda message: None), "results": results},
                  f, indent=1)


if __name__ == "__main__":
    main()
