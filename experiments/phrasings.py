"""Which phrasing of a caption loses which attribute? Every held-out test clip asked for in each of
music.HELD_OUT_TEMPLATES in turn (a question, a request, ALL CAPS, a typo, another word order: none
is used in training), and in the training templates.

    python experiments/phrasings.py --run pretrained/tiny    # -> results/phrasings/tiny.json

Each set of 64 captions is generated as evaluate.py generates (the run's HiFi-GAN, --steps Euler
steps, cfg 4, the same seeds) and judged by the run's audio attribute classifier. evaluate.py's
"generated, held-out phrasings" row mixes the five templates (one clip in five each); this splits them.
"""

import argparse
import json
import os

import numpy as np

from classifier import accuracy
from evaluate import Evaluator
from music import HELD_OUT_TEMPLATES, attributes_to_caption


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="pretrained/tiny", help="trained run to judge (default pretrained/tiny)")
    parser.add_argument("--steps", type=int, default=25, help="Euler steps (default 25, sample.py's)")
    args = parser.parse_args(argv)
    ev = Evaluator(args.run)
    rows = {"training templates": ev.captions}
    for template in HELD_OUT_TEMPLATES:  # the seeds evaluate.py draws its rephrasings from
        rows[template] = [attributes_to_caption(a, np.random.default_rng([ev.seed, 7, i]), (template,))
                          for i, a in enumerate(ev.attributes)]
    results = {}
    for name, captions in rows.items():
        posteriors = ev.classifier.posteriors(ev.generate(steps=args.steps, captions=captions))
        results[name] = {"example": captions[0], "attribute_accuracy": accuracy(posteriors, ev.attributes)}
        print(name, "|", captions[0], "|", {k: round(v, 2) for k, v in results[name]["attribute_accuracy"].items()},
              flush=True)
    path = os.path.join("results", "phrasings", os.path.basename(args.run.rstrip("/")) + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"run": args.run, "steps": args.steps, "num": len(ev.captions), "rows": results}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
