"""Long pieces: known-frame masks, the masked loss, the context inputs, RePaint's keep, windows,
and sample.py's --seconds/--then/--continue/--infill with its listening page."""
import json
import os
import re

import pytest
import soundfile
import torch

import flow
import longform
import sample
from conftest import run_script
from model import FluxMusic, FluxMusicConfig, known_tokens
from pipeline import Pipeline

MINI = FluxMusicConfig(vec_in_dim=12, context_in_dim=20, hidden_size=32, num_heads=2, depth=1,
                       depth_single_blocks=1, axes_dim=[4, 6, 6])


def test_known_frames_come_in_whole_patches_in_the_asked_mix():
    known = longform.draw_known_frames(20000, 64, longform.MaskMix(0.3, 0.2), torch.Generator().manual_seed(0))
    assert known.shape == (20000, 64)
    assert torch.equal(known[:, 0::2], known[:, 1::2])  # 2-frame patches
    assert not known.all(dim=1).any()  # something is always left to generate
    none = ~known.any(dim=1)
    prefix = known[:, 0] & ~none & (known.int().diff(dim=1) <= 0).all(dim=1)  # known then unknown, once
    span = ~none & ~prefix
    assert abs(none.float().mean() - 0.5) < 0.02 and abs(prefix.float().mean() - 0.3) < 0.02
    assert abs(span.float().mean() - 0.2) < 0.02
    assert span.any() and known[span][:, 0].all()  # a gap always has known music before it
    nothing = longform.draw_known_frames(100, 64, longform.MaskMix(0.0, 0.0))
    assert not nothing.any()


@pytest.mark.parametrize("prefix, span", [(-0.1, 0.2), (0.7, 0.5)])
def test_a_mask_mix_must_be_a_probability(prefix, span):
    with pytest.raises(ValueError, match="MaskMix"):
        longform.MaskMix(prefix, span)


def test_the_masked_loss_counts_only_the_frames_to_generate():
    g = torch.Generator().manual_seed(1)
    v, target = torch.randn(3, 8, 16, 4, generator=g), torch.randn(3, 8, 16, 4, generator=g)
    nothing = torch.zeros(3, 16, dtype=torch.bool)
    assert torch.allclose(longform.masked_flow_loss(v, target, nothing), ((v - target) ** 2).mean())
    known = torch.arange(16)[None].expand(3, -1) < 6
    changed = v.clone()
    changed[:, :, :6] += 100  # known frames: any prediction there is free
    assert torch.allclose(longform.masked_flow_loss(changed, target, known), longform.masked_flow_loss(v, target, known))
    assert torch.allclose(longform.masked_flow_loss(v, target, known), ((v - target)[:, :, 6:] ** 2).mean())


def test_context_inputs_start_at_zero_and_the_official_model_has_none():
    torch.manual_seed(0)
    model = FluxMusic(FluxMusicConfig(**{**vars(MINI), "audio_context": True})).eval()
    g = torch.Generator().manual_seed(2)
    z, x0 = torch.randn(2, 8, 8, 4, generator=g), torch.randn(2, 8, 8, 4, generator=g)
    inputs = (torch.rand(2), torch.randn(2, 5, 20, generator=g), None, torch.randn(2, 12, generator=g))
    for p in model.parameters():  # a trained-looking model, except known_in
        if p is not model.known_in.weight:
            torch.nn.init.normal_(p, std=0.1, generator=g)
    known = torch.arange(8)[None].expand(2, -1) < 4
    plain = model.velocity(z, inputs[0], inputs[1], inputs[2], inputs[3])
    with_known = model.velocity(z, *inputs, known_latent=x0, known_frames=known)
    assert torch.equal(plain, with_known)  # zero-initialised: known frames change nothing yet
    torch.nn.init.normal_(model.known_in.weight, generator=g)
    assert not torch.allclose(plain, model.velocity(z, *inputs, known_latent=x0, known_frames=known))
    nothing = torch.zeros_like(known)  # trained or not, "nothing known" is exactly text-to-music
    assert torch.equal(plain, model.velocity(z, *inputs, known_latent=x0, known_frames=nothing))
    assert not any("known_in" in name for name in FluxMusic(MINI).state_dict())  # official checkpoints load strictly
    with pytest.raises(ValueError, match="without audio_context"):
        FluxMusic(MINI).velocity(z, *inputs, known_latent=x0, known_frames=known)


