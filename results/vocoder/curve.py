"""How results/vocoder/curve.json was made (a one-off record, not part of the project's CLIs).

Trains the vocoder stage of `train.py --tiny` (same data, seed, batch, learning rates) for
several HiFi-GAN generator variants, and every `EVERY` steps measures the held-out log-mel L1
and multi-resolution STFT distance of the generator (the first 16 held-out clips) next to
Griffin-Lim's on the same clips. (The --tiny recipe itself is 4000 warm-up steps and no GAN
steps; its numbers on all 64 held-out clips are in the run's vocoder.pt metrics.) Run from the repository root:

    python results/vocoder/curve.py NAME [NAME ...]     (names: see VARIANTS)
"""
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
import stages  # noqa: E402
import train  # noqa: E402
import vocoder  # noqa: E402

EVERY, CLIPS = 300, 16
TINY = vocoder.HiFiGANConfig()
VARIANTS = {  # name: (generator config, reconstruction warm-up steps, GAN steps)
    "istft128_gan300": (TINY, 3000, 300),  # the --tiny generator, with the GAN phase after 3000 steps
    "istft64": (dataclasses.replace(TINY, initial_channels=64), 3000, 0),
    "istft256": (dataclasses.replace(TINY, initial_channels=256), 3000, 0),
    "waveform64": (vocoder.HiFiGANConfig.waveform(), 3000, 0),  # the original head, the previous recipe's size
}
STOP = int(os.environ.get("STOP", 0))  # end a variant's curve after this many steps (quick looks)


def run(name, context, out):
    config, warmup, gan = VARIANTS[name]
    size = dataclasses.replace(train.TINY.vocoder, steps=warmup + gan)
    context.config = dataclasses.replace(train.TINY, vocoder=size, vocoder_warmup=warmup, save_every=10**9)
    context.run_dir = f"runs/vocoder_{name}"
    os.makedirs(context.run_dir, exist_ok=True)
    original = vocoder.HiFiGANConfig.__dict__["for_head"]
    vocoder.HiFiGANConfig.for_head = lambda head: config  # the stage asks for_head(); this variant instead
    audio = context.val.audio[:CLIPS]
    rows, start = [], time.time()

    def after_step(job, done):
        if done % EVERY and done != job.size.steps:
            return
        job.model.eval()
        with torch.no_grad():
            metrics = vocoder.compare_with_griffin_lim(job.model, audio, context.mel_fn)
        job.model.train()
        rows.append({"step": done, "seconds": round(time.time() - start, 1), **metrics})
        print(name, rows[-1], flush=True)
        if STOP and done >= STOP:
            raise train.StopRequested(f"{name}: stopped at {done}")

    stages.VocoderStage.after_step = after_step
    try:
        train.run_stage("vocoder", context, context.world, {"stop": False})
    except train.StopRequested as stopped:
        print(stopped)
    finally:
        vocoder.HiFiGANConfig.for_head = original
    out[name] = {"config": dataclasses.asdict(config), "warmup": warmup, "gan": gan, "rows": rows}


if __name__ == "__main__":
    torch.set_num_threads(2)
    path = "results/vocoder/curve.json"
    out = json.load(open(path)) if os.path.exists(path) else {}
    context = stages.Context("runs/vocoder", train.TINY, None, train.World(), progress=False)
    for name in sys.argv[1:]:
        run(name, context, out)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
