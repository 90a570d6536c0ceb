"""course.py: a check says pass or not yet, and never raises."""
import pytest
import torch

import course


def unsolved():
    raise NotImplementedError(course.UNSOLVED)


@pytest.mark.parametrize("test, said", [
    (lambda: None, "ok: pass"),
    (unsolved, "ok: not yet — write it in the cell above"),
    (lambda: course.expect_close(torch.ones(3), torch.zeros(3), "z"), "ok: not yet — z differs from the expected value by up to 1"),
    (lambda: course.expect_close(torch.ones(3), torch.ones(2), "z"), "ok: not yet — z has shape (3,), expected (2,)"),
    (lambda: course.expect_equal([1, 2], [1, 3], "starts"), "ok: not yet — starts is [1, 2], expected [1, 3]"),
    (lambda: 1 / 0, "ok: not yet — it raised ZeroDivisionError: division by zero"),
])
def test_check_prints_one_line_and_returns_whether_it_passed(test, said, capsys):
    assert course.check("ok", test) == said.endswith("pass")
    assert capsys.readouterr().out == said + "\n"


def test_expect_close_and_equal_accept_what_matches():
    course.expect_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7]))
    course.expect_close(0.5, torch.tensor(0.5))
    course.expect_equal(torch.arange(3), torch.arange(3))
    with pytest.raises(AssertionError):
        course.expect_equal(torch.arange(3), torch.arange(1, 4))


def test_play_shows_an_escaped_label_and_an_ogg_player_of_the_clip(monkeypatch):
    import base64
    import io
    import re

    import soundfile

    shown = []
    monkeypatch.setattr(course, "display", shown.append)
    clip = 0.5 * torch.sin(torch.arange(16000) * 0.05)
    course.play(clip, label="piano <b>&</b>")
    markup = shown[0].data
    assert markup.startswith("<div>piano &lt;b&gt;&amp;&lt;/b&gt;</div><audio controls")
    encoded = re.search(r'src="data:audio/ogg;base64,([^"]+)"', markup)[1]
    decoded, rate = soundfile.read(io.BytesIO(base64.b64decode(encoded)))
    assert rate == course.SAMPLE_RATE and len(decoded) == 16000
    assert abs(decoded.max() - 0.5) < 0.05  # the level is kept unless normalize=True
    course.play(clip, normalize=True)
    loud, _ = soundfile.read(io.BytesIO(base64.b64decode(re.search(r"base64,([^\"]+)", shown[1].data)[1])))
    assert abs(loud.max() - 1.0) < 0.1


def test_use_style_sets_the_course_dpi():
    import matplotlib.pyplot as plt
    course.use_style()
    assert plt.rcParams["figure.dpi"] == 100 and tuple(plt.rcParams["figure.figsize"]) == (10, 3)
