"""How results/vocoder/step_time.json was made (a one-off record, not part of the project's CLIs).

The vocoder stage's training step exactly as `train.py --tiny` runs it (batch 8 crops of 0.52 s,
fp32), with the default iSTFT head and with the original waveform head: milliseconds per
reconstruction (warm-up) step and per GAN step, median of REPEATS after two warm-up calls, one
process, nothing else running. Run from the repository root: python results/vocoder/step_time.py
"""
import dataclasses
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
import stages  # noqa: E402
import train  # noqa: E402

REPEATS = 15
torch.set_num_threads(2)
config = dataclasses.replace(train.TINY, num_clips=64, num_val_clips=4)
out = {"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ") if os.path.exists(
    "/proc/cpuinfo") else "", "threads": torch.get_num_threads()}
for head in ("istft", "waveform"):
    context = stages.Context("runs/vocoder_step_time", dataclasses.replace(config, vocoder_head=head), None,
                             train.World(), progress=False)
    job = stages.build("vocoder", context)
    for phase, first in (("warm-up", 0), ("GAN", config.vocoder_warmup)):
        times = []
        for step in range(first, first + REPEATS + 2):
            start = time.perf_counter()
            job.train_step(step)
            times.append(time.perf_counter() - start)
        out[f"{head} head, {phase} step ms"] = round(1000 * statistics.median(times[2:]), 1)
        print(head, phase, out[f"{head} head, {phase} step ms"], flush=True)
with open("results/vocoder/step_time.json", "w") as f:
    json.dump(out, f, indent=1)
