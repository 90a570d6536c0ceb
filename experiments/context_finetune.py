"""What does learning to read known frames cost text-to-music, and what does it buy long pieces?

    python experiments/context_finetune.py --arm context --steps 2000   # -> runs/context_context_2000
    python experiments/context_finetune.py --arm plain --steps 2000     # the control, no known frames
    python evaluate.py --run runs/context_context_2000 --out results/long/t2m_context_2000.json
    python evaluate.py --run runs/context_plain_2000 --out results/long/t2m_plain_2000.json
    python evaluate.py --long --run runs/context_context_2000 --out results/long/long_context_2000.json

Both arms start from the flow model of --source (pretrained/tiny, trained without known frames) and
train it further for the same steps with train.TINY's flow recipe (its schedule over --steps, at
--lr): "context" with the mask mix of `train.RunConfig` (a known prefix a quarter of the time, a gap
a quarter), "plain" with none. So the two differ only in the known frames, at equal steps, and
`evaluate.py` on both says what the mix costs text-to-music; `evaluate.py --long` on the context
arm says what it buys over the training-free method on the same weights. (`train.py --tiny` trains
the mix from nothing; this fine-tune is what a 2-core CPU can afford to compare.)
"""

import argparse
import os
import shutil
import sys
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import stages  # noqa: E402
import train  # noqa: E402
from common import load_checkpoint  # noqa: E402

COPIED = ("vae.pt", "vocoder.pt", "clap.pt", "t5.pt", "attribute_classifier.pt", "mel_attribute_classifier.pt")
ARMS = {"context": {}, "plain": {"context_prefix": 0.0, "context_span": 0.0}}


def from_source(source):
    """The flow stage, its model and EMA starting from `source`'s flow weights (known_in, if the
    arm has it, stays at zero: the loaded model plays exactly as the source does)."""

    class FromSource(stages.FlowStage):
        def __init__(self, context):
            super().__init__(context)
            checkpoint = load_checkpoint(os.path.join(source, "flow.pt"))
            weights = checkpoint.get("ema") or checkpoint["model"]
            missing, unexpected = self.model.load_state_dict(weights, strict=False)
            if unexpected or any(not name.startswith("known_in.") for name in missing):
                raise ValueError(f"{source}/flow.pt does not fit this preset: missing {missing}, unexpected {unexpected}")
            self.ema.load_state_dict(self.model.state_dict())

    return FromSource


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    parser.add_argument("--source", default="pretrained/tiny")
    args = parser.parse_args(argv)
    run_dir = f"runs/context_{args.arm}_{args.steps}"
    os.makedirs(run_dir, exist_ok=True)
    for name in COPIED:
        if os.path.exists(os.path.join(args.source, name)) and not os.path.exists(os.path.join(run_dir, name)):
            shutil.copy(os.path.join(args.source, name), run_dir)
    config = replace(train.TINY, flow=replace(train.TINY.flow, steps=args.steps, lr=args.lr), sample_every=0,
                     **ARMS[args.arm])
    stages.STAGE_CLASSES["flow"] = from_source(args.source)
    print(train.train(run_dir, config, ["flow"])["flow"])


if __name__ == "__main__":
    main()