def test_known_tokens_hold_the_known_patches_and_the_mask():
    x0 = torch.arange(1 * 1 * 4 * 2, dtype=torch.float32).reshape(1, 1, 4, 2) + 1
    tokens = known_tokens(x0, torch.tensor([[True, True, False, False]]))
    assert tokens.shape == (1, 2, 8)
    assert torch.equal(tokens[0, 0], torch.tensor([1., 2, 3, 4, 1, 1, 1, 1]))  # patch, then its mask
    assert torch.equal(tokens[0, 1], torch.zeros(8))  # unknown: neither values nor mask


def test_repaint_keeps_the_known_frames_and_leaves_a_frame_wise_field_alone():
    g = torch.Generator().manual_seed(3)
    noise, known_latent = torch.randn(1, 8, 10, 4, generator=g), torch.randn(1, 8, 10, 4, generator=g)
    known = (torch.arange(10) < 4)[None]
    field = lambda z, t: z - 0.5 * torch.sin(z) + t[:, None, None, None]  # each number moves on its own
    kept = flow.sample(field, noise, steps=6, keep=longform.keep_known(known_latent, known, noise))
    free = flow.sample(field, noise, steps=6)
    assert torch.equal(kept[:, :, :4], known_latent[:, :, :4])  # exactly the known frames at t = 0
    assert torch.allclose(kept[:, :, 4:], free[:, :, 4:])  # nothing else is touched when nothing couples frames
    path = flow.sample(field, noise, steps=4, keep=longform.keep_known(known_latent, known, noise), return_path=True)
    t = flow.timestep_schedule(4).tolist()[2]
    assert torch.allclose(path[2][:, :, :4], ((1 - t) * known_latent + t * noise)[:, :, :4])  # on their path


def test_windows_cover_every_unknown_frame_and_see_the_frames_before():
    calls = []

    def sample_window(part, known, start):
        calls.append((start, part.shape[2], known[0].clone()))
        return torch.where(known[:, None, :, None], part, torch.full_like(part, float(start + 1)))

    latent = torch.zeros(2, 100, 4)
    out = longform.fill(sample_window, latent, torch.zeros(100, dtype=torch.bool), window=32, overlap=8)
    assert [c[0] for c in calls] == [0, 24, 48, 68]  # the last window ends at the latent's end
    assert all(size == 32 for _, size, _ in calls)
    assert all(known[:8].all() for start, _, known in calls[1:])  # each later window sees 8 frames before
    assert (out != 0).all()
    song = torch.randn(2, 60, 4)
    gap = (torch.arange(60) < 20) | (torch.arange(60) >= 30)
    calls.clear()
    filled = longform.fill(sample_window, song, gap, window=32, overlap=8)
    assert [c[0] for c in calls] == [12] and calls[0][2].sum() == 22  # 8 before the gap, 14 after
    assert torch.equal(filled[:, gap], song[:, gap]) and (filled[:, ~gap] == 13).all()
    with pytest.raises(ValueError, match="multiples"):
        longform.fill(sample_window, torch.zeros(2, 9, 4), torch.zeros(9, dtype=torch.bool), 32, 8)
    with pytest.raises(ValueError, match="overlap"):
        longform.fill(sample_window, latent, torch.zeros(100, dtype=torch.bool), 32, 32)


