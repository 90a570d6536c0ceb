"""stages.py and train.py's loop: the learning-rate schedule, per-step randomness, data-parallel
sharding, the flow step (caption dropout, the path and its target, the DDPM baseline's, the loss,
the optimiser and the EMA), loss curves of every phase, and the run folder's bad input."""
import csv
import math
import os
from dataclasses import replace

import pytest
import torch

import flow
import longform
import stages
import train
from conftest import copy_run, run_script
from train import World


# ----------------------------------------------------------------------------- learning rate

def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    steps, floor = 1000, 0.1
    factors = [stages.learning_rate_factor(s, steps, warmup_fraction=0.05, floor=floor) for s in range(steps)]
    warmup = 50
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)  # the peak, right after the warm-up
    middle = warmup + (steps - warmup) // 2  # cosine's halfway point: halfway between peak and floor
    assert factors[middle] == pytest.approx(floor + (1 - floor) / 2, abs=1e-3)
    assert factors[-1] == pytest.approx(floor, abs=1e-4)
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))


def test_learning_rate_of_a_very_short_stage_is_still_defined():
    assert stages.learning_rate_factor(0, 1) == 1.0
    assert 0 < stages.learning_rate_factor(2, 3) <= 1.0


# ----------------------------------------------------------------------------- randomness and sharding

def context(run_dir, config=train.SMOKE, rank=0, size=1):
    return stages.Context(run_dir, config, None, World(rank, size), progress=False)


def test_step_generators_repeat_for_the_same_step_and_differ_otherwise(tmp_path):
    ctx = context(str(tmp_path))
    draw = lambda stage, step, c=ctx: torch.rand(4, generator=c.step_generator(stage, step))
    assert torch.equal(draw("vae", 3), draw("vae", 3))  # a resumed run draws the same batch
    others = [draw("vae", 4), draw("flow", 3), draw("vae", 3, context(str(tmp_path), replace(train.SMOKE, seed=1)))]
    assert not any(torch.equal(draw("vae", 3), other) for other in others)


def test_shards_of_all_processes_make_up_the_global_batch(tmp_path):
    batch = (torch.arange(6), ["a", "b", "c", "d", "e", "f"])
    shards = [context(str(tmp_path), rank=r, size=2).shard(batch) for r in range(2)]
    assert sorted(torch.cat([s[0] for s in shards]).tolist()) == list(range(6))
    assert sorted(shards[0][1] + shards[1][1]) == list("abcdef")
    for tensor, captions in shards:  # a row's caption stays with its row
        assert captions == [batch[1][i] for i in tensor.tolist()]


@pytest.fixture(scope="module")
def flow_stage(smoke_run, tmp_path_factory):
    """The smoke run's flow stage, rebuilt in a copy of its folder (its cached features included),
    with a batch of 400 so shares of the batch are measured closely."""
    run_dir = copy_run(smoke_run, tmp_path_factory.mktemp("flow_stage") / "run")
    return stages.build("flow", context(run_dir, replace(train.SMOKE, flow=replace(train.SMOKE.flow, batch_size=400))))


class AtTheNetwork(Exception):
    """Stops a flow step where it calls the network, before the optimiser moves anything."""


def network_inputs(stage, step):
    """What `stage.train_step(step)` gives the network: {z_t, t, txt, txt_mask, y, known_latent,
    known_frames}, and through `stage.path` the (x0, noise, t) it made z_t from."""
    seen, path = {}, stage.path

    def record_path(x0, noise, t):
        seen.update(x0=x0, noise=noise, path_t=t)
        return path(x0, noise, t)

    def velocity(z_t, t, txt, txt_mask, y, forward=None, known_latent=None, known_frames=None):
        seen.update(z_t=z_t, t=t, txt=txt, txt_mask=txt_mask, y=y, known_latent=known_latent,
                    known_frames=known_frames)
        raise AtTheNetwork

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "path", record_path)
        patch.setattr(stage.model, "velocity", velocity)
        with pytest.raises(AtTheNetwork):
            stage.train_step(step)
    return seen


