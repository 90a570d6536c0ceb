"""train.py and sample.py end to end on the --smoke settings: files, resume, DDP, errors."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import soundfile
import torch

from common import STAGES, CheckpointError, git_commit, load_checkpoint
from conftest import ROOT, run_script
from data import SynthMusicDataset
from pipeline import Pipeline, load_stage
from vae import VAE, VAEConfig


def error_line(result):
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0
    return lines[-1]


def test_smoke_trains_every_stage(smoke_training):
    run_dir, result = smoke_training
    for stage in STAGES:
        checkpoint = load_checkpoint(os.path.join(run_dir, f"{stage}.pt"))
        assert checkpoint["done"] and checkpoint["step"] == len(checkpoint["history"]) > 0
        assert os.path.exists(os.path.join(run_dir, f"{stage}_loss.csv"))
        assert os.path.exists(os.path.join(run_dir, f"{stage}_loss.png"))
    assert os.listdir(os.path.join(run_dir, "samples")), "no sample WAVs written during flow training"
    assert "vae.pt" in result.stdout
    with open(os.path.join(run_dir, "made_by.json")) as f:  # what export.py ships beside the weights
        made_by = json.load(f)
    assert made_by["command"].startswith("python train.py --smoke --run") and made_by["commit"] == git_commit()[0]


@pytest.mark.slow  # runs train.py in another process
def test_rerun_skips_finished_stages(smoke_run):
    run_dir = smoke_run
    before = os.path.getmtime(os.path.join(run_dir, "vae.pt"))
    result = run_script("train.py", "--smoke", "--run", run_dir, "--device", "cpu")
    assert result.stdout.count("already trained") == len(STAGES)
    assert os.path.getmtime(os.path.join(run_dir, "vae.pt")) == before


@pytest.mark.slow  # runs sample.py in another process
def test_sample_writes_wav_of_requested_length_and_png(smoke_run, tmp_path):
    run_dir = smoke_run
    out = str(tmp_path / "clip.wav")
    result = run_script("sample.py", "--run", run_dir, "--prompt", "A fast guitar tune with drums.", "--steps", "2",
                 "--seconds", "1.28", "--out", out, "--device", "cpu")
    audio, rate = soundfile.read(out)
    assert rate == 16000 and len(audio) == 128 * 160
    assert os.path.getsize(str(tmp_path / "clip.png")) > 1000
    assert out in result.stdout


@pytest.mark.slow  # runs sample.py in another process
def test_sample_is_deterministic_and_batch_independent(smoke_run, tmp_path):
    run_dir = smoke_run
    common = ["--run", run_dir, "--steps", "2", "--device", "cpu", "--griffin-lim"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A slow organ piece, no drums.\n\nA bright flute melody with a steady beat.\n")
    run_script("sample.py", "--prompt", "A slow organ piece, no drums.", "--out", str(tmp_path / "a.wav"), *common)
    run_script("sample.py", "--prompt", "A slow organ piece, no drums.", "--out", str(tmp_path / "b.wav"), *common)
    run_script("sample.py", "--prompt", "A slow organ piece, no drums.", "--seed", "1", "--out", str(tmp_path / "c.wav"),
        *common)
    run_script("sample.py", "--prompts-file", str(prompts), "--out", str(tmp_path / "batch"), *common)
    a, b, c = (soundfile.read(str(tmp_path / f"{name}.wav"))[0] for name in "abc")
    batch = sorted(f for f in os.listdir(tmp_path / "batch") if f.endswith(".wav"))
    assert len(batch) == 2  # the blank line is ignored
    first = soundfile.read(str(tmp_path / "batch" / batch[0]))[0]
    assert (a == b).all(), "same seed must give the same audio"
    assert not (a == c).all(), "another seed must give other audio"
    assert abs(first - a).max() < 1e-3, "a clip must not depend on the other prompts in its batch"


@pytest.mark.slow  # train.py in a second process, stopped by a signal
def test_interrupt_saves_and_resume_continues_the_step_count(copy_smoke_run):
    run_dir = copy_smoke_run("resume", frozen_only=True)
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--smoke", "--run", run_dir, "--stage", "flow",
            "--flow-steps", "100000", "--device", "cpu"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flow_path = os.path.join(run_dir, "flow.pt")
    deadline = time.time() + 120
    while not os.path.exists(flow_path) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Rerun the same command to resume" in stderr
    saved = load_checkpoint(flow_path)
    assert not saved["done"] and saved["step"] >= 2
    assert [row["step"] for row in saved["history"]] == list(range(1, saved["step"] + 1))
    assert not [f for f in os.listdir(run_dir) if f.startswith(".tmp")], "a temporary file was left behind"

    stop = saved["step"] + 3
    result = run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--flow-steps", str(stop),
                 "--device", "cpu")
    assert f"resuming at step {saved['step']}" in result.stdout
    final = load_checkpoint(flow_path)
    assert final["done"] and [row["step"] for row in final["history"]] == list(range(1, stop + 1))


@pytest.mark.slow  # runs train.py in another process
def test_resume_with_another_preset_names_the_trained_config(smoke_run, copy_smoke_run):
    run_dir = copy_smoke_run("mismatch", frozen_only=True)
    finished = load_checkpoint(os.path.join(smoke_run, "flow.pt"))
    unfinished = {**finished, "done": False, "step": 1, "extra": {}, "optimizers": {"main": None},
                  "rng": torch.get_rng_state()}
    torch.save(unfinished, os.path.join(run_dir, "flow.pt"))
    result = run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--preset", "small",
                 "--device", "cpu", check=False)
    line = error_line(result)
    assert "was trained with config" in line and "hidden_size': 128" in line and "--preset" in line


def free_port():
    """A TCP port no process listens on now: the one the system hands out for port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # torchrun: two training processes
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    single, double = str(tmp_path / "one"), str(tmp_path / "two")
    # fp32: what is compared is the data-parallel split, not bf16's roundings (which the summation
    # order of two processes flips, and training amplifies: 0.2% on the scale factor in bf16)
    run_script("train.py", "--smoke", "--run", single, "--stage", "vae", "--device", "cpu", "--precision", "fp32")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", os.path.join(ROOT, "train.py"), "--smoke", "--run-dir",
                             double,
                             "--stage", "vae", "--device", "cpu", "--precision", "fp32"], cwd=ROOT,
                            capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    a = load_checkpoint(os.path.join(single, "vae.pt"))["model"]
    b = load_checkpoint(os.path.join(double, "vae.pt"))["model"]
    torch.manual_seed(0)  # the stage's initial weights (train.py seeds with --seed before building)
    start = VAE(VAEConfig()).state_dict()
    names = [name for name in a if name != "scale_factor"]
    moved = torch.cat([(a[n] - start[n]).abs().flatten() for n in names]).mean()
    apart = torch.cat([(a[n] - b[n]).abs().flatten() for n in names]).mean()
    # two halves of the batch with gradients averaged across processes = the whole batch in one
    # process, up to float summation order (which Adam can amplify where a gradient is ~0)
    assert apart < 0.01 * moved, (apart, moved)
    torch.testing.assert_close(a["scale_factor"], b["scale_factor"], rtol=1e-3, atol=0)


