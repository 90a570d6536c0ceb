"""How fast is it, and how close to the hardware's limit? Speed and memory benchmarks.

    python bench.py                   # CPU column, plus a CUDA column if there is a GPU
    python bench.py --quick           # small sizes, a few seconds (tests)
    python bench.py --run runs/tiny   # the run to time text -> WAV with (default: runs/tiny, else pretrained/tiny)

It times one step of every training stage exactly as train.py runs it, in fp32 and, where the
hardware has native bf16, in bf16 autocast (the flow stage also compiled); the transformer's
step at two sizes with FLOP/s against a matmul measured in the same run; fused against
explicit attention; and caption -> WAV at sample.py's defaults, in each precision.

Results go to a markdown table and to bench.json. Timings are medians over repeats (other
processes on the machine add noise, and the median ignores the odd slow repeat); on CUDA
each timing waits for the GPU with torch.cuda.synchronize(), since kernels run asynchronously.

Counting FLOPs. A matrix product (m x k) @ (k x n) costs 2 m k n floating-point operations
(one multiply and one add per term). Nearly all of FluxMusic's work is such products. With
hidden size H, MLP ratio r, N = N_img + N_txt tokens in the joint sequence, every double-
and every single-stream block costs, per sample,

    2 N H^2 (4 + 2 r)   linear layers: q, k, v and the output projection (4 H^2 per token)
                        and the MLP's two layers (2 r H^2); the single block fuses the same
                        Linears into linear1 and linear2, so it costs the same
  + 4 N^2 H             attention: Q K^T and the weighted sum of V, each 2 N^2 H

plus the input and output projections 2 N_img (2 * 32 H) + 2 N_txt d_text H and the
per-sample embedders and modulations (tiny). Norms, RoPE, softmax and GELU are elementwise
and left out. A training step costs about 3x the forward pass (the backward pass computes
two products for every one of the forward pass: gradients for the inputs and the weights).
Achieved FLOP/s is that count divided by the measured time; its fraction of a plain matmul's
speed, measured here in the same run, says how much of the machine the model uses.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

import flow
import stages
import train
from audio import N_MELS, save_wav
from blocks import TIME_EMBED_DIM
from common import STAGES, CheckpointError, checkpoint_dict, default_run, native_bf16, pick_device
from common import autocast as precision_autocast  # train_step_bench's flag is called autocast
from common import save_checkpoint, stage_path
from data import CLIP_SECONDS
from model import PATCH, PRESETS, FluxMusic
from pipeline import DEFAULT_CFG, DEFAULT_STEPS, MODEL_CLASSES, Pipeline, frames_for
from vae import VAEConfig

# text tokens of a training sample (a caption is ~64 bytes); its music is a CLIP_SECONDS clip, 256 tokens
TEXT_TOKENS = 64
DOWNSAMPLE = VAEConfig().downsample  # the VAE halves frames and mel bins twice: 8 x T/4 x 16 latents
LATENT_FREQ = N_MELS // DOWNSAMPLE


# ----------------------------------------------------------------------------- timing and memory

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, device, repeats=5, warmup=1, best=False):
    """Median (or best) wall time of fn() over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times) if best else statistics.median(times)


def reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device):
    """CUDA: the most memory tensors held since the last reset. CPU: the process's peak resident
    memory so far (it cannot be reset, so benchmarks run from small to large)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------- FLOPs

def matmul_flops_per_second(device, dtype=torch.float32, n=2048, repeats=5):
    """The machine's practical peak: 2 n^3 / time of an n x n matmul, best of `repeats`."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, repeats, warmup=2, best=True)


def model_flops(config, n_img, n_txt):
    """Forward-pass FLOPs of FluxMusic for one sample (see the module docstring)."""
    h, r, n = config.hidden_size, config.mlp_ratio, n_img + n_txt
    blocks = config.depth + config.depth_single_blocks
    per_block = 2 * n * h * h * (4 + 2 * r) + 4 * n * n * h
    projections = 2 * n_img * 2 * config.in_channels * h + 2 * n_txt * config.context_in_dim * h
    # time_in and vector_in MLPs; 6 (double, per stream) or 3 (single) modulation vectors; final adaLN
    vectors = 2 * (TIME_EMBED_DIM * h + h * h) + 2 * (config.vec_in_dim * h + h * h) + \
        2 * h * h * (12 * config.depth + 3 * config.depth_single_blocks + 2)
    return blocks * per_block + projections + vectors