def test_a_piece_starts_with_the_clip_of_its_first_caption(smoke_run):
    pipe = Pipeline(smoke_run, log=lambda message: None)
    clip = pipe.generate_latents(["a slow piano"], seconds=2.56, steps=3, seed=5)[0]
    piece = pipe.piece_latent([(0, "a slow piano"), (3.0, "fast drums")], seconds=6.4, steps=3, seed=5)
    assert piece.shape == (clip.shape[0], 160, clip.shape[2])
    faded = clip.shape[1] - longform.BLEND_FRAMES  # the second window fades over the first's last frames
    assert torch.equal(piece[:, :faded], clip[:, :faded])  # same noise, no known frames: the same clip
    assert not torch.equal(piece[:, faded:clip.shape[1]], clip[:, faded:])
    plain = pipe.piece_latent([(0, "a slow piano"), (3.0, "fast drums")], seconds=6.4, steps=3, seed=5, blend=0)
    assert torch.equal(plain[:, :clip.shape[1]], clip)
    assert pipe.flow_model.config.audio_context  # the smoke run trains with known frames
    repainted = pipe.piece_latent([(0, "a slow piano")], seconds=6.4, steps=3, seed=5, method="repaint")
    assert torch.equal(repainted[:, :faded], clip[:, :faded]) and not torch.equal(repainted[:, 64:], piece[:, 64:])


def test_sample_makes_long_pieces_continuations_and_infills_with_a_page(smoke_run, tmp_path):
    out = str(tmp_path / "out")
    common = ["--run", smoke_run, "--steps", "2", "--out", out, "--device", "cpu"]
    run_script("sample.py", "--prompt", '<script>alert("x")</script> slow piano', "--seconds", "5.12",
               "--then", "2.5", "fast & loud", *common)
    first = [f for f in os.listdir(out) if f.endswith(".wav")]
    assert len(first) == 1
    audio, rate = soundfile.read(os.path.join(out, first[0]))
    assert abs(len(audio) / rate - 5.12) < 0.01
    song = os.path.join(out, first[0])
    run_script("sample.py", "--continue", song, "--seconds", "3.2", *common)
    run_script("sample.py", "--infill", song, "--start", "1", "--end", "2", *common)
    wavs = sorted(f for f in os.listdir(out) if f.endswith(".wav"))
    assert len(wavs) == 3
    continued = [f for f in wavs if "continued" in f][0]
    assert abs(len(soundfile.read(os.path.join(out, continued))[0]) / rate - (5.12 + 3.2)) < 0.01
    infilled = [f for f in wavs if "infill" in f][0]
    assert len(soundfile.read(os.path.join(out, infilled))[0]) == len(audio)
    page = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "<script>" not in page and "&lt;script&gt;" in page and "fast &amp; loud" in page
    assert page.count("<audio") == 3 and page.count("<img") == 3
    linked = re.findall(r'src="([^"]+)"', page)
    assert sorted(linked) == sorted(wavs + [w[:-4] + ".png" for w in wavs])  # only files it wrote, by bare name
    with open(os.path.join(out, "pieces.json")) as f:
        assert len(json.load(f)) == 3
    os.remove(os.path.join(out, continued))  # a deleted piece drops off the page at the next call
    run_script("sample.py", "--prompt", "piano", *common)
    assert open(os.path.join(out, "index.html"), encoding="utf-8").read().count("<audio") == 3


