"""`landscape reproduce surfaces` on tiny settings: files, summary keys, the slice's centre."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from landscape import bridge
from landscape.data import batch_at, make_synthetic
from landscape.cli import main
from landscape.experiments import EXPERIMENTS
from landscape.experiments.surfaces import SURFACE_SETTINGS
from images import is_blank
from landscape.probes import load_surface
from landscape.reproduce import run_experiment
from landscape.train import restore_model


@pytest.mark.slow
def test_surfaces_experiment_tiny(tmp_path):
    exp = EXPERIMENTS["surfaces"]("quick", dataset="synthetic", width=0.125, steps=20,
                                  batch_size=16, eval_every=0, grid=5, interp_points=9)
    assert exp.runs["vanilla"].checkpoint_every == 2 and exp.runs["vanilla"].probe_every == 0
    summary = run_experiment(exp, tmp_path, progress=False)
    assert set(summary["models"]) == {"batchnorm", "vanilla"}
    for label, entry in summary["models"].items():
        for key in ("train_loss", "surface_min", "surface_max", "ring_increase_0.5",
                    "interpolation_monotone", "pca_explained_variance", "loss_at_centre"):
            assert key in entry, key
        assert entry["checkpoint_steps"] == list(range(2, 21, 2))  # all 10 kept
        assert entry["mode"] == "batch_stats"
        assert 0 < sum(entry["pca_explained_variance"]) <= 1 + 1e-9
        surface, record = load_surface(tmp_path / "surfaces" / f"{label}_random2d")
        assert record["meta"]["mode"] == "batch_stats" and surface.loss.shape == (5, 5)
        # the centre of the slice is the trained model's loss on the surface batch (step 20's)
        model = restore_model(tmp_path / label)
        _, params, state = bridge.split(model)
        x, y = batch_at(make_synthetic(seed=0), 20, 16, seed=0)
        loss = bridge.make_loss_fn(model)(params, bridge.make_batch(jnp.asarray(x),
                                                                   jnp.asarray(y), state))
        assert np.isclose(surface.loss[2, 2], float(loss), rtol=1e-5)
        assert np.isclose(entry["loss_at_centre"], float(loss), rtol=1e-5)
        line, _ = load_surface(tmp_path / "surfaces" / f"{label}_interpolation")
        assert np.isclose(np.interp(1.0, line.coords[0], line.loss), float(loss), rtol=1e-4)
    assert isinstance(summary["comparison"], str) and "BN" in summary["comparison"]
    for name in ("surfaces.png", "interpolation.png", "surface_batchnorm.png", "pca_vanilla.png"):
        assert (tmp_path / name).exists() and not is_blank(tmp_path / name), name
    assert json.loads((tmp_path / "summary.json").read_text())["experiment"] == "surfaces"


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
