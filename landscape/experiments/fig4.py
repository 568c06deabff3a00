"""Santurkar et al. (2018) Figure 4: the landscape probes along the gradient, BatchNorm vs vanilla.

``fig4_experiment`` trains the same VGG with and without BatchNorm (matched seeds and data order)
with the Figure-4 probe (:class:`~landscape.engine.StepProbeHook`) on the config's schedule;
``fig4_finalize`` turns any set of such runs into ``summary.json`` (``models`` → equal-length arrays)
and the three-panel figure. Other experiments (fig5, dln, compare) reuse both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.experiments.base import Experiment, final_train_loss, preset_config

__all__ = ["FIG4_FIELDS", "fig4_experiment", "fig4_finalize", "fig4_summary", "fraction_below"]

# --------------------------------------------------------------------------------- Figure 4

FIG4_FIELDS = ("loss_min", "loss_max", "grad_change_min", "grad_change_max", "effective_beta",
               "grad_norm")


def fig4_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """One model's entry of the Figure-4 ``summary.json`` from its :func:`read_run` dict.

    Equal-length arrays ``steps`` and :data:`FIG4_FIELDS` (NaN → null), plus the final
    ``train_loss`` (mean of the last 10 % of steps), ``test_accuracy`` (last evaluation),
    ``diverged_at_step`` and ``noise_floor``.
    """
    from landscape.plotting import summary_from_probe_rows

    probes = summary_from_probe_rows(run["probes"]) if run["probes"] else {}
    entry: dict[str, Any] = {"steps": [int(s) for s in probes.get("steps", [])]}
    for f in FIG4_FIELDS:
        entry[f] = [float(v) for v in probes.get(f, [])]
    entry["train_loss"] = final_train_loss(run)
    entry["test_accuracy"] = float(run["eval"][-1]["test_accuracy"]) if run["eval"] else math.nan
    entry["diverged_at_step"] = run["run"].get("diverged_at_step")
    entry["noise_floor"] = run["run"].get("noise_floor")
    return entry


def fraction_below(steps_a: Sequence[int], a: Sequence[float], steps_b: Sequence[int],
                    b: Sequence[float]) -> float:
    """Fraction of the steps probed in both runs (both values finite) at which a < b."""
    va = dict(zip((int(s) for s in steps_a), np.asarray(a, float)))
    vb = dict(zip((int(s) for s in steps_b), np.asarray(b, float)))
    pairs = [(va[s], vb[s]) for s in va.keys() & vb.keys()
             if np.isfinite(va[s]) and np.isfinite(vb[s])]
    return float(np.mean([x < y for x, y in pairs])) if pairs else math.nan


def fig4_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str | None = None,
                  figure_name: str = "fig4") -> dict[str, Any]:
    """Summary (``models`` → :func:`fig4_summary`) and the three-panel figure for any set of runs."""
    from landscape.plotting import plot_fig4

    models = {label: fig4_summary(run) for label, run in runs.items()}
    summary: dict[str, Any] = {"models": models,
                               "config": {label: run["config"] for label, run in runs.items()}}
    if "batchnorm" in models and "vanilla" in models:
        bn, va = models["batchnorm"], models["vanilla"]
        def frac(key_a, key_b=None):
            get = (lambda m: m[key_a]) if key_b is None else (
                lambda m: np.subtract(m[key_a], m[key_b]))
            return fraction_below(bn["steps"], get(bn), va["steps"], get(va))

        summary["comparison"] = {
            "fraction_steps_bn_grad_change_below_vanilla": frac("grad_change_max"),
            "fraction_steps_bn_beta_below_vanilla": frac("effective_beta"),
            "fraction_steps_bn_loss_range_below_vanilla": frac("loss_max", "loss_min"),
        }
    diverged = {k: v["diverged_at_step"] for k, v in models.items()}
    plot_fig4(models, title=title, diverged=diverged, path=out / figure_name)
    for label, d in diverged.items():
        if d is not None:
            warnings.warn(f"{label} diverged at step {d}", RuntimeWarning, stacklevel=2)
    return summary


def fig4_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 4: the same VGG with BatchNorm and without, matched seeds.

    Both runs share every setting (data order, initialisation seed, η grid) but the normalization.
    """
    base = preset_config(preset, **overrides)
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}
    title = (f"{base.model} (width {base.width:g}) on {base.dataset}, lr {base.lr:g}, "
             f"η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")
    return Experiment("fig4", runs, lambda out, r: fig4_finalize(out, r, title=title),
                      options={"preset": preset, **overrides})


