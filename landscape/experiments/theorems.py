"""``landscape reproduce theory``: Theorems 4.1 and 4.2 of Santurkar et al. on a trained BN network.

Trains the Figure-4 BatchNorm model (same preset and flags), restores its final checkpoint and, on
the last training minibatch, evaluates both sides of

- Theorem 4.1 (corrected form, see :mod:`landscape.theory` for the 1/√m erratum):
  ‖∇_{y_j} L̂‖² ≤ (γ²/σ_j²)(‖∇_{y_j} L‖² − ⟨1, ∇_{y_j} L⟩²/m − ⟨∇_{y_j} L, ŷ_j⟩²/m),
- Theorem 4.2 (quadratic form of the Hessian along the gradient, first ``units`` units per layer),

at every BatchNorm layer. Writes ``theory.md`` (the table), ``summary.json`` (rows per layer) and
``theory.png`` (per layer, lhs against the corrected and the printed right-hand side).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from landscape.experiments.base import Experiment, final_train_loss, preset_config

__all__ = ["theory_experiment"]

_COLUMNS = ("layer", "m", "epsilon", "num_units", "thm41_max_rel_gap", "thm41_fraction_holds",
            "thm41_printed_violations", "thm42_units", "thm42_max_rel_gap", "thm42_fraction_holds")


def _markdown(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in _COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _finalize(out: Path, runs: dict[str, dict[str, Any]], *, units: int) -> dict[str, Any]:
    from landscape import theory
    from landscape.config import TrainConfig
    from landscape.data import batch_at
    from landscape.figures import plot_theorem_4_1
    from landscape.train import load_run_data, restore_model

    run = runs["batchnorm"]
    config = TrainConfig.from_dict(run["config"])
    model = restore_model(out / "batchnorm")
    train_data, _, _, _ = load_run_data(config)
    step = max(config.steps - 1, 0)
    x, y = batch_at(train_data, step, config.batch_size, seed=config.seed)
    rows = theory.theory_table(model, x, y, units=units)
    checks = theory.check_theorem_4_1(model, x, y)
    (out / "theory.md").write_text(
        "# Theorems 4.1 and 4.2 at every BatchNorm layer\n\n"
        f"Model: {config.model} (width {config.width:g}) after {config.steps} steps on "
        f"{config.dataset}; batch of step {step}.\n\n" + _markdown(rows), encoding="utf-8")

    plot_theorem_4_1({name: {"lhs": c.lhs, "rhs": c.rhs, "rhs_printed": c.rhs_printed, "m": c.m}
                      for name, c in checks.items()}, path=out / "theory")
    return {"models": {"batchnorm": {"train_loss": final_train_loss(run),
                                     "test_accuracy": run["eval"][-1]["test_accuracy"] if run["eval"] else None,
                                     "diverged_at_step": run["run"].get("diverged_at_step")}},
            "theory": rows, "step": step}


def theory_experiment(preset: str = "quick", *, units: int = 8, **overrides: Any) -> Experiment:
    """Train the Figure-4 BN model of ``preset`` and check Theorems 4.1/4.2 at each BN layer."""
    base = preset_config(preset, **{"probe_every": 0, **overrides})
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm")}
    return Experiment("theory", runs, lambda out, r: _finalize(out, r, units=units),
                      options={"preset": preset, "units": units, **overrides})
