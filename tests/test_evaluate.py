"""evaluate.py: the metrics' math, the attribute classifier, and the CLI on a --smoke run."""
import json
import math
import os

import pytest
import torch

import evaluate
from classifier import ATTRIBUTES, accuracy
from evaluate import embedding_frechet_distance, frechet_distance, inception_score, joint_posterior, kl_divergence

from conftest import run_script


# ----------------------------------------------------------------------------- Frechet distance

def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift():
    torch.manual_seed(0)
    a = torch.randn(200, 8) @ torch.randn(8, 8)
    assert embedding_frechet_distance(a, a) < 1e-9
    shift = torch.zeros(8)
    distances = []
    for size in (0.5, 1.0, 2.0):
        shift[0] = size
        # a shift moves the mean and leaves the covariance alone: FD = |shift|^2
        distances.append(embedding_frechet_distance(a, a + shift))
        assert distances[-1] == pytest.approx(size**2, rel=1e-6)
    assert distances == sorted(distances)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 0.5, 0.5])
    expected = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance(mu1, torch.diag(s1**2), mu2, torch.diag(s2**2)) == pytest.approx(expected.item())


def test_frechet_distance_for_full_covariances_uses_the_eigenvalues_of_s1_s2():
    torch.manual_seed(1)
    a, b = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    # S1 S2 is not symmetric, but its eigenvalues are real and positive; tr sqrt(S1 S2) = sum of their roots
    cross = torch.linalg.eigvals(s1 @ s2).real.sqrt().sum()
    expected = s1.trace() + s2.trace() - 2 * cross
    assert frechet_distance(torch.zeros(5), s1, torch.zeros(5), s2) == pytest.approx(expected.item(), rel=1e-9)
    assert frechet_distance(torch.zeros(5), s1, torch.zeros(5), s2) == \
        pytest.approx(frechet_distance(torch.zeros(5), s2, torch.zeros(5), s1), rel=1e-9)


# ----------------------------------------------------------------------------- KL and IS

def test_kl_is_zero_for_equal_posteriors_and_positive_otherwise():
    p = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert torch.allclose(kl_divergence(p, p), torch.zeros(2, dtype=torch.float64), atol=1e-7)
    q = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]])
    kl = kl_divergence(p, q)
    assert (kl > 0).all()
    assert kl[0].item() == pytest.approx(0.2 * math.log(0.4) + 0.3 * math.log(1.2) + 0.5 * math.log(2), rel=1e-5)
    assert kl[1].item() == pytest.approx(math.log(2), rel=1e-5)
    assert kl_divergence(q, p)[0].item() != pytest.approx(kl[0].item())  # KL is not symmetric


def test_inception_score_is_one_for_constant_posteriors_and_k_for_confident_even_ones():
    constant = torch.tensor([0.1, 0.6, 0.3]).expand(10, 3)
    assert inception_score(constant) == pytest.approx(1.0)
    confident = torch.eye(4).repeat(3, 1)  # 12 clips, each certain, every class 3 times
    assert inception_score(confident) == pytest.approx(4.0, rel=1e-6)
    lopsided = torch.eye(4)[[0, 0, 0, 1]]
    assert 1.0 < inception_score(lopsided) < 4.0


def test_joint_posterior_is_the_product_of_the_heads():
    torch.manual_seed(0)
    heads = {name: torch.softmax(torch.randn(5, len(values)), -1) for name, values in ATTRIBUTES.items()}
    joint = joint_posterior(heads)
    assert joint.shape == (5, 72)
    assert torch.allclose(joint.sum(1), torch.ones(5))
    # combination (instrument 2, tempo 1, mode 0, drums 1) sits at index ((2 * 3 + 1) * 2 + 0) * 2 + 1
    expected = heads["instrument"][:, 2] * heads["tempo"][:, 1] * heads["mode"][:, 0] * heads["drums"][:, 1]
    assert torch.allclose(joint[:, 29], expected)


def test_accuracy_compares_the_top_guess_with_the_truth():
    attributes = [{"instrument": "piano", "tempo": "slow", "mode": "minor", "drums": True},
                  {"instrument": "bells", "tempo": "fast", "mode": "major", "drums": False}]
    posteriors = {"instrument": torch.tensor([[0.9, 0, 0, 0, 0, 0.1], [0.9, 0, 0, 0, 0, 0.1]]),
                  "tempo": torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]),
                  "mode": torch.tensor([[0.2, 0.8], [0.4, 0.6]]),
                  "drums": torch.tensor([[0.3, 0.7], [0.6, 0.4]])}
    assert accuracy(posteriors, attributes) == {"instrument": 0.5, "tempo": 1.0, "mode": 0.5, "drums": 1.0}


# ----------------------------------------------------------------------------- end to end

# The session's smoke run is shared: evaluate.py writes its JSON and classifier into a private copy.

