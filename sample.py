"""Turn captions into music with a trained run: WAV files plus spectrogram pictures.

    python sample.py                                   # default caption, runs/tiny → samples/
    python sample.py --prompt "A fast, cheerful guitar tune in a major key, with drums."
    python sample.py --prompts-file captions.txt --steps 25 --cfg 4 --sampler heun
    python sample.py --reconstruct song.wav [--through-vae]   # what the log-mel (and VAE) keep of a file
    python sample.py --prompt "slow piano" --seconds 30 --then 15 "fast piano with drums"
    python sample.py --continue song.wav --seconds 10         # what comes next (the caption is optional)
    python sample.py --infill song.wav --start 4 --end 6      # the span 4-6 s made anew

Sampling solves the flow ODE dz/dt = v_θ(z, t, y, c) from pure noise at t = 1 to a VAE
latent at t = 0 (see flow.py), with classifier-free guidance toward the caption and away from
the negative prompt; the VAE decodes the latent to a log-mel and HiFi-GAN (or, with
--griffin-lim, the classic phase-reconstruction algorithm) turns it into sound. The same
--seed gives the same audio on the CPU; each caption in a batch gets its own noise.

Longer than the trained clip, and for --continue and --infill, the latent is made window by window,
each window seeing the frames already known (longform.py). Every call also adds its pieces to a
listening page, index.html beside them (listening.py).
"""

import argparse
import os
import re
import sys
import warnings

import torch
from matplotlib.figure import Figure  # not pyplot: no backend to choose, none switched under a notebook

import listening
from common import PRECISIONS, CheckpointError, default_run, pick_device, positive_int
from audio import AUDIO_EXTENSIONS, FRAMES_PER_SECOND, MelSpectrogram, load_audio, save_wav
from pipeline import DEFAULT_CFG, DEFAULT_STEPS, Pipeline, frames_for

DEFAULT_PROMPT = "A slow, melancholic piano piece in a minor key, without drums."
MAX_PROMPT_BYTES = 128


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Generate music from text with a trained FluxMusic run.")
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument("--prompt", help=f'caption to play (default: "{DEFAULT_PROMPT}")')
    prompts.add_argument("--prompts-file", help="text file with one caption per line")
    prompts.add_argument("--reconstruct", metavar="SONG",
                         help="instead of generating: play an audio file's log-mel back through the vocoder, "
                              "so you hear what the mel (and, with --through-vae, the VAE) keep of it")
    songs = parser.add_mutually_exclusive_group()
    songs.add_argument("--continue", dest="continue_from", metavar="SONG",
                       help="continue an audio file by --seconds (default 10) of music; the caption is optional")
    songs.add_argument("--infill", metavar="SONG", help="make the span --start .. --end of an audio file anew")
    parser.add_argument("--start", type=non_negative_float, help="with --infill: where the span begins (seconds)")
    parser.add_argument("--end", type=positive_float, help="with --infill: where the span ends (seconds)")
    parser.add_argument("--then", nargs=2, action="append", default=[], metavar=("SECONDS", "CAPTION"),
                        help="from SECONDS on (counted from the start of the output), play CAPTION instead "
                             "(repeatable): a caption that changes along the piece")
    parser.add_argument("--long", choices=["windows", "whole"],
                        help="how a piece longer than the trained clip is made: window by window, each seeing "
                             "the end of the one before (default), or as one latent (at most 60 s)")
    parser.add_argument("--context", choices=["trained", "repaint"],
                        help="how a window reads the frames already known: through the inputs the model was "
                             "trained with (default where it was), or training-free, by resetting them along the path")
    parser.add_argument("--through-vae", action="store_true", help="with --reconstruct: encode and decode the "
                                                                    "log-mel with the VAE on the way")
    parser.add_argument("--negative-prompt", default="", help="what to steer away from (default: the empty caption)")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS,
                        help=f"ODE solver steps (default {DEFAULT_STEPS})")
    parser.add_argument("--cfg", type=non_negative_float, default=DEFAULT_CFG,
                        help=f"classifier-free guidance scale; 1 = no guidance (default {DEFAULT_CFG})")
    parser.add_argument("--sampler", choices=["euler", "heun", "ddim"],
                        help="ODE solver: euler (default) or heun; ddim for a model trained with --objective ddpm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help="clip length (default: the length the run was trained on)")
    parser.add_argument("--out", help="output: song.wav (several prompts write song_1.wav, song_2.wav, ...) "
                                      "or a folder (default samples/)")
    parser.add_argument("--run", help="run directory made by train.py (default: runs/tiny, or the shipped "
                                      "pretrained/tiny until you have trained one)")
    parser.add_argument("--griffin-lim", action="store_true", help="skip the vocoder; use Griffin–Lim instead")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): the networks in bf16 where the CPU/GPU has native bf16, else fp32")
    args = parser.parse_args(argv)
    if args.through_vae and not args.reconstruct:
        parser.error("--through-vae goes with --reconstruct SONG")
    if (args.start is not None or args.end is not None) != bool(args.infill):
        parser.error("--infill SONG needs --start and --end, and they go with --infill only")
    if args.infill and (args.start is None or args.end is None):
        parser.error("--infill SONG needs both --start and --end (seconds)")
    if args.reconstruct and (args.continue_from or args.infill):
        parser.error("--reconstruct does not go with --continue or --infill")
    try:
        args.then = [(positive_float(when), caption.strip()) for when, caption in args.then]
    except argparse.ArgumentTypeError as error:
        parser.error(f"--then SECONDS CAPTION: SECONDS {error}")
    if args.then and args.prompts_file:
        parser.error("--then changes the caption of one piece; it does not go with --prompts-file")
    return args