@pytest.mark.parametrize("args, message", [
    (["--infill", "x.wav"], "needs --start and --end"),
    (["--start", "1", "--end", "2"], "go with --infill only"),
    (["--then", "soon", "piano"], "SECONDS must be a positive number"),
    (["--then", "3", "piano", "--then", "2", "drums", "--seconds", "6"], "go forward in time"),
    (["--then", "9", "piano", "--seconds", "6"], "past the end of a 6 s piece"),
])
def test_sample_rejects_bad_long_form_options(smoke_run, tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as stop:  # in-process: the same main() as the command line, no start-up
        sample.main(["--run", smoke_run, "--out", str(tmp_path), "--steps", "1", *args])
    assert stop.value.code != 0 and message in capsys.readouterr().err.strip().splitlines()[-1]


def test_sample_names_a_bad_infill_span_and_an_unreadable_song(smoke_run, tmp_path, capsys):
    song = tmp_path / "song.wav"
    soundfile.write(song, torch.zeros(16000 * 2).numpy(), 16000)
    with pytest.raises(SystemExit) as stop:
        sample.main(["--run", smoke_run, "--infill", str(song), "--start", "1", "--end", "9", "--steps", "1"])
    assert stop.value.code == 1 and "the song's 2.00 s" in capsys.readouterr().err
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(SystemExit) as stop:
        sample.main(["--run", smoke_run, "--continue", str(tmp_path / "bad.wav"), "--steps", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "cannot read audio file" in err and "bad.wav" in err


def test_the_long_form_judge_measures_seams_silence_and_agreement():
    import evaluate_long
    mel = torch.zeros(100, 64)
    mel[60:] = 3.0  # one jump of 3 at frame 60
    flux = evaluate_long.spectral_flux(mel)
    assert flux[60] == 3.0 and flux.sum() == 3.0
    assert evaluate_long.seam(mel, [58, 30]) == (1.5, 3.0)  # within 2 frames of 58; nothing near 30
    rate = 16000
    audio = torch.cat([torch.zeros(rate), 0.1 * torch.ones(rate)])  # 1 s of silence, 1 s at -20 dBFS
    assert evaluate_long.silent_fraction(audio) == 0.5
    posteriors = {name: torch.eye(4)[[0, 0, 1, 0, 0, 0]] for name in ("instrument", "tempo", "mode", "drums")}
    assert evaluate_long.agreement(posteriors, 3) == 0.75  # piece 1: windows 2, 3 = 1st? no, yes; piece 2: yes, yes
    clips, count = evaluate_long.windows(torch.randn(2, evaluate_long.WINDOW_SAMPLES * 3 + 5))
    assert clips.shape == (6, evaluate_long.WINDOW_SAMPLES) and count == 3


def test_windows_name_each_start_and_the_frame_where_its_new_music_begins():
    known = (torch.arange(300) < 100) | (torch.arange(300) >= 180)  # a gap of frames 100-179
    assert longform.windows(known, 64, 16) == [(84, 100), (132, 148)]
    assert longform.window_starts(known, 64, 16) == [84, 132]
    from_nothing = longform.windows(torch.zeros(200, dtype=torch.bool), 64, longform.default_overlap(64))
    assert from_nothing == [(0, 0), (32, 64), (64, 96), (96, 128), (128, 160), (136, 192)]


def test_fill_remakes_the_last_blend_frames_and_fades_from_the_old_to_the_new():
    given = []

    def sample_window(part, known, start):  # window k writes the number k into its unknown frames
        given.append(known[0].clone())
        return torch.where(known[:, None, :, None], part, torch.full_like(part, float(len(given))))

    latent = longform.fill(sample_window, torch.zeros(1, 12, 2), torch.zeros(12, dtype=torch.bool), 8, 4, blend=2)
    assert given[1].tolist() == [True, True, False, False, False, False, False, False]  # frames 4-11, 6-7 remade
    expected = torch.tensor([1, 1, 1, 1, 1, 1, 4 / 3, 5 / 3, 2, 2, 2, 2])
    assert torch.allclose(latent[0, :, 0], expected)
    assert torch.equal(longform.fill(sample_window, torch.zeros(1, 12, 2), torch.zeros(12, dtype=torch.bool), 8, 4)[0, :, 0],
                       torch.tensor([3.0] * 8 + [4.0] * 4))  # blend 0: each window's own frames, no fade
    with pytest.raises(ValueError, match="blend"):
        longform.fill(sample_window, torch.zeros(1, 12, 2), torch.zeros(12, dtype=torch.bool), 8, 4, blend=6)
    given.clear()  # a song's own frames (0-5 known from the start) are never remade or faded
    song = torch.full((1, 12, 2), -1.0)
    kept = longform.fill(sample_window, song, torch.arange(12) < 6, 8, 4, blend=2)
    assert given[0].tolist() == [True, True, True, True, False, False, False, False]  # frames 2-9: no fade
    assert torch.equal(kept[0, :6, 0], song[0, :6, 0])
    assert torch.allclose(kept[0, 6:, 0], torch.tensor([1, 1, 4 / 3, 5 / 3, 2, 2]))  # window 2 fades over window 1