@pytest.mark.slow  # runs evaluate.py in another process
def test_evaluate_cli_writes_metrics_and_reuses_its_classifier(copy_smoke_run):
    smoke_run = copy_smoke_run()
    args = ("--run", smoke_run, "--num", "4", "--steps", "2", "--device", "cpu", "--classifier-clips", "24",
            "--classifier-steps", "10")
    result = run_script("evaluate.py", *args)
    assert "training the audio attribute classifier" in result.stdout
    assert os.path.exists(os.path.join(smoke_run, "attribute_classifier.pt"))
    with open(os.path.join(smoke_run, "metrics.json")) as f:
        metrics = json.load(f)
    for key in ("fad", "kl", "inception_score", "clap_score"):
        assert math.isfinite(metrics[key])
    assert set(metrics["attribute_accuracy"]) == set(ATTRIBUTES)
    assert set(metrics["rows"]) == set(evaluate.ROWS)
    assert metrics["chance"]["instrument"] == pytest.approx(1 / 6)
    # held-out accuracy on clean clips and on their Griffin-Lim copies, which it was also trained on
    assert set(metrics["classifier_test_accuracy"]) == {"clean", "griffin_lim"}
    assert set(metrics["classifier_test_accuracy"]["griffin_lim"]) == set(ATTRIBUTES)
    assert metrics["settings"]["steps"] == 2 and metrics["settings"]["num"] == 4
    assert "| generated (euler, 2 steps, cfg 4) |" in result.stdout
    assert "| generated, held-out phrasings |" in result.stdout

    evaluator = evaluate.Evaluator(smoke_run, num=3, classifier_clips=24, classifier_steps=10,
                                   log=lambda message: pytest.fail(f"classifier retrained: {message}"))
    sweep = evaluator.sweep(nfes=(2, 4), cfgs=(1.0, 3.0), steps=2, log=lambda message: None)
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in sweep["steps"]] == \
        [("euler", 2, 2), ("euler", 4, 4), ("heun", 1, 2), ("heun", 2, 4)]
    assert [r["cfg"] for r in sweep["guidance"]] == [1.0, 3.0]
    assert len(evaluator.rephrased) == 3 and not set(evaluator.rephrased) & set(evaluator.captions)
    # the same settings and seed give the same clips
    assert torch.equal(evaluator.generate(2, 3.0, "euler", 0), evaluator.generate(2, 3.0, "euler", 0))


@pytest.mark.slow  # runs evaluate.py in another process
def test_attribute_chain_measures_every_link(copy_smoke_run):
    smoke_run = copy_smoke_run()
    args = ("--run", smoke_run, "--num", "4", "--steps", "2", "--device", "cpu", "--classifier-clips", "24",
            "--classifier-steps", "10", "--chain")
    result = run_script("evaluate.py", *args)
    with open(os.path.join(smoke_run, "chain.json")) as f:
        chain = json.load(f)
    assert list(chain["chain"]) == ["real", "VAE reconstruction", "generated"]
    assert list(chain["chain"]["real"]) == ["audio", "log-mel", "Griffin-Lim", "vocoder"]
    assert list(chain["chain"]["generated"]) == ["log-mel", "Griffin-Lim", "vocoder"]
    for clips, ways in chain["chain"].items():
        for how, acc in ways.items():
            expected = set(ATTRIBUTES)
            if how != "log-mel":  # a waveform is also judged by its pitch, and against the score where it has one
                expected |= {"in_scale_energy", "mode_by_scale_fit"}
                if clips != "generated":
                    expected |= {"note_accuracy", "pitch_class_similarity"}
            assert set(acc) == expected, (clips, how)
            assert all(0 <= v <= 1 + 1e-6 for v in acc.values()), (clips, how, acc)
    assert "log_mel" in chain["classifier_test_accuracy"]  # the mel-domain classifier's own held-out accuracy
    assert "| generated | vocoder |" in result.stdout and os.path.exists(
        os.path.join(smoke_run, "mel_attribute_classifier.pt"))


def cli_error(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(list(argv))
    return stop.value.code, capsys.readouterr().err.strip().splitlines()


def test_evaluate_cli_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert cli_error(capsys, "--run", str(missing)) == \
        (1, [f"error: no run at {missing}: train one with `python train.py --tiny --run {missing}`"])
    code, lines = cli_error(capsys, "--run", str(tmp_path))
    assert code == 1 and len(lines) == 1 and "flow.pt" in lines[0] and "train.py" in lines[0]
    code, lines = cli_error(capsys, "--num", "1")
    assert code == 2 and "--num must be at least 2" in lines[-1]


@pytest.mark.slow  # runs evaluate.py in another process
def test_evaluate_long_writes_pieces_continuations_and_infills(copy_smoke_run, tmp_path):
    smoke_run, out = copy_smoke_run(), str(tmp_path / "long.json")
    args = ("--run", smoke_run, "--num", "2", "--steps", "2", "--device", "cpu", "--classifier-clips", "24",
            "--classifier-steps", "10", "--long", "--long-pieces", "1", "--long-seconds", "5.12", "--out", out)
    result = run_script("evaluate.py", *args)
    with open(out) as f:
        long = json.load(f)
    methods = ("repaint", "trained")  # the smoke run trains with known frames, so both
    assert set(long) == {"settings", "single_clips", "long_whole", "real_long",
                         *(f"{kind}_{m}" for m in methods for kind in ("long", "continuation", "infill"))}
    assert long["settings"] == {"pieces": 1, "seconds": 5.12, "steps": 2, "run": smoke_run}
    for name in ("long_whole", "long_trained", "real_long"):
        assert 0 <= long[name]["seam_mean"] and 0 <= long[name]["silent_fraction"] <= 1
        assert long[name]["windows_per_piece"] == 2 and set(long[name]["attribute_accuracy"]) == set(ATTRIBUTES)
    assert long["infill_trained"]["span_log_mel_l1"] > 0 and "seam_excess" in long["infill_trained"]
    assert f"wrote {out}" in result.stdout and "| long_trained | " in result.stdout