@pytest.mark.slow  # runs sample.py in another process
def test_missing_run_says_which_command_makes_it(tmp_path):
    result = run_script("sample.py", "--run", str(tmp_path / "nothing"), check=False)
    line = error_line(result)
    assert result.returncode == 1 and "no checkpoint" in line
    assert f"`python train.py --tiny --run {tmp_path / 'nothing'}`" in line  # every stage, not just the first
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # runs sample.py in another process
def test_corrupt_checkpoint_is_a_one_line_error(copy_smoke_run):
    run_dir = copy_smoke_run("corrupt", frozen_only=True)
    with open(os.path.join(run_dir, "flow.pt"), "wb") as f:
        f.write(b"\x00" * 100)
    result = run_script("sample.py", "--run", run_dir, check=False)
    assert "unreadable" in error_line(result) and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # runs sample.py in another process
@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "positive integer"),
    (["--cfg", "-1"], "non-negative"),
    (["--seconds", "0"], "positive number"),
    (["--sampler", "rk4"], "invalid choice"),
    (["--seconds", "0.01"], "too short"),
    (["--seconds", "-1"], "positive number"),
    (["--seconds", "1000", "--long", "whole"], "too long for one latent"),
    (["--device", "tpu"], "not a device name"),
    (["--out", "song.mp3"], "writes WAV files"),
    (["--prompts-file", "/no/such/file.txt"], "no such file"),
])
def test_sample_rejects_bad_arguments(smoke_run, args, message):
    result = run_script("sample.py", "--run", smoke_run, *args, check=False)
    assert result.returncode != 0 and message in error_line(result)


