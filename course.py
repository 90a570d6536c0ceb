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
"""

import torch

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
