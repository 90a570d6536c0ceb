"""Execute every notebook top to bottom, so the lessons can never rot.

FLUXMUSIC_QUICK=1 tells each notebook to shrink its training loops (a reader who runs it
without the variable gets the full-size lesson). Outputs are not written back: the committed
notebooks keep their full-size outputs.
"""
import glob
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.slow  # each trains small models in a Jupyter kernel: minutes in all
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("FLUXMUSIC_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOK_DIR}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error


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