def tokens_for(seconds):
    """Music tokens of a clip: (frames / 4 / 2) time patches x (16 / 2) frequency patches."""
    return frames_for(seconds) // DOWNSAMPLE // PATCH * (LATENT_FREQ // PATCH)


# ----------------------------------------------------------------------------- the benchmarks

def flow_batch(config, batch, seconds, device):
    """A random training batch of the right shapes: latents, noise, times and text."""
    frames = frames_for(seconds)
    channels = config.in_channels // (PATCH * PATCH)
    x0 = torch.randn(batch, channels, frames // DOWNSAMPLE, LATENT_FREQ, device=device)
    txt = torch.randn(batch, TEXT_TOKENS, config.context_in_dim, device=device)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device)
    y = torch.randn(batch, config.vec_in_dim, device=device)
    return x0, torch.randn_like(x0), torch.rand(batch, device=device), txt, mask, y


def train_step_bench(preset, device, batch, repeats=3, autocast=False, compile=False):
    """One AdamW step of the flow model on a random batch: time, throughput, FLOP/s, memory."""
    torch.manual_seed(0)
    config = PRESETS[preset]
    model = FluxMusic(config).to(device)
    forward = torch.compile(model.velocity) if compile else model.velocity
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0, noise, t, txt, mask, y = flow_batch(config, batch, CLIP_SECONDS, device)

    def step():
        with precision_autocast(device, "bf16" if autocast else "fp32"):
            loss = flow.flow_loss(forward(flow.interpolate(x0, noise, t), t, txt, mask, y), x0, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    reset_peak_memory(device)
    start = time.perf_counter()
    step()  # the first step allocates the optimizer state (and compiles)
    sync(device)
    first = time.perf_counter() - start
    seconds = seconds_per_call(step, device, repeats, warmup=1)
    n_img = tokens_for(CLIP_SECONDS)
    flops = 3 * model_flops(config, n_img, TEXT_TOKENS) * batch
    result = {"batch": batch, "step_ms": 1000 * seconds, "samples_per_s": batch / seconds,
              "tokens_per_s": batch * (n_img + TEXT_TOKENS) / seconds, "gflops": flops / seconds / 1e9,
              "peak_memory_mb": peak_memory_mb(device)}
    if compile:
        result["compile_s"] = first
    return result


def explicit_attention(q, k, v, attn_mask=None):
    """softmax(Q K^T / sqrt(d) + mask) V written out: what scaled_dot_product_attention fuses."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def attention_bench(preset, device, batch, seconds, repeats=5):
    """Forward + backward of one attention call at a preset's head shape: fused (fp32 and bf16) vs explicit."""
    config = PRESETS[preset]
    heads, head_dim = config.num_heads, config.hidden_size // config.num_heads
    n = tokens_for(seconds) + TEXT_TOKENS
    q, k, v = (torch.randn(batch, heads, n, head_dim, device=device, requires_grad=True) for _ in range(3))
    mask = torch.ones(batch, 1, 1, n, dtype=torch.bool, device=device)

    def run(attention, dtype=torch.float32):
        attention(*(x.to(dtype) for x in (q, k, v)), attn_mask=mask).float().square().sum().backward()

    gap = (F.scaled_dot_product_attention(q, k, v, attn_mask=mask) - explicit_attention(q, k, v, mask)).abs().max()
    return {"sdpa_ms": 1000 * seconds_per_call(lambda: run(F.scaled_dot_product_attention), device, repeats),
            "sdpa_bf16_ms": 1000 * seconds_per_call(lambda: run(F.scaled_dot_product_attention, torch.bfloat16),
                                                    device, repeats),
            "explicit_ms": 1000 * seconds_per_call(lambda: run(explicit_attention), device, repeats),
            "max_difference": gap.item(), "shape": [batch, heads, n, head_dim]}


def untrained_run(folder):
    """Every stage's checkpoint with random weights, in the layout train.py writes: a stand-in
    for timing when no trained run exists (the speed is the same, the music is noise)."""
    torch.manual_seed(0)
    configs = {stage: config_class() for stage, (_, config_class) in MODEL_CLASSES.items() if stage != "flow"}
    configs["flow"] = replace(PRESETS["tiny"], context_in_dim=configs["t5"].d_model,
                              vec_in_dim=configs["clap"].embed_dim)
    for stage in STAGES:
        model = MODEL_CLASSES[stage][0](configs[stage])
        checkpoint = checkpoint_dict(stage, model, step=0, done=True, run_config={"seconds": CLIP_SECONDS})
        save_checkpoint(checkpoint, stage_path(folder, stage))
    return folder


# the vocoder's other settings timed beside the configured one, and which of its phases each changes
# (the pitch losses and the phase model cost only in the warm-up: the GAN step uses neither)
VOCODER_VARIANTS = {" (waveform head)": ({"vocoder_head": "waveform"}, ("warm-up", "GAN")),
                    " (free phase, no pitch losses)": ({"vocoder_phase_model": "free", "vocoder_phase_weight": 0.0,
                                                        "vocoder_fine_stft": False}, ("warm-up",))}


def stage_step_bench(run_dir, device, config, variants, repeats):
    """{stage: {variant: milliseconds per training step}} for every stage exactly as train.py
    runs it (its batch drawing, loss, optimiser and EMA), for each (precision, compiled) in
    `variants` (e.g. "fp32", "bf16 compiled"); compiled only applies to the flow stage. The
    frozen models come from `run_dir`; the flow stage's feature cache is written to a temporary
    folder, never into the run."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for stage in STAGES[:-1]:
            shutil.copy(stage_path(run_dir, stage), folder)
        for name in STAGES:
            # the vocoder: its reconstruction warm-up and its GAN step, as configured, with the original head,
            # and with the free phase and no pitch losses (the recipe before the pitch judge)
            others = VOCODER_VARIANTS if name == "vocoder" else {}
            for precision, compiled in variants:
                if compiled and name != "flow":
                    continue
                for suffix, (changes, timed) in {"": ({}, ("warm-up", "GAN")), **others}.items():
                    run_config = replace(config, precision=precision, compile=compiled, **changes)
                    context = stages.Context(folder, run_config, None, train.World(device=device), progress=False)
                    job = stages.build(name, context)
                    first_step = {"warm-up": 0, "GAN": config.vocoder_warmup}
                    phases = ({f"vocoder {phase}{suffix}": first_step[phase] for phase in timed}
                              if name == "vocoder" else {name: 0})
                    for label, first in phases.items():
                        steps = iter(range(first, first + repeats + 2))
                        ms = 1000 * seconds_per_call(lambda: job.train_step(next(steps)), device, repeats, warmup=2)
                        results.setdefault(label, {})[precision + (" compiled" if compiled else "")] = ms
    return results


def sampling_bench(run_dir, device, seconds, steps, cfg=DEFAULT_CFG, precision="auto", windows=False):
    """Caption -> WAV file, the whole pipeline, timed: total, and the transformer's part; with
    `windows`, a long piece made window by window (longform.py) instead of one latent."""
    pipe = Pipeline(run_dir, device, precision=precision)
    caption = ["A fast, cheerful guitar tune in a major key, with drums."]
    pipe.generate(caption, seconds=CLIP_SECONDS, steps=2, cfg=cfg)  # warm-up: first-call allocations

    with tempfile.TemporaryDirectory() as folder:
        sync(device)
        start = time.perf_counter()
        if windows:
            latents = pipe.piece_latent([(0, caption[0])], seconds, steps=steps, cfg=cfg)[None]
        else:
            latents = pipe.generate_latents(caption, seconds=seconds, steps=steps, cfg=cfg)
        sync(device)
        sampled = time.perf_counter()
        _, audio = pipe.latents_to_audio(latents)
        save_wav(os.path.join(folder, "bench.wav"), audio[0])
        done = time.perf_counter()
    total = done - start
    return {"audio_seconds": seconds, "steps": steps, "cfg": cfg, "total_s": total,
            "transformer_s": sampled - start, "decode_s": done - sampled}


# ----------------------------------------------------------------------------- the suite

def sizes(device, quick):
    """Benchmark sizes: quick ones for tests, otherwise CPU-sized or GPU-sized."""
    if quick:
        return dict(matmul=256, repeats=2, train={"tiny": 2}, attention=("tiny", 2, CLIP_SECONDS),
                    sample=(CLIP_SECONDS, 4), long=(2 * CLIP_SECONDS, 2), bf16=True, compile=False,
                    stages=train_sizes("smoke"))
    cuda = device.type == "cuda"
    # bf16 only where it is native: CPUs without bf16 instructions (no AVX512-BF16/AMX) emulate it, slowly
    return dict(matmul=8192 if cuda else 2048, repeats=10,
                train={"tiny": 64, "tiny-wide": 64, "small": 16} if cuda else {"tiny": 16, "tiny-wide": 16, "small": 2},
                attention=("small", 2, 10.24), sample=(10.24, DEFAULT_STEPS), long=(30.0, DEFAULT_STEPS),
                bf16=native_bf16(device), compile=True,
                stages=train_sizes("tiny"))


def train_sizes(name):
    """train.py's --tiny or --smoke sizes, on 64 rendered clips (the step time does not depend on how many)."""
    config = train.TINY if name == "tiny" else train.SMOKE
    return replace(config, num_clips=min(config.num_clips, 64), num_val_clips=min(config.num_val_clips, 4))


def bench_device(device, run_dir, quick=False, log=lambda message: print(message, flush=True)):
    """Every benchmark on one device: {name: number, or a string saying why there is none}."""
    s, results = sizes(device, quick), {}
    results["matmul fp32 GFLOP/s"] = peak32 = matmul_flops_per_second(device, torch.float32, s["matmul"]) / 1e9
    if s["bf16"]:
        results["matmul bf16 GFLOP/s"] = matmul_flops_per_second(device, torch.bfloat16, s["matmul"]) / 1e9
    log(f"[{device}] matmul peak {peak32:.0f} GFLOP/s")
    for preset, batch in s["train"].items():
        r = train_step_bench(preset, device, batch, s["repeats"])
        add_train_results(results, f"train {preset}", r, peak32)
        log(f"[{device}] train {preset}: {r['step_ms']:.0f} ms a step at batch {batch}")
        if s["bf16"]:
            r = train_step_bench(preset, device, batch, s["repeats"], autocast=True)
            add_train_results(results, f"train {preset} bf16 autocast", r, results["matmul bf16 GFLOP/s"])
    precision = "bf16" if s["bf16"] else "fp32"  # what --precision auto picks here
    for preset in ("tiny", "tiny-wide"):  # compiling `small` takes minutes, and matrix products dominate it
        label = f"train {preset} compiled {precision}: step ms"
        if not s["compile"]:
            results[label] = "skipped (--quick)"
            continue
        try:
            r = train_step_bench(preset, device, s["train"][preset], s["repeats"], autocast=s["bf16"], compile=True)
            results[label], results[label.replace("step ms", "compile s")] = r["step_ms"], r["compile_s"]
            log(f"[{device}] train {preset} compiled, {precision}: {r['step_ms']:.0f} ms a step")
        except Exception as error:  # no compiler toolchain, an unsupported platform, ...
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:80]
            results[label] = f"unavailable ({reason})"
    precisions = ["fp32"] + (["bf16"] if s["bf16"] else [])
    variants = [(p, False) for p in precisions] + ([(precisions[-1], True)] if s["compile"] else [])
    for label, times in stage_step_bench(run_dir, device, s["stages"], variants, s["repeats"]).items():
        for variant, ms in times.items():
            results[f"step ms: {label}, {variant}"] = ms
        results[f"speed-up: {label}, fastest vs fp32 eager"] = times["fp32"] / min(times.values())
        log(f"[{device}] {label} step: " + ", ".join(f"{v} {ms:.0f} ms" for v, ms in times.items()))
    preset, batch, seconds = s["attention"]
    r = attention_bench(preset, device, batch, seconds, s["repeats"])
    label = f"attention {'x'.join(map(str, r['shape']))} fwd+bwd"
    results[f"{label}: SDPA ms"], results[f"{label}: SDPA bf16 ms"] = r["sdpa_ms"], r["sdpa_bf16_ms"]
    results[f"{label}: explicit ms"] = r["explicit_ms"]
    results[f"{label}: max difference"] = r["max_difference"]
    seconds, steps = s["sample"]
    for precision in precisions:
        r = sampling_bench(run_dir, device, seconds, steps, precision=precision)
        label = f"text -> WAV {precision}, {seconds} s, {steps} steps, cfg {r['cfg']:g}"
        results[f"{label}: total s"] = r["total_s"]
        results[f"{label}: times faster than real time"] = seconds / r["total_s"]
        results[f"{label}: transformer share"] = r["transformer_s"] / r["total_s"]
        log(f"[{device}] text -> WAV {precision}: {r['total_s']:.2f} s for {seconds} s of audio")
    seconds, steps = s["long"]
    r = sampling_bench(run_dir, device, seconds, steps, precision=precisions[-1], windows=True)
    label = f"long piece {precisions[-1]}, {seconds:g} s window by window, {steps} steps"
    results[f"{label}: total s"], results[f"{label}: times faster than real time"] = r["total_s"], seconds / r["total_s"]
    log(f"[{device}] long piece: {r['total_s']:.2f} s for {seconds:g} s of audio")
    return results


