"""Execute every notebook top to bottom with its exercises solved, so the lessons can never rot.

FLUXMUSIC_QUICK=1 tells each notebook to shrink its training loops (a reader who runs it
without the variable gets the full-size lesson). Each exercise function (a def whose body ends in
`raise NotImplementedError`) is replaced by its answer from notebooks/solutions/<notebook>.py, and
every `course.check` must then print "pass". Outputs are not written back: the committed
notebooks keep their full-size outputs, with the exercises unsolved.
"""
import ast
import glob
import importlib.util
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


# ----------------------------------------------------------------------------- exercises

CHECKED = re.compile(r"""course\.check\(\s*["']([^"']+)["']""")


def exercises(source):
    """The functions a code cell leaves to the student: {name: (first line, last line)}, 1-based."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # an IPython magic line
        return {}
    return {node.name: (node.lineno, node.end_lineno) for node in tree.body
            if isinstance(node, ast.FunctionDef) and isinstance(node.body[-1], ast.Raise)
            and "NotImplementedError" in ast.unparse(node.body[-1])}


def solutions_path(path):
    return os.path.join(NOTEBOOK_DIR, "solutions", os.path.basename(path).replace(".ipynb", ".py"))


def answers(path):
    """{name: source} of every function in the notebook's solutions file."""
    with open(solutions_path(path)) as f:
        source = f.read()
    return {node.name: ast.get_source_segment(source, node) for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef)}


def solve(notebook, solved):
    """Put the answers into the exercise cells, in place; returns the names replaced."""
    replaced = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        for name, (first, last) in sorted(exercises(cell.source).items(), key=lambda item: -item[1][0]):
            lines[first - 1:last] = solved[name].splitlines()
            replaced.append(name)
        cell.source = "\n".join(lines)
    return replaced


def printed(notebook):
    return "\n".join(output_text(o) for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_every_notebook_has_exercises_with_answers_and_checks(path):
    notebook = nbformat.read(path, as_version=4)
    names = [name for cell in notebook.cells if cell.cell_type == "code" for name in exercises(cell.source)]
    assert len(names) >= 2, f"{os.path.basename(path)} has {len(names)} exercises; every lesson has 2-4"
    assert sorted(names) == sorted(answers(path)), \
        f"exercises {sorted(names)} and the answers in {solutions_path(path)} must name the same functions"
    checked = CHECKED.findall("\n".join(c.source for c in notebook.cells))
    assert checked, f"{os.path.basename(path)} has exercises but no course.check"
    text = printed(notebook)  # committed unsolved: each check ran and said where the student stands
    for name in checked:
        assert f"{name}: not yet" in text or f"{name}: pass" in text, f"{os.path.basename(path)}'s check {name!r} has no output"


def test_solving_replaces_exactly_the_unsolved_functions():
    cell = nbformat.v4.new_code_cell("import course\n\n\ndef f(x):\n    \"\"\"doc\"\"\"\n    raise NotImplementedError('x')\n\n\n"
                                     "def helper(y):\n    return y\n\n\nprint(f(2))")
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert solve(notebook, {"f": "def f(x):\n    return 2 * x"}) == ["f"]
    assert notebook.cells[0].source == "import course\n\n\ndef f(x):\n    return 2 * x\n\n\ndef helper(y):\n    return y\n\n\nprint(f(2))"
    assert exercises("%matplotlib inline") == {}


@pytest.mark.slow  # each trains small models in a Jupyter kernel: minutes in all
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_and_its_solved_exercises_pass(path, monkeypatch):
    monkeypatch.setenv("FLUXMUSIC_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    solve(notebook, answers(path))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOK_DIR}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    text = printed(notebook)
    assert "not yet" not in text, f"an answer fails its check: {text[text.index('not yet') - 60:][:300]}"
    for name in CHECKED.findall("\n".join(c.source for c in notebook.cells)):
        assert f"{name}: pass" in text, f"check {name!r} printed no pass"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_committed_with_outputs_and_small(path):
    assert os.path.getsize(path) < 2 * 1024 * 1024, f"{path} is over 2 MB"
    notebook = nbformat.read(path, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in code_cells), f"{path} was committed without outputs"


# ----------------------------------------------------------------------------- what GitHub shows

DRAWS = re.compile(r"\bplt\.(show|subplots|figure|plot|imshow|bar|hist|scatter)\(|\.imshow\(|\.pcolormesh\(")
HELPER = re.compile(r"^def (\w+)\(", re.MULTILINE)
# an absolute path of the machine that ran the notebook: a reader's clone has none of them
MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/Users/|/work/|/tmp/|/root/|/var/folders/|[A-Z]:\\)")


def output_text(output):
    if output.output_type == "stream":
        return output.text
    return "\n".join(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))


def plotting_helpers(cells):
    """Names of functions defined in the notebook that draw a figure."""
    names = set()
    for cell in cells:
        for name, body in zip(HELPER.findall(cell.source), re.split(r"^def \w+\(", cell.source, flags=re.MULTILINE)[1:]):
            if DRAWS.search(body):
                names.add(name)
    return names


def draws_a_figure(source, helpers):
    code = HELPER.sub("", source)  # a cell that only defines a helper draws nothing until it is called
    calls = [re.sub(r"#.*", "", line) for line in code.splitlines() if not line.startswith((" ", "\t"))]
    top_level = "\n".join(calls)
    return bool(DRAWS.search(top_level)) or any(re.search(rf"\b{name}\(", top_level) for name in helpers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_committed_notebook_shows_every_figure_and_no_errors_paths_or_progress_bars(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    helpers = plotting_helpers(cells)
    for number, cell in enumerate(cells, 1):
        where = f"{os.path.basename(path)}, code cell {number}"
        outputs = cell.get("outputs", [])
        if draws_a_figure(cell.source, helpers):
            assert any("image/png" in o.get("data", {}) for o in outputs), \
                f"{where} draws a figure but stores no image: execute it with the inline backend"
        for output in outputs:
            assert output.output_type != "error", f"{where} stores an error"
            text = output_text(output)
            assert not MACHINE_PATH.search(text), f"{where} prints an absolute path: {MACHINE_PATH.search(text)[0]}..."
            assert "%|" not in text and "it/s]" not in text, f"{where} stores a progress bar"


def test_the_figure_check_can_fail():
    helpers = plotting_helpers([nbformat.v4.new_code_cell("def show(x):\n    plt.imshow(x)\n    plt.show()")])
    assert helpers == {"show"}
    assert not draws_a_figure("def show(x):\n    plt.imshow(x)\n    plt.show()", helpers)
    assert draws_a_figure("show(mel)", helpers) and draws_a_figure("fig, ax = plt.subplots()", set())
    assert not draws_a_figure("x = 1  # plt.show() later", set())
    assert MACHINE_PATH.search("saved /work/main/runs/tiny/a.wav") and not MACHINE_PATH.search("../runs/tiny/a.wav")