def read_prompts(args):
    if args.prompts_file:
        if not os.path.isfile(args.prompts_file):
            raise ValueError(f"--prompts-file {args.prompts_file}: no such file")
        with open(args.prompts_file, encoding="utf-8", errors="replace") as f:
            prompts = [line.strip() for line in f if line.strip()]
        if not prompts:
            raise ValueError(f"--prompts-file {args.prompts_file} has no captions (one caption a line)")
        return prompts
    song = args.continue_from or args.infill  # its own music carries a continuation: no caption needed
    prompt = ("" if song else DEFAULT_PROMPT) if args.prompt is None else args.prompt.strip()
    if not prompt and not song:
        warnings.warn('empty prompt: generating unconditional music (the model\'s "" caption)', stacklevel=2)
    return [prompt]


def check_prompt_lengths(prompts):
    for prompt in prompts:
        if len(prompt.encode("utf-8")) >= MAX_PROMPT_BYTES:
            warnings.warn(f"prompt longer than {MAX_PROMPT_BYTES - 1} bytes is cut there: "
                          f"{prompt[:40]!r}...", stacklevel=2)


def output_paths(args, prompts):
    """One WAV per prompt: --out song.wav is song.wav for one prompt and song_1.wav, song_2.wav, ...
    for several (numbered in file order, zero-padded so they also sort in it); any other --out
    is a folder of files named after their captions."""
    if args.out and args.out.lower().endswith(".wav"):
        if len(prompts) == 1:
            return [args.out]
        stem, extension = os.path.splitext(args.out)
        width = len(str(len(prompts)))
        return [f"{stem}_{i:0{width}d}{extension}" for i in range(1, len(prompts) + 1)]
    if os.path.splitext(args.out or "")[1].lower() in AUDIO_EXTENSIONS:  # .wav returned above
        raise ValueError(f"--out {args.out}: sample.py writes WAV files; give a .wav name or a folder")
    folder = args.out or "samples"
    song = args.continue_from or args.infill
    if song:
        stem = slug(os.path.splitext(os.path.basename(song))[0])
        how = "continued" if args.continue_from else f"infill_{args.start:g}-{args.end:g}s"
        return [os.path.join(folder, f"{i:02d}_{stem}_{how}{'_' + slug(p) if p else ''}_seed{args.seed}.wav")
                for i, p in enumerate(prompts)]
    return [os.path.join(folder, f"{i:02d}_{slug(p)}_seed{args.seed}.wav") for i, p in enumerate(prompts)]


def slug(text, length=40):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:length] or "unconditional"


def save_spectrogram(path, mel, caption):
    fig = Figure(figsize=(7, 3), dpi=90)
    ax = fig.subplots()
    image = ax.imshow(mel.T.cpu().numpy(), origin="lower", aspect="auto", cmap="magma",
                      extent=[0, mel.shape[0] / FRAMES_PER_SECOND, 0, mel.shape[1]])
    ax.set_xlabel("time (s)"), ax.set_ylabel("mel bin"), ax.set_title(caption[:90] or "(unconditional)", fontsize=8)
    fig.colorbar(image, ax=ax, label="log-mel")
    fig.tight_layout()
    fig.savefig(path)