def add_train_results(results, label, r, peak):
    results[f"{label}: batch"] = r["batch"]
    results[f"{label}: step ms"] = r["step_ms"]
    results[f"{label}: samples/s"] = r["samples_per_s"]
    results[f"{label}: tokens/s"] = r["tokens_per_s"]
    results[f"{label}: GFLOP/s"] = r["gflops"]
    results[f"{label}: fraction of matmul peak"] = r["gflops"] / peak
    results[f"{label}: peak memory MB"] = r["peak_memory_mb"]


def machine():
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {"cpu": f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name()
    return info


def markdown_table(bench):
    devices = list(bench["devices"])
    lines = ["| benchmark | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]
    names = list(dict.fromkeys(name for d in devices for name in bench["devices"][d]))
    for name in names:
        cells = [format_value(bench["devices"][d].get(name, "")) for d in devices]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_value(value):
    if isinstance(value, str) or isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Speed and memory benchmarks of FluxMusic.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (for tests)")
    parser.add_argument("--run", help="trained run for the text -> WAV timing (default: runs/tiny, else pretrained/tiny)")
    parser.add_argument("--device", help="only this device (default: cpu, and cuda when present)")
    parser.add_argument("--out", default="bench.json", help="where to write the results (default bench.json)")
    args = parser.parse_args(argv)
    args.run = args.run or default_run()
    try:
        devices = [pick_device(args.device)] if args.device else \
            [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        bench = {"machine": machine(), "quick": args.quick, "devices": {}}
        with tempfile.TemporaryDirectory() as folder:
            run_dir = args.run
            if not all(os.path.exists(os.path.join(args.run, f"{stage}.pt")) for stage in STAGES):
                print(f"no trained run at {args.run}: timing text -> WAV with untrained models of the same sizes")
                run_dir = untrained_run(folder)
            bench["run"] = run_dir if run_dir == args.run else "untrained (no run found)"
            for device in devices:
                bench["devices"][str(device)] = bench_device(device, run_dir, args.quick)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    with open(args.out, "w") as f:
        json.dump(bench, f, indent=1)
    m = bench["machine"]
    print(f"\n{m['date']}, {m['cpu']}{', ' + m['cuda'] if 'cuda' in m else ''}, torch {m['torch']}, "
          f"text -> WAV with {bench['run']}\n\n{markdown_table(bench)}\n\nwrote {args.out}")


if __name__ == "__main__":
    main()
