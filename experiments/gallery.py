"""The listening gallery of pretrained/tiny: docs/gallery/index.html, linked from README.

    python experiments/gallery.py                # -> docs/gallery/ (OGG audio, spectrograms, index.html)

Nothing is picked by ear: seed 0 of a fixed list of captions (clips of the trained length), two
30 s pieces made window by window, continuations of the first two held-out real clips with the
empty caption, the middle second of a held-out clip made anew, and a piece whose caption changes
half way. Audio is stored as OGG Vorbis to keep the repository small.
"""

import argparse
import os
import sys

import soundfile
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import listening  # noqa: E402
from audio import SAMPLE_RATE, MelSpectrogram  # noqa: E402
from classifier import render  # noqa: E402
from data import CLIP_SECONDS  # noqa: E402
from pipeline import DEFAULT_CFG, DEFAULT_STEPS, Pipeline  # noqa: E402
from sample import save_spectrogram, slug  # noqa: E402

CLIPS = ["A slow, melancholic piano piece in a minor key, without drums.",
         "A fast, cheerful guitar tune in a major key, with drums.",
         "organ, medium tempo, major key, drums",
         "Slow bells in a minor key, no drums."]
LONG = ["A calm piano piece in a major key, without drums.", "An upbeat organ tune in a minor key, with drums."]
CHANGING = [(0, "A slow piano piece in a major key, without drums."),
            (10.0, "A fast piano piece in a major key, with drums.")]


def write(folder, name, mel, audio, title, settings, entries):
    path = os.path.join(folder, f"{name}.ogg")
    soundfile.write(path, audio.clamp(-1, 1).numpy(), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    picture = os.path.join(folder, f"{name}.png")
    save_spectrogram(picture, mel, title)
    entries.append({"audio": path, "picture": picture, "settings": settings})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="pretrained/tiny")
    parser.add_argument("--out", default="docs/gallery")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the long pieces (default 30)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    pipe = Pipeline(args.run, "cpu", precision="fp32")
    mel_fn, entries = MelSpectrogram(), []
    base = {"run": args.run, "steps": DEFAULT_STEPS, "cfg": DEFAULT_CFG, "seed": 0}
    for i, caption in enumerate(CLIPS):
        mel, audio = pipe.generate([caption], seconds=CLIP_SECONDS)
        write(args.out, f"clip_{i}_{slug(caption, 30)}", mel[0], audio[0], caption,
              {"caption": caption, "length": f"{CLIP_SECONDS} s", **base}, entries)
    for i, caption in enumerate(LONG):
        mel, audio = pipe.latents_to_audio(pipe.piece_latent([(0, caption)], args.seconds)[None])
        write(args.out, f"long_{i}_{slug(caption, 30)}", mel[0], audio[0], caption,
              {"caption": caption, "length": f"{args.seconds:g} s, window by window", **base}, entries)
    mel, audio = pipe.latents_to_audio(pipe.piece_latent(CHANGING, 20.0)[None])
    write(args.out, "changing_caption", mel[0], audio[0], f"{CHANGING[0][1]} ... then at 10 s: {CHANGING[1][1]}",
          {"caption": CHANGING[0][1], "from 10 s": CHANGING[1][1], "length": "20 s", **base}, entries)
    real, captions, _ = render("test", 3, CLIP_SECONDS, 0)
    for i in range(2):
        mel, audio = pipe.latents_to_audio(pipe.piece_latent([(0, "")], 7.68, song_mel=mel_fn(real[i:i + 1]))[None])
        write(args.out, f"continuation_{i}", mel[0], audio[0], f"held-out clip {i} continued, no caption",
              {"caption": "(none)", "continues": f"held-out clip {i} (its caption, unseen: {captions[i]})",
               "length": "2.56 s real + 7.68 s made", **base}, entries)
    song, captions, _ = render("test", 1, 5.12, 1)
    mel, audio = pipe.latents_to_audio(pipe.piece_latent([(0, "")], 0, song_mel=mel_fn(song), regenerate=(2.0, 3.0))[None])
    write(args.out, "infill", mel[0], audio[0], "a held-out clip, 2-3 s made anew",
          {"caption": "(none)", "infill of": f"a held-out clip ({captions[0]})", "span": "2-3 s", **base}, entries)
    page = listening.add_to_page(entries, title="FluxMusic tiny: a gallery (not cherry-picked)")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {page} ({len(entries)} pieces, {total / 1e6:.1f} MB)")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