@pytest.mark.slow  # runs sample.py in another process
def test_empty_prompt_warns_and_generates_unconditionally(smoke_run, tmp_path):
    out = str(tmp_path / "empty.wav")
    result = run_script("sample.py", "--run", smoke_run, "--prompt", "  ", "--steps", "1", "--out", out,
                 "--griffin-lim", "--device", "cpu")
    assert "unconditional" in result.stderr and os.path.exists(out)


@pytest.mark.slow  # runs train.py in another process, three times
def test_train_rejects_bad_arguments(tmp_path):
    result = run_script("train.py", "--smoke", "--data", str(tmp_path / "missing"), check=False)
    assert result.returncode == 2 and "no such folder" in error_line(result)
    result = run_script("train.py", "--smoke", "--preset", "huge", check=False)
    assert result.returncode == 2 and "choose one of" in error_line(result)
    result = run_script("train.py", "--smoke", "--run", str(tmp_path / "run"), "--device", "tpu", check=False)
    assert result.returncode == 1 and "not a device name" in error_line(result)


@pytest.mark.slow  # runs train.py in another process
def test_ddpm_objective_trains_and_samples_with_ddim_only(smoke_run, copy_smoke_run, tmp_path):
    run_dir = copy_smoke_run("ddpm", frozen_only=True)
    run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--objective", "ddpm", "--device", "cpu")
    assert load_checkpoint(os.path.join(run_dir, "flow.pt"))["run_config"]["objective"] == "ddpm"
    out = str(tmp_path / "ddpm.wav")
    run_script("sample.py", "--run", run_dir, "--out", out, "--steps", "3", "--seconds", "0.64", "--device", "cpu")
    audio, _ = soundfile.read(out)
    assert len(audio) == 64 * 160 and abs(audio).max() > 0
    result = run_script("sample.py", "--run", run_dir, "--sampler", "heun", "--steps", "2", "--device", "cpu", check=False)
    assert "does not fit a ddpm model" in error_line(result)
    # a rectified-flow checkpoint cannot be resumed as a DDPM run
    unfinished = {**load_checkpoint(os.path.join(smoke_run, "flow.pt")), "done": False, "step": 1, "extra": {},
                  "optimizers": {"main": None}, "rng": torch.get_rng_state()}
    torch.save(unfinished, os.path.join(run_dir, "flow.pt"))
    result = run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--objective", "ddpm",
                 "--device", "cpu", check=False)
    assert "--objective rectified_flow" in error_line(result)


@pytest.mark.slow  # runs train.py in another process
def test_own_audio_folder_trains_on_every_window_of_its_training_files_and_samples(tmp_path,
                                                                                   captioned_folder):
    """--data: a folder of WAVs with metadata.jsonl (no ground-truth attributes) runs end to end, and
    the flow model's cache encodes every 2.56 s window of the files that are not held out."""
    clips = SynthMusicDataset("train", 6, 3 * 2.56 + 0.5, seed=5)  # three windows a file, 0.5 s left over
    folder, _ = captioned_folder(tmp_path / "music", len(clips), metadata=True, audio=lambda i: clips[i]["audio"],
                                 caption=lambda i: clips[i]["caption"])
    run_dir = str(tmp_path / "run")
    run_script("train.py", "--smoke", "--data", str(folder), "--run", run_dir, "--device", "cpu")
    metrics = load_checkpoint(os.path.join(run_dir, "clap.pt"))["metrics"]
    assert "R@1" in metrics and not any(k.startswith("zero_shot") for k in metrics)
    cache = load_checkpoint(os.path.join(run_dir, "flow_cache.pt"))
    training_windows = 5 * 3  # the sixth file is held out, with all its windows
    assert cache["num_clips"] == cache["num_captions"] == len(cache["latents"]) == training_windows
    # a file's caption goes with each of its windows: the three windows of a file share their text features
    assert cache["caption_clip"].tolist() == list(range(training_windows))
    for file in range(5):
        rows = cache["txt"][3 * file:3 * file + 3]
        torch.testing.assert_close(rows[1], rows[0])
        torch.testing.assert_close(rows[2], rows[0])
        assert not torch.allclose(rows[0], cache["txt"][3 * ((file + 1) % 5)])
    out = str(tmp_path / "own.wav")
    run_script("sample.py", "--run", run_dir, "--steps", "2", "--seconds", "0.64", "--out", out, "--device", "cpu")
    assert len(soundfile.read(out)[0]) == 64 * 160


