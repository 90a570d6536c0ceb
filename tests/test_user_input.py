"""What a user types and the folders a user brings, through the command lines: ordinary
mistakes get one line that names the problem and the fix (never a traceback), and one bad
entry never costs the whole folder."""
import json
import os

import pytest
import soundfile
import torch

from audio import save_wav
from conftest import run_script
from data import MIN_TRAIN_WINDOWS

FAST_SAMPLING = ("--steps", "1", "--seconds", "0.64", "--griffin-lim", "--device", "cpu")


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.slow  # runs train.py in another process
@pytest.mark.parametrize("files, seconds, says", [
    (1, 10.0, "only 1 usable captioned file"),  # four windows, but no second file to hold out
    (MIN_TRAIN_WINDOWS, 1.0, f"leave {MIN_TRAIN_WINDOWS - 1} windows of 2.56 s to train on"),  # one held out
])
def test_train_refuses_a_folder_with_far_too_few_files_or_windows_in_one_line(tmp_path, captioned_folder, files,
                                                                            seconds, says):
    folder, _ = captioned_folder(tmp_path / "few", files, seconds=seconds)
    result = run_script("train.py", "--smoke", "--data", str(folder), "--run", str(tmp_path / "run"),
                        "--device", "cpu", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = stderr_lines(result)
    assert line.startswith(f"{folder}: only ") and says in line
    assert line.endswith("add more captioned audio to the folder")


@pytest.mark.slow  # runs train.py in another process
def test_train_skips_bad_entries_with_one_warning_and_trains_on_the_rest(tmp_path, captioned_folder):
    folder, _ = captioned_folder(tmp_path / "mine", 5)
    (folder / "clip0.txt").write_bytes("une m\u00e9lodie".encode("latin-1"))  # a caption saved as Latin-1
    lines = [json.dumps({"file": f"clip{i}.wav", "caption": f"a tone, number {i}"}) for i in range(1, 3)]
    lines[1:1] = ['{"file": "clip1.wav", "caption": "unfinished', '{"file": "gone.wav", "caption": "a tone"}']
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "extra.wav").write_bytes(b"RIFF, but not audio")
    (folder / "extra.txt").write_text("never heard")
    noise = torch.Generator().manual_seed(0)
    for i in range(3):  # three more good clips, so that what is left still trains
        save_wav(str(folder / f"more{i}.wav"), 0.3 * torch.randn(16000, generator=noise))
        (folder / f"more{i}.txt").write_text(f"noise, number {i}")
    run_dir = str(tmp_path / "run")
    result = run_script("train.py", "--smoke", "--data", str(folder), "--run", run_dir, "--stage", "vae",
                        "--device", "cpu")
    assert "Traceback" not in result.stderr and os.path.exists(os.path.join(run_dir, "vae.pt"))
    skipped = [line for line in stderr_lines(result) if "skipped 4 of" in line]  # once, though read twice
    assert len(skipped) == 1, result.stderr
    assert "1 with invalid metadata, 1 missing, 1 with a non-UTF-8 caption, 1 unreadable" in skipped[0]
    assert f"the first: {folder / 'clip0.txt'}: not UTF-8" in skipped[0]


@pytest.mark.slow  # runs train.py in another process
def test_train_data_naming_a_file_is_a_one_line_error(tmp_path):
    not_a_folder = tmp_path / "metadata.jsonl"
    not_a_folder.write_text('{"file": "song.wav", "caption": "a tune"}\n')
    result = run_script("train.py", "--smoke", "--data", str(not_a_folder), "--run", str(tmp_path / "run"),
                        check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"--data {not_a_folder}: is a file, not a folder" in stderr_lines(result)[-1]


@pytest.mark.slow  # runs sample.py in another process
def test_several_prompts_with_out_song_wav_write_numbered_files(smoke_run, tmp_path):
    prompts = tmp_path / "captions.txt"
    prompts.write_text("A slow organ piece, no drums.\n\nA fast guitar tune with drums.\n")
    out = tmp_path / "song.wav"
    result = run_script("sample.py", "--run", smoke_run, "--prompts-file", str(prompts), "--out", str(out),
                        *FAST_SAMPLING)
    for i in (1, 2):
        wav, png = tmp_path / f"song_{i}.wav", tmp_path / f"song_{i}.png"
        assert len(soundfile.read(wav)[0]) == 64 * 160 and png.stat().st_size > 0
        assert str(wav) in result.stdout and str(png) in result.stdout
    assert not out.exists() and sorted(os.listdir(tmp_path)) == [  # and the listening page of both
        "captions.txt", "index.html", "pieces.json", "song_1.png", "song_1.wav", "song_2.png", "song_2.wav"]
    # one prompt still writes exactly the file it was given
    run_script("sample.py", "--run", smoke_run, "--prompt", "A slow organ piece.", "--out", str(out), *FAST_SAMPLING)
    assert out.exists() and not (tmp_path / "song_3.wav").exists()
