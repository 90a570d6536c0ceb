"""How good is the music? Five numbers, each asking a different question.

    python evaluate.py --run runs/tiny                  # metrics.json + a table
    python evaluate.py --run runs/tiny --sweep          # samplers x steps, guidance scales: sweep.json

Every number compares generated clips for the held-out "test" captions with real clips of
the same captions (the synthetic dataset renders both, so we know what each caption should
sound like). Two embeddings do the listening: the run's own CLAP audio tower, and a small
attribute classifier trained here on real clips, whose labels are the dataset's ground truth.

FAD, Frechet audio distance: do the clips sound like real ones, as a set? Fit a Gaussian to
each set's CLAP audio embeddings (mean mu, covariance S) and measure

    FD = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2)),

the squared 2-Wasserstein distance between the two Gaussians (0 iff they are equal; for
diagonal covariances it is sum_i (m1_i - m2_i)^2 + (s1_i - s2_i)^2 in the standard deviations
s). S_1 S_2 is not symmetric, but it is similar to S_1^(1/2) S_2 S_1^(1/2), which is, so the
trace comes from that matrix's eigenvalues. FAD is biased upwards at small N: compare values
at the same N only; the "real test clips" row shows its floor.

KL: does each clip sound like *its* caption's real clip? The classifier gives categorical
posteriors p for instrument, tempo, mode and drums; per clip we sum KL(p_real || p_gen) =
sum_y p_real(y) log(p_real(y) / p_gen(y)) over the four heads (the KL of their product), then
average over clips.

IS, inception score: are the clips confidently recognisable *and* varied? With p(y|x) the
classifier's joint posterior over all 6*3*2*2 = 72 attribute combinations (the product of
the heads) and p(y) its average over the set,

    IS = exp( E_x KL(p(y|x) || p(y)) ),

between 1 (every clip gets the same posterior) and the number of classes (each clip certain,
classes used evenly). The test captions use 9 combinations, so a model that follows them
scores at most 9.

CLAP score: mean cosine between the caption's CLAP text embedding and the clip's audio
embedding. Attribute accuracy: how often the classifier's top guess matches the caption,
per attribute, next to chance (1 / number of values).

Rows: "real test clips" are a second real performance of each test caption (same attributes,
a new melody): the ceiling. "VAE+vocoder reconstruction" runs the real clips through the VAE
and vocoder without the transformer: what the autoencoder and vocoder cost. "generated" is
the whole pipeline from the caption. "generated, held-out phrasings" asks for the same
attributes in words no training caption uses (music.HELD_OUT_TEMPLATES: a question, a
request, ALL CAPS, a typo, another word order): how the model copes with what users type.

The attribute classifier (`classifier.py`) sees hand-made features (mel-band statistics, the
onset autocorrelation, a chroma vector) with a tiny learned head on top, trained here once per
run on real clips and their Griffin-Lim copies.

Where is an attribute lost? `--chain` measures the attribute accuracy at every link of the
pipeline on the held-out clips: the real audio; its log-mel; the VAE's reconstruction of that
log-mel; the generated log-mel; and each log-mel turned into sound by Griffin-Lim and by the
run's own vocoder. Log-mels are judged by a classifier that reads log-mels directly (same
features, its chroma from the mel itself), so the flow model's and the VAE's losses are told
apart from the vocoder's and Griffin-Lim's.

References
- Kilgour et al., "Fréchet Audio Distance: A Metric for Evaluating Music Enhancement Algorithms",
  arXiv 1812.08466; Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
  Local Nash Equilibrium" (the Fréchet distance of embeddings), arXiv 1706.08500
- Salimans et al., "Improved Techniques for Training GANs" (inception score), arXiv 1606.03498
- Liu et al., "AudioLDM" (FAD, KL and IS as text-to-audio metrics), arXiv 2301.12503
"""