def test_flow_steps_drop_about_a_tenth_of_the_captions_and_all_of_each_dropped_one(flow_stage):
    c = flow_stage.cache
    dropped = []
    for step in range(5):
        seen = network_inputs(flow_stage, step)
        empty = (seen["y"] == c["empty_y"]).all(dim=1)
        dropped.append(empty.float().mean().item())
        # a dropped caption is the empty caption in all three of its forms ...
        assert (seen["txt"][empty] == c["empty_txt"]).all() and (seen["txt_mask"][empty] == c["empty_mask"]).all()
        # ... and a kept one is one phrasing, whole: its T5 features, mask and CLAP embedding together,
        # beside the latent of the clip it describes
        for row in (~empty).nonzero().flatten().tolist():
            (phrasing,) = (c["y"] == seen["y"][row]).all(dim=1).nonzero().flatten().tolist()
            assert torch.equal(seen["txt"][row], c["txt"][phrasing])
            assert torch.equal(seen["txt_mask"][row], c["txt_mask"][phrasing])
            assert torch.equal(seen["x0"][row], c["latents"][c["caption_clip"][phrasing]])
    # 2000 rows at p = 0.1: the standard deviation of the share is 0.007
    assert sum(dropped) / len(dropped) == pytest.approx(train.SMOKE.caption_dropout, abs=0.03)
    assert min(dropped) > 0


def test_flow_steps_are_a_pure_function_of_the_step(flow_stage):
    a, b, c = (network_inputs(flow_stage, step) for step in (7, 7, 8))
    assert all(torch.equal(a[key], b[key]) for key in a if a[key] is not None)
    assert not torch.equal(a["noise"], c["noise"]) and not torch.equal(a["t"], c["t"])
    x0, noise, t = a["x0"], a["noise"], a["t"]
    assert noise.shape == x0.shape and t.shape == (len(x0),) and ((t > 0) & (t < 1)).all()


