"""How results/tiny/flow_curve.json was made (a one-off record, not part of the project's CLIs).

While `python train.py --tiny` trained, the flow stage's resumable checkpoint runs/tiny/flow.pt
(written every 200 steps) was copied to /tmp/exp/flow_step{N}.pt at N = 1000, 2000, 3000, 4000.
This script generates the 64 held-out test captions with each copy's EMA weights and with the
finished runs/tiny/flow.pt (Euler 25, cfg 4) and judges the generated log-mels with the run's
mel-domain attribute classifier; FAD is between CLAP audio embeddings of real and generated
log-mels. Run from the repository root: python results/tiny/flow_curve.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.getcwd())
from classifier import accuracy, load_or_train_classifier, log_mels, render  # noqa: E402
from common import MODEL_CLASSES  # noqa: E402
from evaluate import embedding_frechet_distance  # noqa: E402
from pipeline import Pipeline  # noqa: E402

torch.set_grad_enabled(False)
run = "runs/tiny"
pipe = Pipeline(run, "cpu", use_vocoder=False)
classifier, _ = load_or_train_classifier(run, 2.56, 0, 1200, 600, "cpu", print, input="mel")
audio, captions, attributes = render("test", 64, 2.56, 0)
real = pipe.clap.embed_audio(log_mels(audio))
rows = []
for step in (1000, 2000, 3000, 4000, 5000):
    checkpoint = torch.load(f"/tmp/exp/flow_step{step}.pt" if step < 5000 else f"{run}/flow.pt", weights_only=True)
    model_class, config_class = MODEL_CLASSES["flow"]
    pipe.flow_model = model_class(config_class(**checkpoint["config"]))
    pipe.flow_model.load_state_dict(checkpoint["ema"] or checkpoint["model"])
    pipe.flow_model.eval()
    mels = torch.cat([pipe.vae.decode(pipe.generate_latents(captions[s:s + 16], seconds=2.56, steps=25, seed=s))
                      for s in range(0, 64, 16)])
    rows.append({"flow_steps": step, "attribute_accuracy_on_mel": accuracy(classifier.posteriors(mels), attributes),
                 "fad_clap_mel": embedding_frechet_distance(real, pipe.clap.embed_audio(mels))})
    print(rows[-1], flush=True)
with open("results/tiny/flow_curve.json", "w") as f:
    json.dump({"rows": rows, "note": "EMA weights at each step of the one --tiny run; Euler 25, cfg 4, 64 held-out "
               "captions; accuracy by the mel-domain classifier; FAD between CLAP audio embeddings of real and "
               "generated log-mels"}, f, indent=1)