import argparse
import functools
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from audio import SAMPLE_RATE, MelSpectrogram, griffin_lim
from classifier import ATTRIBUTES, CHANCE, accuracy, beat_grid, load_or_train_classifier, log_mels, render
from common import PRECISIONS, CheckpointError, atomic_write_text, default_run, load_checkpoint, pick_device, stage_path, train_command
import evaluate_long
import music
import pitch
from data import CLIP_SECONDS, SynthMusicDataset
from music import HELD_OUT_TEMPLATES, attributes_to_caption, render_clip
from pipeline import DEFAULT_CFG, DEFAULT_STEPS, Pipeline, load_stage

ROWS = ("real test clips", "VAE+vocoder reconstruction", "generated", "generated, held-out phrasings")


# ----------------------------------------------------------------------------- the metrics

def gaussian_stats(embeddings):
    """Mean (D,) and covariance (D, D) of (N, D) embeddings, in float64."""
    x = torch.as_tensor(embeddings, dtype=torch.float64)
    return x.mean(0), torch.atleast_2d(torch.cov(x.T))


def frechet_distance(mu1, cov1, mu2, cov2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) between two Gaussians."""
    mu1, cov1, mu2, cov2 = (torch.as_tensor(x, dtype=torch.float64) for x in (mu1, cov1, mu2, cov2))
    values, vectors = torch.linalg.eigh(cov1)
    root1 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(distance.item(), 0.0)  # never negative; rounding can leave -1e-15


def embedding_frechet_distance(a, b):
    """Frechet distance between the Gaussians fitted to two sets of embeddings (N, D), (M, D)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def kl_divergence(p, q, eps=1e-8):
    """KL(p || q) per row of two (N, K) categorical distributions: (N,)."""
    p, q = p.double().clamp(min=eps), q.double().clamp(min=eps)
    return (p * (p.log() - q.log())).sum(-1)


def inception_score(probs):
    """exp(mean_i KL(p(y|x_i) || p(y))) for (N, K) posteriors, p(y) their mean."""
    probs = probs.double()
    return math.exp(kl_divergence(probs, probs.mean(0, keepdim=True).expand_as(probs)).mean().item())


def joint_posterior(posteriors):
    """{head: (N, K_h)} -> (N, prod K_h): the heads' product distribution over every combination."""
    outer = lambda a, b: (a[:, :, None] * b[:, None, :]).flatten(1)
    return functools.reduce(outer, posteriors.values())


# ----------------------------------------------------------------------------- scoring a run