@pytest.mark.slow  # runs train.py in another process
def test_compiled_flow_stage_trains_the_same_weights(copy_smoke_run):
    eager, compiled = copy_smoke_run("eager", frozen_only=True), copy_smoke_run("compiled", frozen_only=True)
    for run_dir, flags in ((eager, []), (compiled, ["--compile"])):  # fp32: bf16 rounding would swamp the comparison
        run_script("train.py", "--smoke", "--run", run_dir, "--stage", "flow", "--device", "cpu", "--precision", "fp32",
                   *flags)
    a = load_checkpoint(os.path.join(eager, "flow.pt"))
    b = load_checkpoint(os.path.join(compiled, "flow.pt"))
    assert b["run_config"]["compile"] and not a["run_config"]["compile"]
    assert a["model"].keys() == b["model"].keys()  # saved without torch.compile's "_orig_mod." prefix
    for name in a["model"]:  # fused kernels only change float rounding
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mel_l1, stft, similarity, uses_vocoder",
                         [(0.4, 1.7, 0.9, True), (0.5, 1.7, 0.9, False), (0.4, 1.9, 0.9, False), (0.4, 1.7, 0.7, False),
                          (0.4, 1.7, None, True)])
def test_pipeline_plays_through_the_vocoder_only_where_it_beat_griffin_lim_on_both(copy_smoke_run, mel_l1, stft,
                                                                                    similarity, uses_vocoder):
    """Griffin-Lim scores 0.45 / 1.8 / pitch similarity 0.8 here; the run's vocoder must beat both
    distances and keep the pitch classes at least as well to be used (a run from before the pitch
    number existed is judged on the distances)."""
    run_dir = copy_smoke_run()
    path = os.path.join(run_dir, "vocoder.pt")
    checkpoint = load_checkpoint(path)
    checkpoint["metrics"] = {"vocoder_mel_l1": mel_l1, "vocoder_stft": stft,
                             "griffin_lim_mel_l1": 0.45, "griffin_lim_stft": 1.8, "griffin_lim_pitch_similarity": 0.8}
    if similarity is not None:
        checkpoint["metrics"]["vocoder_pitch_similarity"] = similarity
    torch.save(checkpoint, path)
    notes = []
    pipe = Pipeline(run_dir, "cpu", log=notes.append)
    assert (pipe.vocoder is not None) == uses_vocoder
    assert bool(notes) != uses_vocoder  # one line says why Griffin-Lim plays instead
    if notes:
        assert "did not beat Griffin–Lim" in notes[0] and f"{mel_l1:.3f} vs 0.450" in notes[0]
    assert Pipeline(run_dir, "cpu", use_vocoder=True).vocoder is not None  # asked for: always


def test_a_vocoder_from_an_older_version_is_a_one_line_error(copy_smoke_run):
    """A checkpoint whose config this code no longer builds (the waveform-head vocoder saved
    before `head` existed) names the problem and the command that retrains it."""
    run_dir = copy_smoke_run("old")
    path = os.path.join(run_dir, "vocoder.pt")
    checkpoint = load_checkpoint(path)
    checkpoint["config"] = {k: v for k, v in checkpoint["config"].items() if k != "head"}
    checkpoint["config"].update(upsample_rates=(5, 4, 4, 2), upsample_kernel_sizes=(10, 8, 8, 4))
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"written by another version of this code .* delete it and retrain it with "
                                              r"`python train.py --tiny --run .*--stage vocoder`"):
        load_stage(run_dir, "vocoder")


@pytest.mark.parametrize("freq_patch, loads", [(2, True), (8, False)])
def test_a_flow_checkpoint_with_the_retired_freq_patch_loads_only_at_its_fixed_value(copy_smoke_run, freq_patch,
                                                                                    loads):
    """Older checkpoints (pretrained/tiny's among them) store `freq_patch`, which is now always 2:
    at 2 they load unchanged; any other value built another model, and says so in one line."""
    run_dir = copy_smoke_run()
    path = os.path.join(run_dir, "flow.pt")
    checkpoint = load_checkpoint(path)
    checkpoint["config"] = {**checkpoint["config"], "freq_patch": freq_patch}
    torch.save(checkpoint, path)
    if loads:
        model = load_stage(run_dir, "flow")
        weights = checkpoint["ema"] or checkpoint["model"]
        assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    else:
        with pytest.raises(CheckpointError, match=r"written by another version of this code .*freq_patch.* "
                                                  r"delete it and retrain it with `python train.py --tiny --run .*"
                                                  r"--stage flow`"):
            load_stage(run_dir, "flow")
