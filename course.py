"""Exercises: the student writes a small function, a check compares it with the project's code.

Every notebook has a few exercises. An exercise cell holds the signature and docstring of one small
function the lesson has just explained, with a body that says "your code here":

    def euler_sample(velocity_fn, noise, steps):
        ...
        raise NotImplementedError("your code here")

and the cell after it checks the function against the project's own (flow.sample) or against a
closed form (a point mass, where one Euler step is exact):

    course.check("euler_sample", lambda: course.expect_close(euler_sample(v, z, 4), flow.sample(v, z, 4)))

which prints `euler_sample: pass`, or `euler_sample: not yet — ...` with what differs, and never
stops the notebook, so a student can run it top to bottom before solving anything. The answers live
in notebooks/solutions/<notebook>.py; tests/test_notebooks.py puts them into the exercise cells and
runs every notebook, so an answer that stops matching the project fails the tests.

Two helpers give every lesson one look: `use_style()` (figures at 100 dpi, readable titles and
labels) and `play(audio)` (a player holding the clip as Ogg Vorbis, about a tenth of a WAV's bytes,
so a notebook can keep its players and its figures under GitHub's comfortable size).

References: the exercise-and-check form follows d2l.ai (Zhang et al., *Dive into Deep Learning*) and
Karpathy's *Neural Networks: Zero to Hero*, where the student types the core of each lesson.
"""

import base64
import html
import io

import matplotlib.pyplot as plt
import numpy as np
import soundfile
import torch
from IPython.display import HTML, display

from audio import SAMPLE_RATE

STYLE = {"figure.dpi": 100, "figure.figsize": (10, 3), "axes.titlesize": 10, "axes.labelsize": 9,
         "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 11,
         "image.interpolation": "nearest"}

UNSOLVED = "your code here"


def check(name, test):
    """Run test(), which raises if the student's function is wrong; print one line and return
    whether it passed. An unwritten exercise, a wrong value and a crash all say "not yet"."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not yet — write it in the cell above")
        return False
    except AssertionError as error:
        print(f"{name}: not yet — {error}")
        return False
    except Exception as error:  # a student's bug should not stop the lesson: say what it raised
        print(f"{name}: not yet — it raised {type(error).__name__}: {error}")
        return False
    print(f"{name}: pass")
    return True


def expect_close(mine, reference, what="the result", atol=1e-5, rtol=1e-4):
    """Assert two tensors (or numbers) have one shape and agree to a tolerance, saying how they differ."""
    mine, reference = torch.as_tensor(mine), torch.as_tensor(reference)
    if mine.shape != reference.shape:
        raise AssertionError(f"{what} has shape {tuple(mine.shape)}, expected {tuple(reference.shape)}")
    mine, reference = mine.double(), reference.double()
    if not torch.allclose(mine, reference, atol=atol, rtol=rtol):
        worst = (mine - reference).abs().max().item()
        raise AssertionError(f"{what} differs from the expected value by up to {worst:.3g}")


def expect_equal(mine, reference, what="the result"):
    """Assert two values are equal (lists, numbers, tensors with torch.equal)."""
    same = torch.equal(mine, reference) if isinstance(reference, torch.Tensor) and isinstance(mine, torch.Tensor) \
        else mine == reference
    if not same:
        raise AssertionError(f"{what} is {short(mine)}, expected {short(reference)}")


def short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def use_style():
    """The course's figure style: 100 dpi, a 10-inch default width (what GitHub shows without
    shrinking), 8-11 pt text."""
    plt.rcParams.update(STYLE)


def play(audio, label=None, rate=SAMPLE_RATE, normalize=False):
    """Show an audio player for a waveform (any shape with one clip's samples), with an optional
    label above it. normalize=True scales the peak to 1 (quiet clips become audible); the default
    keeps the level, so clips can be compared by loudness. Samples beyond [-1, 1] are clipped."""
    samples = torch.as_tensor(audio).detach().float().reshape(-1).numpy()
    if normalize:
        samples = samples / max(float(np.abs(samples).max()), 1e-8)
    encoded = io.BytesIO()
    soundfile.write(encoded, np.clip(samples, -1.0, 1.0), rate, format="OGG", subtype="VORBIS")
    source = base64.b64encode(encoded.getvalue()).decode("ascii")
    title = f"<div>{html.escape(label)}</div>" if label else ""
    display(HTML(f'{title}<audio controls preload="none" src="data:audio/ogg;base64,{source}"></audio>'))
