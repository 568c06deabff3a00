"""The notebooks execute end to end (tiny settings through environment variables), and they are
what tools/make_notebooks.py writes."""

import runpy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebooks_are_what_the_generator_writes():
    """Every cell's source equals tools/make_notebooks.py's (outputs aside), so an edit to one
    without the other fails here."""
    generator = runpy.run_path(str(NOTEBOOKS.parent / "tools" / "make_notebooks.py"))["NOTEBOOKS"]
    assert sorted(generator) == sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    for name, cells in generator.items():
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        assert [(c.cell_type, c.source) for c in nb.cells] == \
               [(c.cell_type, c.source) for c in cells], name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig4_reproduction", "normalization_zoo",
                                  "curvature_and_surfaces", "normalization_in_transformers"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_NB_STEPS", "2")  # probes at steps 0 and 2, checkpoints 0–2
    monkeypatch.setenv("LANDSCAPE_NB_PROBE_EVERY", "2")
    monkeypatch.setenv("LANDSCAPE_NB_SEEDS", "1")
    monkeypatch.setenv("LANDSCAPE_NB_DATASET", "synthetic")
    # the MLP, not the notebooks' VGG-5: the same calls (build_model, train, run_experiment), a
    # fraction of the compile time; the convnet runs in the README commands
    monkeypatch.setenv("LANDSCAPE_NB_MODEL", "mlp")
    monkeypatch.setenv("LANDSCAPE_NB_NORMS", "none,batch")
    monkeypatch.setenv("LANDSCAPE_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("LANDSCAPE_NB_GRID", "3")
    monkeypatch.setenv("LANDSCAPE_NB_DEPTHS", "1,2")  # the transformer notebook (text data)
    monkeypatch.setenv("LANDSCAPE_NB_TRANSFORMER_NORMS", "layer,none")
    monkeypatch.setenv("LANDSCAPE_NB_LAYERS", "1")
    monkeypatch.setenv("LANDSCAPE_NB_ITERS", "4")
    # The kernels inherit the suite's compile flags and persistent cache (conftest.py): at these
    # settings compilation is their time. CPU seconds of each kernel, cold on 2 cores (curvature,
    # fig4, zoo; transformers, which has no VGG): VGG-5 fully optimised 98 / 59 / 45; 55, the
    # MLP fully optimised 47 / 30 / 23, the MLP with the suite's flags 21 / 12 / 12; 25.
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # a figure was shown
    assert (tmp_path / "out" / "summary.json").exists() or (tmp_path / "out" / "run").exists()
