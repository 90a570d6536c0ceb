"""Which held-out phrasing loses which attribute: every test clip asked for in each of
music.HELD_OUT_TEMPLATES in turn (and in the training templates), judged by the run's attribute
classifier. evaluate.py's "held-out phrasings" row mixes the five (one clip in five each); this splits them.

    RUN=pretrained/tiny STEPS=25 python results/phrasings/per_template.py   # -> results/phrasings/<name>.json
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from evaluate import Evaluator  # noqa: E402
from classifier import accuracy  # noqa: E402
from music import HELD_OUT_TEMPLATES, attributes_to_caption  # noqa: E402

run, steps = os.environ.get("RUN", "pretrained/tiny"), int(os.environ.get("STEPS", "25"))
out = os.environ.get("OUT", os.path.join(os.path.dirname(__file__), os.path.basename(run.rstrip("/")) + ".json"))
ev = Evaluator(run)
rows = {"training templates": ev.captions}
for template in HELD_OUT_TEMPLATES:  # the seeds evaluate.py draws its rephrasings from
    rows[template] = [attributes_to_caption(a, np.random.default_rng([ev.seed, 7, i]), (template,))
                      for i, a in enumerate(ev.attributes)]
results = {}
for name, captions in rows.items():
    posteriors = ev.classifier.posteriors(ev.generate(steps=steps, captions=captions))
    results[name] = {"example": captions[0], "attribute_accuracy": accuracy(posteriors, ev.attributes)}
    print(name, "|", captions[0], "|", {k: round(v, 2) for k, v in results[name]["attribute_accuracy"].items()},
          flush=True)
with open(out, "w") as f:
    json.dump({"run": run, "steps": steps, "num": len(ev.captions), "rows": results}, f, indent=1)
