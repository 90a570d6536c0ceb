"""How results/tempo/curve.png, rope.png and final.png were made (a one-off record, not part of the project's CLIs).

Quality against flow-stage training: every EMA snapshot lever.py judged for the current recipe
(mean 1) at two schedule lengths, 5000 steps (the `--tiny` budget) and 8000, beside the mean-0
recipe's curve (results/tiny/flow_curve.json). Each run has its own cosine learning-rate schedule,
so a snapshot of the longer run at 5000 steps is mid-schedule, not a finished 5000-step run.
CPU minutes on the top axis are steps x the 5000-step run's own pace here (0.82 s a step, fp32,
compiled, nothing else running), not the longer run's wall clock (it shared the CPU for a while).

rope.png sets the two RoPE arms (time ids x 2.5, with theta 30 or 10000; bf16, compiled, on the
AVX512-BF16 Xeon) beside the recipe's 5000-step curve (fp32 on the other machine), step for step.

final.png is the final recipe (every clip in C, four phrasings a clip, RoPE time ids x 2.5) at twice
`--tiny`'s flow steps, 16000, beside the one-key arm's 8000-step curve (one caption a clip); its CPU
minutes are steps x the pace of the from-scratch run's flow stage on the same Intel Xeon, alone
(results/tiny_rerun_xeon/timings.json: 1621.5 s for 8000 steps, bf16, compiled).

    python results/tempo/curve.py    # after lever.py time_mean1, STEPS=8000 lever.py recipe, the rope arms,
                                     # STEPS=8000 lever.py one_key and STEPS=16000 SNAPSHOT_EVERY=2000 lever.py recipe
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CURVES = {  # label -> (JSON, line style)
    "mean 0, 5000-step schedule (bf16, reference VM)": ("results/tiny/flow_curve.json", ":"),
    "mean 1, 5000-step schedule": ("results/tempo/lever_time_mean1.json", "--"),
    "mean 1, 8000-step schedule": ("results/tempo/lever_recipe_8000.json", "-"),
}
ROPE_CURVES = {
    "recipe: time ids 0, 1, 2 ..., theta 10000": ("results/tempo/lever_time_mean1.json", "--"),
    "time ids x 2.5, theta 30 (rope_fast)": ("results/tempo/lever_rope_fast.json", ":"),
    "time ids x 2.5, theta 10000 (rope_fast_time)": ("results/tempo/lever_rope_fast_time.json", "-"),
}
FINAL_CURVES = {
    "final recipe, 16000-step schedule": ("results/tempo/lever_recipe_16000.json", "-"),
    "one key, one caption a clip, 8000-step schedule": ("results/tempo/lever_one_key_8000.json", "--"),
}
SECONDS_PER_STEP = 4101.5 / 5000  # lever_time_mean1.json's train_seconds over its steps
XEON_SECONDS_PER_STEP = json.load(open("results/tiny_rerun_xeon/timings.json"))["flow"] / 8000  # its 8000 flow steps
CHANCE = {"instrument": 1 / 6, "tempo": 1 / 3, "mode": 1 / 2, "drums": 1 / 2}


def draw(curves, out, seconds_per_step=None, clock="CPU minutes here (fp32)"):
    """Accuracy per attribute (colour) and FAD against flow steps, one line style per run."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, (path, style) in curves.items():
        rows = json.load(open(path))["rows"]
        steps = [r["flow_steps"] for r in rows]
        for i, name in enumerate(CHANCE):
            axes[0].plot(steps, [r["attribute_accuracy_on_mel"][name] for r in rows], style, marker="o", ms=3,
                         color=f"C{i}", label=f"{name}" if style == "-" else None)
        axes[1].plot(steps, [r["fad_clap_mel"] for r in rows], style, marker="o", ms=3, color="k", label=label)
    for i, (name, chance) in enumerate(CHANCE.items()):
        axes[0].axhline(chance, color=f"C{i}", lw=0.5, alpha=0.5)
    axes[0].set_title("attribute accuracy on the mel (thin lines: chance)", fontsize=9)
    axes[1].set_title("FAD between CLAP audio embeddings, on the mel", fontsize=9)
    for ax in axes:
        ax.set_xlabel("flow steps")
        if seconds_per_step:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * seconds_per_step / 60,
                                                       lambda m: m * 60 / seconds_per_step))
            top.set_xlabel(clock, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main():
    draw(CURVES, "results/tempo/curve.png", SECONDS_PER_STEP)
    draw(ROPE_CURVES, "results/tempo/rope.png")
    draw(FINAL_CURVES, "results/tempo/final.png", XEON_SECONDS_PER_STEP, "CPU minutes, 2-core Xeon (bf16, compiled)")


if __name__ == "__main__":
    main()
