"""README's overview picture: a generated log-mel beside a sketch of the pipeline that made it.

    python experiments/overview_figure.py                       # -> docs/overview.png
    python experiments/overview_figure.py --prompt "slow organ, minor key, no drums" --seed 3

Left: the log-mel spectrogram that the shipped model (`pretrained/tiny`) generates for one
caption, exactly as `sample.py` makes it (same default steps, guidance and seed), before the
vocoder turns it into sound. Right: boxes and arrows for the data flow of `Pipeline.generate`:

    caption ─► T5 (token features c) and CLAP (pooled y) ─► flow transformer ◄─ noise ε
            ─► Euler steps t: 1 → 0 with guidance ─► latent x0 ─► VAE decoder ─► log-mel ─► HiFi-GAN ─► waveform
"""

import argparse
import os
import textwrap

import torch
from matplotlib.figure import Figure  # not pyplot: no GUI backend to choose
from matplotlib.patches import FancyBboxPatch

from common import pick_device
from pipeline import DEFAULT_CFG, DEFAULT_STEPS, Pipeline

DEFAULT_PROMPT = "upbeat piano with drums in a major key"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw docs/overview.png: a generated log-mel and the pipeline.")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f'caption to generate (default: "{DEFAULT_PROMPT}")')
    parser.add_argument("--run", default="pretrained/tiny", help="trained run to sample from (default pretrained/tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"Euler steps (default {DEFAULT_STEPS})")
    parser.add_argument("--cfg", type=float, default=DEFAULT_CFG, help=f"guidance scale (default {DEFAULT_CFG})")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--out", default="docs/overview.png", help="where to write the picture (default docs/overview.png)")
    parser.add_argument("--dpi", type=int, default=120)
    return parser.parse_args(argv)


def box(ax, x, y, text, width=1.9, height=0.8, color="#dbe9f6"):
    """A rounded box centred on (x, y); returns its edges for the arrows."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="#333333", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)
    return {"left": x - width / 2 - 0.05, "right": x + width / 2 + 0.05,
            "top": y + height / 2 + 0.05, "bottom": y - height / 2 - 0.05}


def arrow(ax, start, end, label=None, label_offset=(0.0, 0.15)):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.2))
    if label:
        ax.text((start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1], label,
                ha="center", va="bottom", fontsize=7.5, style="italic")


def draw_pipeline(ax, prompt):
    """caption → text encoders → flow transformer ← noise; → VAE decoder → log-mel → HiFi-GAN → waveform."""
    ax.set_xlim(0, 10.6), ax.set_ylim(0.5, 6.4), ax.axis("off")
    words = textwrap.wrap(textwrap.shorten(prompt, 48, placeholder=" …"), 16) or ["(unconditional)"]
    caption = box(ax, 1.1, 5.0, "\n".join(words), width=1.8, height=0.25 + 0.28 * len(words), color="#fff2cc")
    t5 = box(ax, 3.7, 5.75, "T5 encoder\n(text.py)")
    clap = box(ax, 3.7, 4.25, "CLAP text tower\n(text.py)")
    flow = box(ax, 7.15, 5.0, "flow transformer\n(model.py)\ndouble + single stream", width=2.2, height=1.2,
               color="#f8cecc")
    noise = box(ax, 9.75, 5.0, "noise ε\n8 × T/4 × 16", width=1.5, color="#e1d5e7")
    arrow(ax, (caption["right"], 5.15), (t5["left"], 5.75))
    arrow(ax, (caption["right"], 4.85), (clap["left"], 4.25))
    arrow(ax, (t5["right"], 5.75), (flow["left"], 5.3), "c (tokens)", label_offset=(-0.1, 0.12))
    arrow(ax, (clap["right"], 4.25), (flow["left"], 4.7), "y (pooled)", label_offset=(-0.1, -0.38))
    arrow(ax, (noise["left"], 5.0), (flow["right"], 5.0))

    vae = box(ax, 1.3, 1.3, "VAE decoder\n(vae.py)", width=1.8, color="#d5e8d4")
    mel = box(ax, 3.9, 1.3, "log-mel\nT × 64", width=1.5, color="#fff2cc")
    vocoder = box(ax, 6.4, 1.3, "HiFi-GAN\n(vocoder.py)", width=1.8, color="#d5e8d4")
    wave = box(ax, 9.1, 1.3, "waveform\n16 kHz", width=1.6, color="#fff2cc")
    # the elbow from the transformer down to the decoder: the ODE's end point, a latent x0
    elbow_y = 2.9
    ax.plot([7.15, 7.15, 1.3], [flow["bottom"], elbow_y, elbow_y], color="#333333", lw=1.2)
    arrow(ax, (1.3, elbow_y), (1.3, vae["top"]))
    ax.text(4.2, elbow_y + 0.12, "Euler steps t: 1 → 0, guidance on a doubled batch → latent x0",
            ha="center", va="bottom", fontsize=7.5, style="italic")
    arrow(ax, (vae["right"], 1.3), (mel["left"], 1.3))
    arrow(ax, (mel["right"], 1.3), (vocoder["left"], 1.3))
    arrow(ax, (vocoder["right"], 1.3), (wave["left"], 1.3))
    ax.set_title("caption → waveform (pipeline.py)", fontsize=10)


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    torch.set_grad_enabled(False)
    pipe = Pipeline(args.run, device)
    seconds = pipe.trained_seconds
    mels, _ = pipe.generate([args.prompt], seconds=seconds, steps=args.steps, cfg=args.cfg, seed=args.seed)
    mel = mels[0].float().cpu()  # (T, 64)

    fig = Figure(figsize=(13, 4.4), dpi=args.dpi)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.35]})
    image = left.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma",
                        extent=[0, seconds, 0, mel.shape[1]])
    left.set_xlabel("time (s)"), left.set_ylabel("mel band (0–8 kHz)")
    left.set_title(f'generated by {args.run}: "{args.prompt}"\n'
                   f"seed {args.seed}, {args.steps} Euler steps, guidance {args.cfg:g}", fontsize=9)
    fig.colorbar(image, ax=left, label="log-mel", fraction=0.05, pad=0.02)
    draw_pipeline(right, args.prompt)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
