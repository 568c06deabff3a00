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

from landscape.choices import check_number
from landscape.records import FIG4_FIELDS
from landscape.config import ConfigError
from landscape.experiments.base import (Experiment, aggregate_over_seeds, final_train_loss,
                                        mean_interval, preset_config)

__all__ = ["FIG4_CLAIMS", "FIG4_FIELDS", "fig4_experiment", "fig4_finalize", "fig4_seeds_finalize",
           "fig4_summary", "fraction_below"]

# --------------------------------------------------------------------------------- Figure 4

#: The claims compared between BatchNorm and vanilla: name → (field, field subtracted or None).
FIG4_CLAIMS = {
    "fraction_steps_bn_grad_change_below_vanilla": ("grad_change_max", None),
    "fraction_steps_bn_beta_below_vanilla": ("effective_beta", None),
    "fraction_steps_bn_loss_range_below_vanilla": ("loss_max", "loss_min"),
}


def fig4_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """One model's entry of the Figure-4 ``summary.json`` from its :func:`read_run` dict.

    Equal-length arrays ``steps``, :data:`FIG4_FIELDS` (NaN → null), ``grad_change_floor`` (the
    rounding floor of each probe) and ``num_beta_excluded`` (η left out of β for being within
    ``floor_factor`` floors), plus the final ``train_loss`` (:func:`final_train_loss`),
    ``test_accuracy`` (last evaluation) and ``diverged_at_step``; with ``--curvature`` also
    ``lambda_max`` and ``gradient_curvature`` (the true smoothness beside its proxy).
    """
    from landscape.figures import summary_from_probe_rows

    probes = summary_from_probe_rows(run["probes"]) if run["probes"] else {}
    entry: dict[str, Any] = {"steps": [int(s) for s in probes.get("steps", [])]}
    for f in FIG4_FIELDS:
        entry[f] = [float(v) for v in probes.get(f, [])]
    entry["train_loss"] = final_train_loss(run)
    entry["test_accuracy"] = float(run["eval"][-1]["test_accuracy"]) if run["eval"] else math.nan
    entry["diverged_at_step"] = run["run"].get("diverged_at_step")
    by_step = {int(r["step"]): r for r in run["probes"]}
    for f in ("grad_change_floor", "num_beta_excluded"):
        entry[f] = [by_step[s].get(f, math.nan) for s in entry["steps"]]
    if run.get("curvature"):  # λ_max and gᵀHg/‖g‖² measured at the probed steps (--curvature)
        curv = {int(r["step"]): r for r in run["curvature"]}
        for f in ("lambda_max", "gradient_curvature"):
            entry[f] = [float(curv[s][f]) if s in curv else math.nan for s in entry["steps"]]
    return entry


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (Pearson correlation of the ranks; ties broken by order), NaN below 3 points."""
    if a.size < 3:
        return math.nan
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def proxy_against_curvature(entry: Mapping[str, Any]) -> dict[str, float]:
    """Does the effective β (a finite difference along −g) track the true smoothness?

    Over the steps where both are finite: the median of β_eff/λ_max and of β_eff/(gᵀHg/‖g‖²),
    and Spearman's rank correlation of β_eff with each over training. β_eff ≤ λ_max for a
    quadratic (a secant slope along one direction cannot exceed the top eigenvalue); along −g it
    equals gᵀHg/‖g‖² there, so the second ratio measures the non-quadratic part over the η range.
    """
    beta = np.asarray(entry["effective_beta"], float)
    out: dict[str, float] = {}
    for key, short in (("lambda_max", "lambda_max"), ("gradient_curvature", "gradient_curvature")):
        other = np.asarray(entry.get(key, []), float)
        ok = np.isfinite(beta) & np.isfinite(other) & (other != 0) if other.size else np.zeros(0, bool)
        out[f"median_beta_over_{short}"] = float(np.median(beta[ok] / other[ok])) if ok.any() else math.nan
        out[f"rank_correlation_beta_{short}"] = _rank_correlation(beta[ok], other[ok])
        out["points"] = int(ok.sum())
    return out


def _claims(bn: Mapping[str, Any], va: Mapping[str, Any]) -> dict[str, float]:
    """:data:`FIG4_CLAIMS` for one BN/vanilla pair of :func:`fig4_summary` entries."""
    def values(m, field, minus):
        return m[field] if minus is None else np.subtract(m[field], m[minus])

    return {name: fraction_below(bn["steps"], values(bn, f, g), va["steps"], values(va, f, g))
            for name, (f, g) in FIG4_CLAIMS.items()}


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
    from landscape.figures import plot_fig4

    models = {label: fig4_summary(run) for label, run in runs.items()}
    summary: dict[str, Any] = {"models": models,
                               "config": {label: run["config"] for label, run in runs.items()}}
    if "batchnorm" in models and "vanilla" in models:
        summary["comparison"] = _claims(models["batchnorm"], models["vanilla"])
    tracked = {label: proxy_against_curvature(m) for label, m in models.items() if "lambda_max" in m}
    if tracked:
        summary["proxy_against_true_beta"] = tracked
    diverged = {k: v["diverged_at_step"] for k, v in models.items()}
    plot_fig4(models, title=title, diverged=diverged, path=out / figure_name)
    for label, d in diverged.items():
        if d is not None:
            warnings.warn(f"{label} diverged at step {d}", RuntimeWarning, stacklevel=2)
    return summary


def fig4_seeds_finalize(out: Path, runs: dict[str, dict[str, Any]], *, seeds: Sequence[int],
                        title: str | None = None) -> dict[str, Any]:
    """Figure 4 over matched seeds: runs ``"{model}/seed{s}"`` for model in batchnorm, vanilla.

    ``models[model]`` holds the mean over seeds of every :data:`FIG4_FIELDS` array (aligned on the
    probed steps) with ``{field}_lo``/``{field}_hi`` (min/max over seeds), the mean final
    ``train_loss`` and ``test_accuracy``, the earliest divergence, and ``seeds``. Each BN-vs-vanilla
    claim (:data:`FIG4_CLAIMS`) is computed per seed (the two runs of a seed share initialisation
    and data order) and reported as the mean with a 95 % Student-t interval over seeds
    (``comparison_over_seeds``; ``comparison`` holds the means). Figures: ``fig4`` (the seed means)
    and ``fig4_seeds`` (mean and min..max band over seeds of β and of the gradient change).
    """
    from landscape.figures import plot_compare, plot_fig4

    per_seed = {label: fig4_summary(run) for label, run in runs.items()}
    models: dict[str, Any] = {}
    for model in ("batchnorm", "vanilla"):
        entries = {s: per_seed[f"{model}/seed{s}"] for s in seeds}
        entry: dict[str, Any] = {}
        for f in FIG4_FIELDS:
            agg = aggregate_over_seeds({s: (e["steps"], e[f]) for s, e in entries.items()})
            entry.setdefault("steps", agg["steps"])
            entry[f], entry[f"{f}_lo"], entry[f"{f}_hi"] = agg["mean"], agg["lo"], agg["hi"]
        entry["train_loss"] = mean_interval([e["train_loss"] for e in entries.values()])["mean"]
        entry["test_accuracy"] = mean_interval([e["test_accuracy"] for e in entries.values()])["mean"]
        diverged = [e["diverged_at_step"] for e in entries.values() if e["diverged_at_step"] is not None]
        entry["diverged_at_step"] = min(diverged) if diverged else None
        entry["seeds"] = list(seeds)
        models[model] = entry
    claims = [_claims(per_seed[f"batchnorm/seed{s}"], per_seed[f"vanilla/seed{s}"]) for s in seeds]
    over_seeds = {name: mean_interval([c[name] for c in claims]) for name in FIG4_CLAIMS}
    summary = {"models": models, "per_seed": per_seed,
               "comparison": {name: v["mean"] for name, v in over_seeds.items()},
               "comparison_over_seeds": over_seeds,
               "config": {label: run["config"] for label, run in runs.items()}}
    diverged = {k: v["diverged_at_step"] for k, v in models.items()}
    plot_fig4(models, title=f"{title} — mean over {len(seeds)} seeds", diverged=diverged,
              path=out / "fig4")
    for field, name in (("effective_beta", "effective β"), ("grad_change_max",
                                                           "max over η of ‖∇L(θ−ηg) − g‖")):
        bands = {m: {"steps": e["steps"], "mean": e[field], "lo": e[f"{field}_lo"],
                     "hi": e[f"{field}_hi"], "n": len(seeds)} for m, e in models.items()}
        plot_compare(bands, name, diverged=diverged,
                     title=f"{name}: mean (line) and min..max (band) over seeds\n{title}",
                     path=out / f"fig4_seeds_{field}")
    return summary


def fig4_experiment(preset: str = "quick", *, seeds: int = 1, curvature: bool = False,
                    curvature_iters: int = 20, **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 4: the same VGG with BatchNorm and without, matched seeds.

    Both runs share every setting (data order, initialisation seed, η grid) but the normalization.
    With ``seeds`` > 1 the pair is trained for seeds ``seed, seed + 1, …`` (runs
    ``batchnorm/seed{s}``, ``vanilla/seed{s}``): training at lr 0.1 amplifies float32 rounding, so
    one seed is one sample of a chaotic process; the summary then gives each claim's mean and 95 %
    interval over seeds (:func:`fig4_seeds_finalize`).

    With ``curvature=True`` every probe also measures the smoothness the proxy stands for, on the
    same batch and in the same BatchNorm mode (:class:`~landscape.engine.CurvatureHook`): the
    Hessian's top eigenvalue λ_max by ``curvature_iters`` warm-started Lanczos steps, and the
    curvature along the gradient gᵀHg/‖g‖². Panel (c) draws them beside the effective β and
    ``summary["proxy_against_true_beta"]`` says how well the proxy tracks them.
    """
    seeds = int(check_number("seeds", seeds, minimum=1, integer=True, error=ConfigError))
    curvature_iters = int(check_number("curvature_iters", curvature_iters, minimum=2, integer=True,
                                       error=ConfigError))
    base = preset_config(preset, **overrides)
    title = (f"{base.model} (width {base.width:g}) on {base.dataset}, lr {base.lr:g}, "
             f"η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")
    options = {"preset": preset, **overrides}
    hooks = lambda label, cfg: ()  # noqa: E731
    if curvature:
        from landscape.engine import CurvatureHook

        options.update(curvature=True, curvature_iters=curvature_iters)
        hooks = lambda label, cfg: [CurvatureHook(  # noqa: E731
            every=cfg.probe_every, at=cfg.probe_at, num_iters=curvature_iters, mode=cfg.probe_mode)]
    if seeds == 1:
        runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
                "vanilla": base.replace(norm="none", tag="vanilla")}
        return Experiment("fig4", runs, lambda out, r: fig4_finalize(out, r, title=title),
                          hooks=hooks, options=options)
    chosen = [base.seed + i for i in range(seeds)]
    runs = {f"{model}/seed{s}": base.replace(norm=norm, tag=model, seed=s)
            for model, norm in (("batchnorm", "batch"), ("vanilla", "none")) for s in chosen}
    return Experiment("fig4", runs,
                      lambda out, r: fig4_seeds_finalize(out, r, seeds=chosen, title=title),
                      hooks=hooks, options={**options, "seeds": seeds})