def test_a_flow_step_regresses_the_straight_path_velocity(flow_stage):
    seen = network_inputs(flow_stage, 3)
    x0, noise, t = seen["x0"], seen["noise"], seen["t"]
    assert torch.equal(seen["path_t"], t)
    torch.testing.assert_close(seen["z_t"], (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * noise)
    z_t, target = flow_stage.path(x0, noise, t)
    assert torch.equal(z_t, seen["z_t"]) and torch.equal(target, noise - x0)


def test_the_ddpm_step_shows_the_network_k_over_1000_and_regresses_the_noise(flow_stage, monkeypatch):
    monkeypatch.setattr(flow_stage, "run_config", replace(flow_stage.run_config, objective="ddpm"))
    seen = network_inputs(flow_stage, 3)
    x0, noise, t = seen["x0"], seen["noise"], seen["t"]
    k = (t * 1000).round().long()
    assert torch.allclose(k / 1000, t) and k.min() >= 0 and k.max() <= 999  # integer steps, told as t = k / K
    assert k.float().std() > 200  # uniform over the steps, not the flow's logit-normal
    abar = flow.ddpm_schedule()[k].float()[:, None, None, None]
    torch.testing.assert_close(seen["z_t"], abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    assert torch.equal(flow_stage.path(x0, noise, t)[1], noise)


def test_a_flow_step_takes_the_mean_square_then_moves_the_weights_and_the_ema(smoke_run, tmp_path, monkeypatch):
    """One whole step of a fresh flow stage, whose zero-initialised output layer makes v = 0: the
    loss is then mean (eps - x0)^2 exactly, and the optimiser and the EMA both move."""
    run_dir = copy_run(smoke_run, tmp_path / "run")
    stage = stages.build("flow", context(run_dir, replace(train.SMOKE, precision="fp32")))
    seen, path, draw = {}, stage.path, longform.draw_known_frames
    monkeypatch.setattr(stage, "path", lambda x0, noise, t: seen.update(x0=x0, noise=noise) or path(x0, noise, t))
    monkeypatch.setattr(longform, "draw_known_frames", lambda *a, **k: seen.setdefault("known", draw(*a, **k)))
    before = {name: p.detach().clone() for name, p in stage.model.named_parameters()}
    ema_before = [p.detach().clone() for p in stage.ema.parameters()]
    logs = stage.train_step(0)
    unknown = ~seen["known"][:, None, :, None].expand_as(seen["x0"])  # the loss counts only frames to make
    assert logs["loss"] == pytest.approx(((seen["noise"] - seen["x0"])[unknown] ** 2).mean().item(), rel=1e-6)
    assert not torch.equal(stage.model.final_layer.linear.weight, before["final_layer.linear.weight"])
    assert any(not torch.equal(p, q) for p, q in zip(stage.ema.parameters(), ema_before))


def test_flow_steps_show_some_examples_part_of_their_own_clip(flow_stage):
    """The mask mix (longform.py): half the examples know nothing, a quarter a prefix, a quarter all
    but a gap; what the network is told is known is the clean latent of that very example."""
    seen = network_inputs(flow_stage, 4)
    known = seen["known_frames"]
    assert known.shape == seen["x0"].shape[::2] and torch.equal(seen["known_latent"], seen["x0"])
    nothing = ~known.any(dim=1)
    prefix = known[:, 0] & ~nothing & (known.int().diff(dim=1) <= 0).all(dim=1)
    assert nothing.float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert prefix.float().mean().item() == pytest.approx(train.SMOKE.context_prefix, abs=0.08)
    assert not known.all(dim=1).any()


def test_time_mean_moves_the_training_times_towards_noise(flow_stage, monkeypatch):
    """--time-mean m draws t = sigmoid(m + n): E[t] is 0.5 at m = 0 and about 0.77 at m = 1.5."""
    mean_t = {}
    for m in (0.0, 1.5):
        monkeypatch.setattr(flow_stage, "run_config", replace(flow_stage.run_config, time_mean=m))
        mean_t[m] = network_inputs(flow_stage, 3)["t"].mean().item()
    assert mean_t[0.0] == pytest.approx(0.5, abs=0.03)
    assert mean_t[1.5] == pytest.approx(0.77, abs=0.03)


# ----------------------------------------------------------------------------- the loop's files

def test_loss_curves_keep_every_phase(smoke_run):
    """The vocoder logs its warm-up and GAN losses on different steps: the CSV keeps both."""
    with open(os.path.join(smoke_run, "vocoder_loss.csv")) as f:
        rows = list(csv.DictReader(f))
    warmup = train.SMOKE.vocoder_warmup
    assert len(rows) == train.SMOKE.vocoder.steps
    for row in rows[:warmup]:
        assert math.isfinite(float(row["reconstruction_loss"])) and row["d_loss"] == ""
    for row in rows[warmup:]:
        assert math.isfinite(float(row["d_loss"])) and math.isfinite(float(row["g_adv"]))
        assert row["reconstruction_loss"] == ""
    assert all(math.isfinite(float(row["g_mel"])) for row in rows)  # the mel L1 runs through both phases


@pytest.mark.slow  # runs train.py in another process
def test_run_folder_that_is_a_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "not_a_folder"
    path.write_text("hello")
    result = run_script("train.py", "--smoke", "--run", str(path), "--device", "cpu", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "is a file, not a folder" in lines[-1]
    assert "Traceback" not in result.stderr and path.read_text() == "hello"


def test_writing_a_loss_curve_leaves_the_plotting_backend_alone(tmp_path):
    """A notebook that trains must still show its figures afterwards (pyplot.use("Agg") broke that)."""
    import matplotlib
    import matplotlib.pyplot as plt
    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        train.write_loss_curve(str(tmp_path), "demo", [{"step": 1, "loss": 2.0}, {"step": 2, "d_loss": 1.0}])
        assert matplotlib.get_backend() == "svg"
    finally:
        plt.switch_backend(before)
    assert os.path.getsize(tmp_path / "demo_loss.png") > 1000


def test_each_stage_says_which_precision_it_trains_in(tmp_path):
    ctx = context(str(tmp_path), replace(train.SMOKE, precision="bf16"))
    assert "bf16 autocast" in stages.build("vae", ctx).describe()
    # the vocoder is fp32 by design on every machine, not for want of bf16
    assert stages.build("vocoder", ctx).describe().endswith("fp32 (this stage's choice)")


def test_time_mean_flag_defaults_to_the_preset_and_overrides_it():
    assert train.make_run_config(train.parse_args(["--tiny"])).time_mean == train.TINY.time_mean
    assert train.make_run_config(train.parse_args(["--tiny", "--time-mean", "0"])).time_mean == 0.0
