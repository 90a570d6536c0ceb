"""How results/precision/compile_stages.json was made (a one-off record): does torch.compile pay back
its compiling within the vae / vocoder / clap / t5 stages? Eager against compiled train_step at --tiny
sizes and the default precision, the stages built as bench.stage_step_bench builds them.

    .venv/bin/python results/precision/compile_stages.py runs/tiny            # all four, one process
    .venv/bin/python results/precision/compile_stages.py runs/tiny t5 clap    # a fresh process for these

In the first form t5's "compiled" step ran eagerly (its first step took 0.2 s: dynamo had stopped
compiling Objective.forward after the earlier stages' variants, presumably its recompile limit), so t5
was measured again in a fresh process."""
import os, sys, shutil, tempfile, time, statistics, json
sys.path.insert(0, os.getcwd())
from dataclasses import replace
import torch
import bench, stages, train
from common import STAGES, stage_path
run_dir = sys.argv[1] if len(sys.argv) > 1 else "pretrained/tiny"
config = bench.train_sizes("tiny")
out = {}
with tempfile.TemporaryDirectory() as folder:
    for s in STAGES[:-1]:
        shutil.copy(stage_path(run_dir, s), folder)
    for name in (sys.argv[2:] or ("vae", "vocoder", "clap", "t5")):
        for compiled in (False, True):
            ctx = stages.Context(folder, replace(config, precision="auto"), None, train.World(device=torch.device("cpu")), progress=False)
            job = stages.build(name, ctx)
            if compiled:
                attr = "generator_objective" if name == "vocoder" else "objective"
                setattr(job, attr, torch.compile(getattr(job, attr)))
            t0 = time.perf_counter(); job.train_step(0); first = time.perf_counter() - t0
            job.train_step(1)
            ts = []
            for i in range(2, 17):
                t = time.perf_counter(); job.train_step(i); ts.append(time.perf_counter() - t)
            ms = 1000 * statistics.median(ts)
            out[f"{name} {'compiled' if compiled else 'eager'}"] = {"first_step_s": first, "step_ms": ms}
            print(name, "compiled" if compiled else "eager", f"first {first:.1f} s, step {ms:.1f} ms", flush=True)
json.dump(out, open(os.environ.get("OUT", "compile_stages_run.json"), "w"), indent=1)
