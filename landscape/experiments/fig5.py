"""Santurkar et al. (2018) Figure 5: ℓp normalizations (p = 1, 2, ∞) vs BatchNorm vs none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from landscape.experiments.fig4 import fig4_finalize
from landscape.experiments.base import (Experiment, describe, layered_preset, tail_mean,
                                        training_curves)

__all__ = ["FIG5_NORMS", "FIG5_QUICK", "fig5_experiment"]



#: Figure-5 runs: label → normalization name.
FIG5_NORMS: dict[str, str] = {"vanilla": "none", "batchnorm": "batch", "lp1": "lp1", "lp2": "lp2",
                              "lpinf": "lpinf"}
#: Fig. 5 quick defaults on top of ``PRESETS["quick"]`` (five runs must fit in a few minutes).
FIG5_QUICK: dict[str, dict[str, Any]] = {"quick": dict(width=0.125, steps=200, probe_every=10,
                                                       eval_every=50, checkpoint_every=100)}


def _fig5_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str) -> dict[str, Any]:
    from landscape.figures import plot_training

    summary = fig4_finalize(out, runs, title=f"landscape probes: {title}",
                            figure_name="fig5_probes")
    curves = {label: training_curves(run) for label, run in runs.items()}
    longest = max((len(c["steps"]) for c in curves.values()), default=0)
    smooth = max(1, longest // 40)
    diverged = {k: v["diverged_at_step"] for k, v in summary["models"].items()}
    plot_training(curves, title=f"{title} (train curves: moving average of {smooth} steps)",
                  smooth=smooth, diverged=diverged, path=out / "fig5")
    for label, c in curves.items():
        summary["models"][label]["train_accuracy"] = tail_mean(c["train_accuracy"])
        summary["models"][label]["norm"] = runs[label]["config"]["norm"]
    summary["figures"] = ["fig5", "fig5_probes"]
    summary["train_smoothing_window"] = smooth
    return summary


def fig5_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 5: ℓ1, ℓ2, ℓ∞ normalization vs BatchNorm vs vanilla, matched seeds.

    Five runs identical but for the normalization (labels :data:`FIG5_NORMS`). Writes
    ``fig5.png`` (train loss, train and test accuracy; :func:`landscape.figures.plot_training`,
    train series smoothed by a trailing moving average of steps/40 steps) and ``fig5_probes.png``
    (the Figure-4 probes of all five). Quick preset: ``PRESETS["quick"]`` with width 0.125,
    200 steps, probes every 10 steps (:data:`FIG5_QUICK`) — about 3 min (170–215 s) on the
    shared 2-core CPU.
    """
    base = layered_preset(preset, FIG5_QUICK, overrides)
    runs = {label: base.replace(norm=norm, tag=label) for label, norm in FIG5_NORMS.items()}
    title = (f"{describe(base)}, η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")
    return Experiment("fig5", runs, lambda out, r: _fig5_finalize(out, r, title=title),
                      options={"preset": preset, **overrides})

