"""How results/tempo/curve.png was made (a one-off record, not part of the project's CLIs).

Quality against flow-stage training: every EMA snapshot lever.py judged for the current recipe
(mean 1) at two schedule lengths, 5000 steps (the `--tiny` budget) and 8000, beside the mean-0
recipe's curve (results/tiny/flow_curve.json). Each run has its own cosine learning-rate schedule,
so a snapshot of the longer run at 5000 steps is mid-schedule, not a finished 5000-step run.
CPU minutes on the top axis are steps x the 5000-step run's own pace here (0.82 s a step, fp32,
compiled, nothing else running), not the longer run's wall clock (it shared the CPU for a while).

    python results/tempo/curve.py    # after lever.py time_mean1 and STEPS=8000 lever.py recipe
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
SECONDS_PER_STEP = 4101.5 / 5000  # lever_time_mean1.json's train_seconds over its steps
CHANCE = {"instrument": 1 / 6, "tempo": 1 / 3, "mode": 1 / 2, "drums": 1 / 2}


def main():
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, (path, style) in CURVES.items():
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
        top = ax.secondary_xaxis("top", functions=(lambda s: s * SECONDS_PER_STEP / 60,
                                                   lambda m: m * 60 / SECONDS_PER_STEP))
        top.set_xlabel("CPU minutes here (fp32)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig("results/tempo/curve.png", dpi=90)


if __name__ == "__main__":
    main()
