"""stages.py and train.py's loop: the learning-rate schedule, caption dropout, per-step randomness,
data-parallel sharding, loss curves of every phase, and the run folder's bad input."""
import csv
import math
import os
import shutil
from dataclasses import replace

import pytest
import torch

import flow
import stages
import train
from conftest import run_script
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


def test_learning_rate_holds_the_peak_until_its_decay_share_then_reaches_the_floor():
    steps, floor, share = 1000, 0.1, 0.2
    factors = [stages.learning_rate_factor(s, steps, floor=floor, decay_fraction=share) for s in range(steps)]
    plain = [stages.learning_rate_factor(s, steps, floor=floor) for s in range(steps)]
    assert factors[:50] == plain[:50]  # the same warm-up
    assert factors[50:800] == [1.0] * 750  # the stable phase: the peak until the last 20%
    assert factors[900] == pytest.approx(floor + (1 - floor) / 2, abs=1e-3)  # halfway through the decay
    assert factors[-1] == pytest.approx(floor, abs=1e-3)
    assert all(a >= b for a, b in zip(factors[50:], factors[51:]))
    assert [stages.learning_rate_factor(s, steps, floor=floor, decay_fraction=1.0) for s in range(steps)] == plain


def test_learning_rate_of_a_very_short_stage_is_still_defined():
    assert stages.learning_rate_factor(0, 1) == 1.0
    assert 0 < stages.learning_rate_factor(2, 3) <= 1.0


# ----------------------------------------------------------------------------- caption dropout

def test_drop_conditions_swaps_exactly_the_dropped_rows_for_the_empty_caption():
    torch.manual_seed(0)
    cond = {"txt": torch.randn(5, 3, 4), "txt_mask": torch.ones(5, 3, dtype=torch.bool), "y": torch.randn(5, 2)}
    empty = {"txt": torch.zeros(3, 4), "txt_mask": torch.tensor([True, False, False]), "y": torch.full((2,), 7.0)}
    drop = torch.tensor([True, False, False, True, False])
    out = flow.drop_conditions(cond, empty, drop)
    for key in cond:
        assert out[key].shape == cond[key].shape and out[key].dtype == cond[key].dtype
        for row in range(5):
            expected = empty[key] if drop[row] else cond[key][row]
            assert torch.equal(out[key][row], expected), (key, row)


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
    """The smoke run's flow stage, rebuilt in a copy of its folder (its cached features included)."""
    run_dir = str(tmp_path_factory.mktemp("flow_stage") / "run")
    shutil.copytree(smoke_run, run_dir)
    return stages.build("flow", context(run_dir, replace(train.SMOKE, flow=replace(train.SMOKE.flow, batch_size=400))))


def test_flow_batches_drop_about_a_tenth_of_the_captions(flow_stage):
    empty_y = flow_stage.cache["empty_y"]
    dropped = [(y == empty_y).all(dim=1).float().mean().item() for y in
               (flow_stage.batch(step)[5] for step in range(5))]
    # 2000 rows at p = 0.1: the standard deviation of the share is 0.007
    assert sum(dropped) / len(dropped) == pytest.approx(train.SMOKE.caption_dropout, abs=0.03)


def test_flow_batches_are_a_pure_function_of_the_step(flow_stage):
    a, b, c = flow_stage.batch(7), flow_stage.batch(7), flow_stage.batch(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    x0, noise, t = a[:3]
    assert noise.shape == x0.shape and t.shape == (len(x0),) and ((t > 0) & (t < 1)).all()


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


def test_time_mean_moves_the_training_times_towards_noise(smoke_run, tmp_path):
    """--time-mean m draws t = sigmoid(m + n): E[t] is 0.5 at m = 0 and about 0.77 at m = 1.5."""
    shutil.copytree(smoke_run, tmp_path / "run")
    mean_t = {}
    for m in (0.0, 1.5):
        config = replace(train.SMOKE, time_mean=m, flow=replace(train.SMOKE.flow, batch_size=400))
        mean_t[m] = stages.build("flow", context(str(tmp_path / "run"), config)).batch(3)[2].mean().item()
    assert mean_t[0.0] == pytest.approx(0.5, abs=0.03)
    assert mean_t[1.5] == pytest.approx(0.77, abs=0.03)


def test_each_stage_says_which_precision_it_trains_in(tmp_path):
    ctx = context(str(tmp_path), replace(train.SMOKE, precision="bf16"))
    assert "bf16 autocast" in stages.build("vae", ctx).describe()
    # the vocoder is fp32 by design on every machine, not for want of bf16
    assert stages.build("vocoder", ctx).describe().endswith("fp32 (this stage's choice)")


def test_time_mean_flag_defaults_to_the_preset_and_overrides_it():
    assert train.make_run_config(train.parse_args(["--tiny"])).time_mean == train.TINY.time_mean
    assert train.make_run_config(train.parse_args(["--tiny", "--time-mean", "0"])).time_mean == 0.0