class Evaluator:
    """What stays fixed while sampler settings change: the run's models, the classifier, the
    test captions with their real clips, and everything measured on those clips."""

    def __init__(self, run_dir, num=64, device="cpu", batch_size=16, classifier_clips=1200,
                 classifier_steps=600, log=print, precision="auto"):
        if not os.path.isdir(run_dir):
            raise CheckpointError(f"no run at {run_dir}: train one with `python train.py --tiny --run {run_dir}`")
        self.run_config = load_checkpoint(stage_path(run_dir, "flow"), made_by=train_command(run_dir, "flow")) \
            .get("run_config", {})
        self.objective = self.run_config.get("objective", "rectified_flow")
        self.seconds, self.seed = self.run_config.get("seconds", CLIP_SECONDS), self.run_config.get("seed", 0)
        self.device, self.batch_size = torch.device(device), batch_size
        self.classifier_clips, self.classifier_steps = classifier_clips, classifier_steps
        self.pipe = Pipeline(run_dir, device, precision=precision)
        self.mel = MelSpectrogram().to(self.device)
        self.classifier, self.classifier_accuracy = load_or_train_classifier(
            run_dir, self.seconds, self.seed, classifier_clips, classifier_steps, device, log)
        self.real_audio, self.captions, self.attributes = render("test", num, self.seconds, self.seed)
        self.scores = [SynthMusicDataset("test", num, self.seconds, self.seed).score(i) for i in range(num)]
        self.rephrased = [attributes_to_caption(a, np.random.default_rng([self.seed, 7, i]),
                                                (HELD_OUT_TEMPLATES[i % len(HELD_OUT_TEMPLATES)],))
                          for i, a in enumerate(self.attributes)]
        with torch.no_grad():
            self.text_emb = torch.cat([self.pipe.clap.embed_text(self.captions[i:i + 64]).cpu()
                                       for i in range(0, num, 64)])
        self.real_emb = self.audio_embeddings(self.real_audio)
        self.real_posteriors = self.classifier.posteriors(self.real_audio)

    @torch.no_grad()
    def audio_embeddings(self, audio):
        return torch.cat([self.pipe.clap.embed_audio(self.mel(a.to(self.device))).cpu()
                          for a in audio.split(self.batch_size)])

    def describe_run(self):
        return {"run": self.pipe.run_dir, "objective": self.objective, "preset": self.run_config.get("preset"),
                "precision": self.pipe.precision,
                "parameters": sum(p.numel() for p in self.pipe.flow_model.parameters())}

    def score(self, audio, scores=None, sources=None):
        """Every metric of a set of clips, row i paired with test caption i; the pitch judge also
        checks the notes of `scores` and the pitch classes of `sources` where the row has them."""
        posteriors = self.classifier.posteriors(audio)
        embeddings = self.audio_embeddings(audio)
        kl = sum(kl_divergence(self.real_posteriors[name], posteriors[name]) for name in ATTRIBUTES)
        return {"fad": embedding_frechet_distance(self.real_emb, embeddings),
                "kl": kl.mean().item(),
                "inception_score": inception_score(joint_posterior(posteriors)),
                "clap_score": F.cosine_similarity(self.text_emb, embeddings).mean().item(),
                "attribute_accuracy": accuracy(posteriors, self.attributes),
                "pitch": pitch.judge(audio, self.attributes, scores, sources)}

    def second_performance(self):
        """Each test caption played again: same attributes, a fresh melody, chords and drum kit;
        and the notes each plays."""
        seeds = [[self.seed, 99, i] for i in range(len(self.attributes))]
        audio = torch.stack([torch.from_numpy(render_clip(a, self.seconds, SAMPLE_RATE, np.random.default_rng(s)))
                             for a, s in zip(self.attributes, seeds)])
        return audio, [music.score(a, self.seconds, np.random.default_rng(s)) for a, s in zip(self.attributes, seeds)]

    @torch.no_grad()
    def reconstruct(self):
        chunks = [self.pipe.latents_to_audio(self.pipe.vae.encode(self.mel(a.to(self.device))))[1].cpu()
                  for a in self.real_audio.split(self.batch_size)]
        return torch.cat(chunks)[:, :self.real_audio.shape[1]]

    @torch.no_grad()
    def generate_mels(self, steps=50, cfg=DEFAULT_CFG, sampler=None, seed=0, captions=None):
        """Log-mels for every test caption (or `captions`, one per test clip), in batches; each
        batch gets its own seed."""
        sampler = sampler or ("ddim" if self.objective == "ddpm" else "euler")
        all_captions, chunks = captions or self.captions, []
        for c, start in enumerate(range(0, len(all_captions), self.batch_size)):
            captions = all_captions[start:start + self.batch_size]
            latents = self.pipe.generate_latents(captions, seconds=self.seconds, steps=steps, cfg=cfg,
                                                 sampler=sampler, seed=seed * 1000 + c)
            chunks.append(self.pipe.vae.decode(latents))
        return torch.cat(chunks)

    @torch.no_grad()
    def play(self, mels, vocoder=None):
        """Log-mels -> waveforms as long as the real clips, by `vocoder` or (None) Griffin-Lim."""
        audio = [(vocoder(m) if vocoder is not None else griffin_lim(m)).cpu() for m in mels.split(self.batch_size)]
        return torch.cat(audio)[:, :self.real_audio.shape[1]]

    def generate(self, steps=50, cfg=DEFAULT_CFG, sampler=None, seed=0, captions=None):
        """Audio for every test caption, as sample.py makes it (the run's vocoder if it beat Griffin-Lim)."""
        return self.play(self.generate_mels(steps, cfg, sampler, seed, captions), self.pipe.vocoder)

    def evaluate(self, steps=50, cfg=DEFAULT_CFG, sampler=None, seed=0):
        """The full table: real, reconstructed and generated clips, with settings and chance."""
        sampler = sampler or ("ddim" if self.objective == "ddpm" else "euler")
        rows = {ROWS[0]: self.score(*self.second_performance()),
                ROWS[1]: self.score(self.reconstruct(), self.scores, self.real_audio),
                ROWS[2]: self.score(self.generate(steps, cfg, sampler, seed)),
                ROWS[3]: self.score(self.generate(steps, cfg, sampler, seed, self.rephrased))}
        settings = {**self.describe_run(), "num": len(self.captions),
                    "seconds": self.seconds, "steps": steps, "nfe": nfe(sampler, steps), "cfg": cfg,
                    "sampler": sampler, "seed": seed, "device": str(self.device)}
        return {**rows[ROWS[2]], "rows": rows, "chance": CHANCE,
                "classifier_test_accuracy": self.classifier_accuracy, "settings": settings}

    def sweep(self, nfes=(5, 10, 25, 50), cfgs=(1.0, 2.0, 4.0, 7.0, 10.0), steps=50, cfg=DEFAULT_CFG, seed=0,
              log=print):
        """Metrics against function evaluations for each sampler (at guidance cfg), then against the
        guidance scale (first sampler, `steps` steps). Heun calls the model twice a step, so it gets
        nfe // 2 steps: compare the samplers at their recorded `nfe`."""
        samplers = ("ddim",) if self.objective == "ddpm" else ("euler", "heun")
        results = {"settings": {**self.describe_run(), "num": len(self.captions), "seed": seed,
                                "device": str(self.device)}, "steps": [], "guidance": []}
        for sampler in samplers:
            for target in nfes:
                n = max(1, target // 2) if sampler == "heun" else target
                results["steps"].append({"sampler": sampler, "steps": n, "nfe": nfe(sampler, n), "cfg": cfg,
                                         **self.score(self.generate(n, cfg, sampler, seed))})
                log(f"  {sampler} {n} steps: " + short_summary(results["steps"][-1]))
        for scale in cfgs:
            results["guidance"].append({"sampler": samplers[0], "steps": steps, "nfe": nfe(samplers[0], steps),
                                        "cfg": scale, **self.score(self.generate(steps, scale, samplers[0], seed))})
            log(f"  cfg {scale:g}: " + short_summary(results["guidance"][-1]))
        return results


    def attribute_chain(self, steps=50, cfg=DEFAULT_CFG, sampler=None, seed=0, log=print):
        """Attribute accuracy at every link: {clips: {heard as: {attribute: accuracy}}} for the real
        clips, the VAE's reconstructions of their log-mels and generated log-mels, each heard as a
        log-mel (the mel-domain classifier), through Griffin-Lim and through the run's own vocoder
        (used here even where sample.py prefers Griffin-Lim). Not under no_grad: the mel-domain
        classifier may need training first; every model here is frozen anyway."""
        mel_classifier, mel_accuracy = load_or_train_classifier(
            self.pipe.run_dir, self.seconds, self.seed, self.classifier_clips, self.classifier_steps, self.device,
            log, input="mel")
        vocoder = load_stage(self.pipe.run_dir, "vocoder", self.device)
        real = log_mels(self.real_audio).to(self.device)
        reconstructed = torch.cat([self.pipe.vae.decode(self.pipe.vae.encode(m)) for m in real.split(self.batch_size)])
        mels = {"real": real, "VAE reconstruction": reconstructed,
                "generated": self.generate_mels(steps, cfg, sampler, seed)}
        def heard(audio, scores):  # the attribute classifier and the pitch judge, on the waveform
            return {**accuracy(self.classifier.posteriors(audio), self.attributes),
                    **pitch.judge(audio, self.attributes, scores, None if scores is None else self.real_audio)}

        chain = {"real": {"audio": heard(self.real_audio, self.scores)}}
        for name, mel in mels.items():
            scores = None if name == "generated" else self.scores  # a generated clip plays its own notes
            chain.setdefault(name, {})
            chain[name]["log-mel"] = accuracy(mel_classifier.posteriors(mel), self.attributes)
            chain[name]["Griffin-Lim"] = heard(self.play(mel), scores)
            chain[name]["vocoder"] = heard(self.play(mel, vocoder), scores)
            log(f"  {name}: " + "; ".join(f"{how} " + " ".join(f"{v:.2f}" for v in acc.values())
                                          for how, acc in chain[name].items()))
        settings = {**self.describe_run(), "num": len(self.captions), "seconds": self.seconds, "steps": steps,
                    "cfg": cfg, "sampler": sampler or ("ddim" if self.objective == "ddpm" else "euler"), "seed": seed}
        return {"chain": chain, "chance": CHANCE, "settings": settings,
                "classifier_test_accuracy": {**self.classifier_accuracy, **mel_accuracy}}


def nfe(sampler, steps):
    """Model evaluations of one solve (a guided evaluation is one batched call)."""
    return 2 * steps if sampler == "heun" else steps


# ----------------------------------------------------------------------------- tables

def short_summary(row):
    acc = " ".join(f"{k} {v:.2f}" for k, v in row["attribute_accuracy"].items())
    return f"FAD {row['fad']:.3f}, KL {row['kl']:.3f}, IS {row['inception_score']:.2f}, " \
           f"CLAP {row['clap_score']:.3f}, accuracy {acc}"


# the pitch judge's columns (pitch.judge): in-scale energy, mode by scale fit, notes heard at their pitch
PITCH_COLUMNS = {"in_scale_energy": "in scale", "mode_by_scale_fit": "mode (pitch)", "note_accuracy": "notes"}


def pitch_cells(judged):
    return " | ".join(f"{judged[k]:.2f}" if k in judged else "–" for k in PITCH_COLUMNS)


def markdown_table(rows, chance=CHANCE, label="clips"):
    """{name: metric row} -> a markdown table, with a last row of chance accuracies."""
    head = f"| {label} | FAD ↓ | KL ↓ | IS ↑ | CLAP ↑ | " + " | ".join([*ATTRIBUTES, *PITCH_COLUMNS.values()]) + " |"
    lines = [head, "|" + "---|" * (5 + len(ATTRIBUTES) + len(PITCH_COLUMNS))]
    for name, r in rows.items():
        accs = " | ".join(f"{r['attribute_accuracy'][a]:.2f}" for a in ATTRIBUTES)
        lines.append(f"| {name} | {r['fad']:.3f} | {r['kl']:.3f} | {r['inception_score']:.2f} | "
                     f"{r['clap_score']:.3f} | {accs} | {pitch_cells(r.get('pitch', {}))} |")
    lines.append("| chance | | | 1 | | " + " | ".join(f"{chance[a]:.2f}" for a in ATTRIBUTES) + " | | 0.50 | |")
    return "\n".join(lines)


def chain_table(results):
    """The attribute chain as a markdown table: one row per (clips, heard as)."""
    names = [*ATTRIBUTES, *PITCH_COLUMNS.values()]
    lines = ["| clips | heard as | " + " | ".join(names) + " |", "|" + "---|" * (2 + len(names))]
    for clips, ways in results["chain"].items():
        for how, acc in ways.items():
            lines.append(f"| {clips} | {how} | " + " | ".join(f"{acc[a]:.2f}" for a in ATTRIBUTES)
                         + f" | {pitch_cells(acc)} |")
    lines.append("| chance | | " + " | ".join(f"{results['chance'][a]:.2f}" for a in ATTRIBUTES) + " | | 0.50 | |")
    return "\n".join(lines)


def sweep_table(entries, key):
    """A sweep's rows as a markdown table labelled by `key` (e.g. nfe or cfg)."""
    rows = {f"{e['sampler']} {key} {e[key]:g}": e for e in entries}
    return markdown_table(rows, label="setting")


def report(metrics):
    s = metrics["settings"]
    acc = "; ".join(f"{version} " + ", ".join(f"{k} {v:.2f}" for k, v in values.items())
                    for version, values in metrics["classifier_test_accuracy"].items())
    generated = f"generated ({s['sampler']}, {s['steps']} steps, cfg {s['cfg']:g})"
    rows = {(generated if name == ROWS[2] else name): row for name, row in metrics["rows"].items()}
    return (f"{s['run']}: {s['num']} test captions, {s['seconds']} s each, {s['objective']}\n"
            f"attribute classifier, held-out accuracy: {acc}\n\n{markdown_table(rows)}")


# ----------------------------------------------------------------------------- judging flow models on the mel (experiments/)
# experiments/ compare flow models and mid-run snapshots with no vocoder in the way: each generates the
# held-out test captions (Euler 25, cfg 4) and is judged on its log-mels by the run's mel-domain
# classifier, by FAD between CLAP audio embeddings of real and generated log-mels, and by the beat grid.

def mode_by_asked(mode_posteriors, attributes):
    """{asked mode: mode accuracy on its clips}: a judge that hears one mode everywhere scores 1 and 0 here."""
    asked = {mode: [i for i, a in enumerate(attributes) if a["mode"] == mode] for mode in ATTRIBUTES["mode"]}
    return {mode: accuracy({"mode": mode_posteriors[ids]}, [attributes[i] for i in ids])["mode"]
            for mode, ids in asked.items() if ids}


class MelJudge:
    """A run's frozen parts (each call swaps in the flow model to judge), its mel-domain classifier, and
    the first `num` held-out test clips: captions, attributes, log-mels and CLAP audio embeddings."""

    def __init__(self, run_dir, num=64, device="cpu", log=print):
        self.pipe = Pipeline(run_dir, device, use_vocoder=False, log=log)
        self.classifier, _ = load_or_train_classifier(run_dir, CLIP_SECONDS, 0, 1200, 600, device, log, input="mel")
        audio, self.captions, self.attributes = render("test", num, CLIP_SECONDS, 0)
        self.real = log_mels(audio).to(self.pipe.device)
        with torch.no_grad():
            self.real_embedding = self.pipe.clap.embed_audio(self.real).cpu()

    @torch.no_grad()
    def generate(self, flow_model, captions=None, seed=0, steps=25, cfg=DEFAULT_CFG, batch_size=16):
        """Log-mels for `captions` (default: the test captions); the batch starting at caption s draws seed + s."""
        self.pipe.flow_model = flow_model.to(self.pipe.device)
        captions = captions or self.captions
        return torch.cat([self.pipe.vae.decode(self.pipe.generate_latents(
            captions[s:s + batch_size], seconds=CLIP_SECONDS, steps=steps, cfg=cfg, seed=seed + s))
            for s in range(0, len(captions), batch_size)])

    @torch.no_grad()
    def score(self, mels, attributes=None):
        """Attribute accuracy (and mode by asked mode), FAD against the real clips, the beat grid."""
        attributes = attributes or self.attributes
        posteriors = self.classifier.posteriors(mels)
        return {"attribute_accuracy_on_mel": accuracy(posteriors, attributes),
                "mode_accuracy_by_asked": mode_by_asked(posteriors["mode"], attributes),
                "fad_clap_mel": embedding_frechet_distance(self.real_embedding, self.pipe.clap.embed_audio(mels).cpu()),
                "beat_grid": beat_grid(mels.cpu(), attributes)}

    def judge(self, flow_model, seed=0):
        """Every test caption generated by `flow_model` and scored."""
        return self.score(self.generate(flow_model, seed=seed))

    def judge_real(self):
        """The real clips' ceiling: the classifier's accuracy and the beat grid on their log-mels."""
        posteriors = self.classifier.posteriors(self.real)
        return {"real_attribute_accuracy_on_mel": accuracy(posteriors, self.attributes),
                "real_beat_grid": beat_grid(self.real.cpu(), self.attributes)}


# ----------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Score a trained run on the held-out test captions.")
    parser.add_argument("--run", help="run directory made by train.py (default: runs/tiny, or the shipped "
                                      "pretrained/tiny until you have trained one)")
    parser.add_argument("--num", type=int, default=64, help="test captions to generate (default 64)")
    parser.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    parser.add_argument("--cfg", type=float, default=DEFAULT_CFG, help=f"guidance scale (default {DEFAULT_CFG})")
    parser.add_argument("--sampler", choices=["euler", "heun", "ddim"],
                        help="default: euler (rectified flow) or ddim (a --objective ddpm run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): the flow model in bf16 where the CPU/GPU has native bf16, else fp32")
    parser.add_argument("--batch-size", type=int, default=16, help="clips generated at once")
    task = parser.add_mutually_exclusive_group()
    task.add_argument("--sweep", action="store_true",
                      help="instead: samplers against function evaluations, and guidance scales -> sweep.json")
    task.add_argument("--chain", action="store_true",
                      help="instead: attribute accuracy at every link, real/reconstructed/generated log-mels heard "
                           "as log-mels, through Griffin-Lim and through the vocoder -> chain.json")
    task.add_argument("--long", action="store_true",
                      help="instead: long pieces (window by window and as one latent), continuations and infills, "
                           "judged window by window -> long.json (evaluate_long.py)")
    parser.add_argument("--long-pieces", type=int, default=8, help="with --long: held-out captions (default 8)")
    parser.add_argument("--long-seconds", type=float, default=30.0, help="with --long: piece length (default 30)")
    parser.add_argument("--out", help="where to write the JSON (default: <run>/metrics.json, sweep.json, chain.json "
                                      "or long.json)")
    parser.add_argument("--sweep-nfe", type=int, nargs="+", default=[5, 10, 25, 50], metavar="NFE",
                        help="model evaluations per solve to sweep (default 5 10 25 50)")
    parser.add_argument("--sweep-cfg", type=float, nargs="+", default=[1.0, 2.0, 4.0, 7.0, 10.0], metavar="W",
                        help="guidance scales to sweep, at --steps (default 1 2 4 7 10)")
    parser.add_argument("--classifier-clips", type=int, default=1200, help="real clips for the attribute classifier")
    parser.add_argument("--classifier-steps", type=int, default=600)
    args = parser.parse_args(argv)
    args.run = args.run or default_run()
    for name in ("num", "steps", "batch_size", "classifier_clips", "classifier_steps", "long_pieces"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if min(args.sweep_nfe) < 1 or min(args.sweep_cfg) < 0:
        parser.error("--sweep-nfe needs positive integers and --sweep-cfg non-negative scales")
    if args.num < 2:
        parser.error("--num must be at least 2: FAD needs a covariance")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        evaluator = Evaluator(args.run, args.num, device, args.batch_size, args.classifier_clips,
                              args.classifier_steps, precision=args.precision)
        if args.sweep:
            results = evaluator.sweep(args.sweep_nfe, args.sweep_cfg, args.steps, args.cfg, args.seed)
            path = os.path.join(args.run, "sweep.json")
            text = f"{sweep_table(results['steps'], 'nfe')}\n\n{sweep_table(results['guidance'], 'cfg')}"
        elif args.chain:
            results = evaluator.attribute_chain(args.steps, args.cfg, args.sampler, args.seed)
            path = os.path.join(args.run, "chain.json")
            text = chain_table(results)
        elif args.long:
            results = evaluate_long.LongJudge(evaluator, args.long_pieces, args.long_seconds,
                                              min(args.steps, DEFAULT_STEPS)).run()
            path = os.path.join(args.run, "long.json")
            text = evaluate_long.long_table(results)
        else:
            results = evaluator.evaluate(args.steps, args.cfg, args.sampler, args.seed)
            path = os.path.join(args.run, "metrics.json")
            text = report(results)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    path = args.out or path
    atomic_write_text(path, json.dumps(results, indent=1))
    print(f"{text}\n\nwrote {path}")


if __name__ == "__main__":
    main()
