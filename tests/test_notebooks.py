"""Notebooks: each runs top to bottom in the small setting (SEGKIT_NOTEBOOK_SMALL=1) without a cell error.

The committed notebooks are read and executed in memory (never rewritten); their outputs go to a temporary
folder through SEGKIT_NOTEBOOK_OUT. The three take 1.5 to 2.5 minutes together on 2 CPU cores (01_concepts
about 20 s, 02_training about a minute, 03_edge 20-40 s when it exports the run of 02_training), under the
3-minute mark for slow tests, so they run in the default suite.
"""
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 300


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory):
    """One output folder for the module, so 03_edge exports the run that 02_training trained, as in real use.

    03_edge trains a run of its own when it runs without 02_training.
    """
    return tmp_path_factory.mktemp("notebooks")


def execute(name, out, monkeypatch):
    """Run a notebook in the small setting from notebooks/ (as Jupyter would) and return it with its outputs."""
    monkeypatch.setenv("SEGKIT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("SEGKIT_NOTEBOOK_OUT", str(out))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first cell error
    return notebook


def outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def printed(notebook):
    """Everything the code cells printed (stdout) or returned as text."""
    parts = []
    for output in outputs(notebook):
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def image_count(notebook):
    return sum(any(kind in output.get("data", {}) for kind in ("image/png", "image/jpeg")) for output in outputs(notebook))


def number_after(label, text):
    match = re.search(re.escape(label) + r"\s*([-+0-9.e]+)", text)
    assert match, f"{label!r} not in the notebook's output"
    return float(match.group(1))


def test_committed_notebooks_have_outputs_and_stay_small():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert image_count(notebook) >= 2, f"{path.name}: committed without its figures"
        assert not any(output.output_type == "error" for output in outputs(notebook)), f"{path.name}: error output"
        assert path.stat().st_size < 1_500_000, f"{path.name}: {path.stat().st_size} bytes, keep it under 1.5 MB"


@pytest.mark.slow
def test_concepts_notebook(notebook_out, monkeypatch):
    notebook = execute("01_concepts.ipynb", notebook_out, monkeypatch)
    text = printed(notebook)
    assert "argmax (void restored) == labels: True" in text
    assert number_after("max |patch logits - FCN logits| =", text) < 1e-4
    assert "Keras 'same' == full[0:4, 0:4]: True" in text
    assert "padding 1, output_padding 1 == full[1:5, 1:5]: True" in text
    assert re.search(r"dilated 1-2-4-8-16-1\s+780\s+65\s+65\s+1", text), "dilated receptive field table"
    assert image_count(notebook) >= 9


@pytest.mark.slow
def test_training_notebook(notebook_out, monkeypatch):
    notebook = execute("02_training.ipynb", notebook_out, monkeypatch)
    text = printed(notebook)
    assert "problems: 0" in text
    assert 0.0 < number_after("best model, validation split: mIoU", text) <= 1.0
    (run,) = (notebook_out / "02_training").glob("nuclei-unet-*")
    report = run / "report-val"
    assert (report / "report.html").is_file() and (run / "curves.png").is_file()
    assert len(list((report / "overlays").glob("best_*.png"))) == len(list((report / "overlays").glob("worst_*.png"))) == 2
    assert image_count(notebook) >= 8


@pytest.mark.slow
def test_edge_notebook(notebook_out, monkeypatch):
    notebook = execute("03_edge.ipynb", notebook_out, monkeypatch)
    text = printed(notebook)
    (export,) = notebook_out.glob("*/*/export")
    assert {p.name for p in export.iterdir()} >= {"savedmodel", "model_fp32.tflite", "model_fp16.tflite",
                                                  "model_int8.tflite", "parity.csv"}
    assert number_after("SavedModel mask == Keras prediction on", text) > 99.0
    assert number_after("int8 agrees with Keras on", text) > 90.0
    assert "tflite-int8" in text and image_count(notebook) >= 2