def reconstruct(args):
    """--reconstruct: the file's log-mel (through the VAE with --through-vae) made sound again."""
    try:
        audio = load_audio(args.reconstruct)  # a one-line ValueError naming the file if it cannot be read
        pipe = Pipeline(args.run or default_run(), pick_device(args.device),
                        use_vocoder=False if args.griffin_lim else None, precision=args.precision)
        mel = MelSpectrogram().to(pipe.device)(audio[None].to(pipe.device))
        if args.through_vae:
            mel = pipe.through_vae(mel)
        clip = pipe.mel_to_audio(mel)[0]
        stem = os.path.splitext(os.path.basename(args.reconstruct))[0]
        how = ("vae_" if args.through_vae else "mel_") + ("vocoder" if pipe.vocoder is not None else "griffin_lim")
        path = args.out if (args.out or "").lower().endswith(".wav") else \
            os.path.join(args.out or "samples", f"{stem}_through_{how}.wav")
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    save_wav(path, clip)
    picture = os.path.splitext(path)[0] + ".png"
    save_spectrogram(picture, mel[0], f"{os.path.basename(args.reconstruct)} through {how.replace('_', ' ')}")
    print(f"{args.reconstruct} through {how.replace('_', ' ')}\n  audio: {path}\n  spectrogram: {picture}")


def make_pieces(args, pipe, prompts):
    """(log-mels, waveforms) for the prompts: one latent each as the run was trained (the default
    for its clip length), or window by window (longer pieces, --continue, --infill, --then)."""
    options = dict(steps=args.steps, cfg=args.cfg, sampler=args.sampler, negative_prompt=args.negative_prompt,
                   seed=args.seed)
    song = args.continue_from or args.infill
    seconds = args.seconds or (10.0 if args.continue_from else pipe.trained_seconds)
    whole = args.long == "whole" or (args.long is None and seconds <= pipe.trained_seconds + 1e-6)
    if not song and not args.then and whole:
        frames_for(seconds)  # validates the length before any work
        return pipe.generate(prompts, seconds=seconds, **options)
    late = [when for when, _ in args.then if not song and when >= seconds]
    if late:
        raise ValueError(f"--then {late[0]:g} is past the end of a {seconds:g} s piece; give a time within it")
    if song and args.long == "whole":
        raise ValueError("--continue and --infill are made window by window; leave out --long whole")
    song_mel = None
    if song:
        song_mel = MelSpectrogram().to(pipe.device)(load_audio(song)[None].to(pipe.device))
    mels, audio = [], []
    for prompt in prompts:
        timeline = [(0.0, prompt)] + args.then
        latent = pipe.piece_latent(timeline, seconds, song_mel=song_mel, method=args.context,
                                   regenerate=(args.start, args.end) if args.infill else None, **options)
        mel, clip = pipe.latents_to_audio(latent[None])
        mels.append(mel[0]), audio.append(clip[0])
    return mels, audio


def settings_of(args, pipe, prompt):
    """What made a piece, as the listening page shows it."""
    settings = {"caption": prompt or "(no caption)", "seed": args.seed, "steps": args.steps, "cfg": args.cfg,
                "sampler": args.sampler or "euler", "run": args.run or default_run()}
    for name, value in (("negative prompt", args.negative_prompt), ("continues", args.continue_from),
                        ("infill of", args.infill), ("context", args.context), ("long", args.long)):
        if value:
            settings[name] = value
    if args.infill:
        settings["span"] = f"{args.start:g}-{args.end:g} s"
    for when, caption in args.then:
        settings[f"from {when:g} s"] = caption
    settings["vocoder"] = "HiFi-GAN" if pipe.vocoder is not None else "Griffin-Lim"
    return settings


def main(argv=None):
    args = parse_args(argv)
    if args.reconstruct:
        return reconstruct(args)
    try:
        prompts = read_prompts(args)
        check_prompt_lengths(prompts)
        paths = output_paths(args, prompts)
        device = pick_device(args.device)
        pipe = Pipeline(args.run or default_run(), device, use_vocoder=False if args.griffin_lim else None,
                        precision=args.precision)
        mels, audio = make_pieces(args, pipe, prompts)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    entries = []
    for path, prompt, mel, clip in zip(paths, prompts, mels, audio):
        save_wav(path, clip)
        picture = os.path.splitext(path)[0] + ".png"
        save_spectrogram(picture, mel, prompt)
        entries.append({"audio": path, "picture": picture, "settings": settings_of(args, pipe, prompt)})
        print(f"{prompt or '(unconditional)'}\n  audio: {path}\n  spectrogram: {picture}")
    print(f"listening page: {listening.add_to_page(entries)}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
