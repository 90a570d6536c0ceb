"""bf16 against fp32 at equal steps, stage by stage, on --tiny's schedule (issue: Speed).

For each precision, trains the VAE, CLAP and T5 stages with train.TINY's sizes into
runs/eq_<precision>, then the flow stage for FLOW_STEPS steps on the *fp32* run's frozen parts
(so only the transformer's precision differs): fp32 eager against the default (bf16 where native,
compiled). The vocoder is left out: it always trains in fp32 (its stage opts out of bf16).
Writes results/precision/equal_steps.json: each stage's held-out metrics and training seconds.

    .venv/bin/python results/precision/equal_steps.py     # ~30 min on a 2-core CPU, alone
"""
import json, os, shutil, sys, time
from dataclasses import replace

sys.path.insert(0, os.getcwd())
import train
from common import cpu_flags, git_commit, stage_path

FLOW_STEPS = int(os.environ.get("FLOW_STEPS", 1000))
OUT = os.environ.get("OUT", "results/precision/equal_steps.json")
results = {"commit": git_commit()[0], "date": time.strftime("%Y-%m-%d"), "flow_steps": FLOW_STEPS,
           "cpu_bf16": sorted({"avx512_bf16", "amx_bf16"} & cpu_flags()), "stages": {}}


def save():
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


for precision in ("fp32", "bf16"):
    run = f"runs/eq_{precision}"
    config = replace(train.TINY, precision=precision, compile=False, sample_every=0)
    for name, metrics in train.train(run, config, ["vae", "clap", "t5"], progress=False).items():
        results["stages"].setdefault(name, {})[precision] = metrics
        save()

for label, precision, compiled in (("fp32 eager", "fp32", False), ("bf16 compiled", "bf16", True)):
    run = f"runs/eq_flow_{precision}"
    os.makedirs(run, exist_ok=True)
    for name in ("vae", "clap", "t5"):
        shutil.copy(stage_path("runs/eq_fp32", name), run)
    if os.path.exists("runs/eq_fp32/flow_cache.pt"):
        shutil.copy("runs/eq_fp32/flow_cache.pt", run)
    config = replace(train.TINY, precision=precision, compile=compiled, sample_every=0,
                     flow=replace(train.TINY.flow, steps=FLOW_STEPS))
    metrics = train.train(run, config, ["flow"], progress=False)["flow"]
    results["stages"].setdefault("flow", {})[label] = metrics
    if not os.path.exists("runs/eq_fp32/flow_cache.pt"):
        shutil.copy(os.path.join(run, "flow_cache.pt"), "runs/eq_fp32")
    save()
print(json.dumps(results["stages"], indent=1))
