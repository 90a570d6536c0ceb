"""Does training in bf16 (and compiling the flow stage) lose anything at equal steps?

    python experiments/precision.py      # -> results/precision/equal_steps.json (~30 min on 2 CPU cores)

Each stage trained by train.train with `--tiny`'s sizes and seed, once in fp32 eager and once at the
default precision (bf16 autocast where the hardware has it natively): the VAE, CLAP and T5 stages
into runs/eq_fp32 and runs/eq_bf16, then the flow stage for --flow-steps steps on the fp32 run's
frozen parts (so only the transformer's precision differs), fp32 eager against bf16 compiled. The
vocoder is left out: it trains in fp32 either way. Written: each stage's held-out metrics and its
training seconds.
"""

import argparse
import json
import os
import shutil
from dataclasses import replace

import train
from common import cpu_flags, git_commit, stage_path

OUT = "results/precision/equal_steps.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow-steps", type=int, default=1000, help="flow steps in each precision (default 1000)")
    args = parser.parse_args(argv)
    results = {"commit": git_commit()[0], "flow_steps": args.flow_steps,
               "cpu_bf16": sorted({"avx512_bf16", "amx_bf16"} & cpu_flags()), "stages": {}}

    def save():
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            json.dump(results, f, indent=1)

    for precision in ("fp32", "bf16"):
        config = replace(train.TINY, precision=precision, compile=False, sample_every=0)
        for name, metrics in train.train(f"runs/eq_{precision}", config, ["vae", "clap", "t5"]).items():
            results["stages"].setdefault(name, {})[precision] = metrics
            save()
    for label, precision, compiled in (("fp32 eager", "fp32", False), ("bf16 compiled", "bf16", True)):
        run_dir = f"runs/eq_flow_{precision}"
        os.makedirs(run_dir, exist_ok=True)
        for name in ("vae", "clap", "t5"):
            shutil.copy(stage_path("runs/eq_fp32", name), run_dir)
        if precision == "bf16" and os.path.exists("runs/eq_flow_fp32/flow_cache.pt"):  # the same frozen features
            shutil.copy("runs/eq_flow_fp32/flow_cache.pt", run_dir)
        config = replace(train.TINY, precision=precision, compile=compiled, sample_every=0,
                         flow=replace(train.TINY.flow, steps=args.flow_steps))
        results["stages"].setdefault("flow", {})[label] = train.train(run_dir, config, ["flow"])["flow"]
        save()
    print(json.dumps(results["stages"], indent=1))


if __name__ == "__main__":
    main()
