"""`landscape reproduce theory` on tiny settings, and replot from records alone."""

import json

import pytest

from images import is_blank
from landscape.reproduce import EXPERIMENTS, replot, run_experiment


@pytest.mark.slow
def test_theory_experiment_tiny(tmp_path):
    exp = EXPERIMENTS["theory"]("quick", dataset="synthetic", width=0.125, steps=4, batch_size=32,
                                checkpoint_every=4, eval_every=4, units=2)
    summary = run_experiment(exp, tmp_path, progress=False)
    rows = summary["theory"]
    assert [r["layer"] for r in rows] == ["block0", "block1", "block2", "block3"]  # every BN layer
    for r in rows:
        assert r["thm41_fraction_holds"] == 1.0  # the corrected bound holds at every unit
        assert r["thm41_max_rel_gap"] < 1e-3  # float32 equality up to ε = 1e-5 effects
        assert r["thm42_units"] == 2
    assert sum(r["thm41_printed_violations"] for r in rows) > 0  # the 1/√m misprint fails
    assert "| block0 |" in (tmp_path / "theory.md").read_text()
    assert not is_blank(tmp_path / "theory.png")
    (tmp_path / "theory.png").unlink()
    assert tmp_path / "theory.png" in replot(tmp_path)  # redrawn from checkpoint + records
    assert json.loads((tmp_path / "summary.json").read_text())["theory"] == json.loads(
        json.dumps(rows))
