"""`landscape reproduce surfaces` with one checkpoint (the command's tiny run, its files and the
slice's centre: tests/test_readme_commands.py::TestReproduceSurfaces)."""

import json

import numpy as np
import pytest

from landscape.cli import main
from landscape.experiments.surfaces import SURFACE_SETTINGS
from images import is_blank


@pytest.mark.slow  # an end-to-end run of the command (two VGG models)
def test_one_checkpoint_draws_what_it_can_and_says_why(tmp_path, capsys, monkeypatch):
    """The trajectory θ₀ → θ_final alone has no PCA plane: one warning line, the other panels and
    files, exit status 0 (it used to be a traceback)."""
    monkeypatch.setitem(SURFACE_SETTINGS, "quick", {"grid": 5, "interp_points": 9})
    argv = ["reproduce", "surfaces", "--dataset", "synthetic", "--width", "0.125", "--steps", "2",
            "--checkpoint-every", "2", "--batch-size", "16", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "PCA" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: surfaces: no PCA panel for "
                                                   "batchnorm, vanilla: ")
    summary = json.loads((tmp_path / "summary.json").read_text())
    for entry in summary["models"].values():
        assert entry["checkpoint_steps"] == [2] and entry["pca_explained_variance"] == []
        assert np.isfinite(entry["ring_increase_0.5"])
    assert "explain n/a (BN) and n/a (vanilla)" in summary["comparison"]
    for name in ("surfaces.png", "interpolation.png", "surface_batchnorm.png"):
        assert not is_blank(tmp_path / name), name
    assert not (tmp_path / "pca_vanilla.png").exists()
    assert not (tmp_path / "surfaces" / "vanilla_pca.npz").exists()
