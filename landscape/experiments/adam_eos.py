"""Cohen et al. (2022), "Adaptive Gradient Methods at the Edge of Stability": full-batch Adam.

With Adam the step is η P⁻¹ m, not η g, so the stability limit is about the *preconditioned*
Hessian: λ_max(P⁻¹H) rises to and hovers at the threshold of gradient descent with momentum β₁,
(2 + 2β₁)/((1 − β₁)η) = 38/η at β₁ = 0.9, while the plain λ_max(H) need not do anything in
particular (the preconditioner adapts). Here P is Cohen et al.'s (their Sec. 2):
P_t = (1 − β₁^{t+1}) (√(ν_{t+1}/(1 − β₂^{t+1})) + ε), the denominator of the step actually taken at
t, so that Adam reads θ_{t+1} = θ_t − η P_t⁻¹ m_{t+1} with the uncorrected momentum
(:func:`landscape.probes.adam_preconditioner` with ``b1``; :class:`~landscape.engine.CurvatureHook`
with ``preconditioned=True``).

``adam_eos_experiment`` trains the ``eos`` setting (tanh MLP 784-200-200-10, Gaussian init std
0.03, ½‖f − e_y‖², the first 1 000 MNIST-5k images as one full batch) with ``optax.adam`` at a few
η, measuring every ``curvature_every`` steps λ_max(H) and λ_max(P^{-1/2}HP^{-1/2}) (20 Lanczos
steps each, warm-started) and the critical sharpness along Adam's update (Kalra et al. 2026:
λ_c = 2/η_c from forward passes; :class:`~landscape.engine.CriticalSharpnessHook`).
``summary.json``: per model ``steps``, ``preconditioned_sharpness``, ``sharpness``,
``critical_sharpness``, ``lr``, ``b1``, ``threshold`` = (2 + 2β₁)/((1 − β₁)η) and the
:func:`~landscape.experiments.eos.edge_of_stability` numbers of the preconditioned sharpness over
the measurements after step 0 (at step 0 Adam's ν holds a single squared gradient and P⁻¹H is
transiently far above the threshold: ``ratio_at_step0``);
``adam_eos.png`` like ``eos.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import TrainConfig
from landscape.experiments.base import Experiment, clean_options, finite
from landscape.experiments.eos import EOS_PRESETS, edge_of_stability, full_batch_setup

__all__ = ["ADAM_EOS_PRESETS", "adam_eos_experiment", "adam_eos_finalize", "adam_eos_summary",
           "adam_threshold"]

#: Per preset: the eos setting with Adam, the step sizes and the measurement schedule.
ADAM_EOS_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"config": {**EOS_PRESETS["quick"]["config"], "optimizer": "adam", "steps": 300,
                         "eval_every": 300, "checkpoint_every": 300},
              "lrs": (1e-3, 2e-3, 4e-3), "curvature_every": 25, "lanczos_iters": 20, "b1": 0.9},
    "paper": {"config": {**EOS_PRESETS["paper"]["config"], "optimizer": "adam", "steps": 5000,
                         "eval_every": 1000, "checkpoint_every": 1000},
              "lrs": (2e-5, 4e-5, 1e-4), "curvature_every": 50, "lanczos_iters": 20, "b1": 0.9},
}


def adam_threshold(lr: float, b1: float) -> float:
    """(2 + 2β₁)/((1 − β₁)η): the stability threshold of preconditioned GD with momentum β₁.

    Example:
        >>> round(adam_threshold(1e-3, 0.9))
        38000
    """
    return (2 + 2 * b1) / ((1 - b1) * lr)


def _values(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [math.nan if r.get(key) is None else float(r[key]) for r in rows]


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)


def adam_eos_summary(run: Mapping[str, Any], b1: float) -> dict[str, Any]:
    """One run's entry (see the module docstring); ``ratio_*`` are sharpness ÷ threshold."""
    lr = float(run["config"]["lr"])
    curv = sorted(run.get("curvature", []), key=lambda r: r["step"])
    crit = {r["step"]: r for r in run.get("critical", [])}
    threshold = adam_threshold(lr, b1)
    entry: dict[str, Any] = {
        "lr": lr, "b1": b1, "threshold": threshold, "steps": [int(r["step"]) for r in curv],
        "preconditioned_sharpness": _values(curv, "preconditioned_lambda_max"),
        "sharpness": _values(curv, "lambda_max"),
        "critical_sharpness": [float(crit[r["step"]]["sharpness"]) if r["step"] in crit
                               and crit[r["step"]]["sharpness"] is not None else math.nan
                               for r in curv],
        "critical_evals": [int(crit[r["step"]]["num_evals"]) if r["step"] in crit else 0
                           for r in curv],
        "loss_steps": [int(r["step"]) for r in run["train"]],
        "train_loss": [r["loss"] for r in run["train"]],
    }
    # at t = 0, ν holds one squared gradient and (1 − β₁) scales P down ten-fold: P⁻¹H starts far
    # above any threshold and falls within a few steps (a bias-correction transient, not the AEoS)
    later = [i for i, t in enumerate(entry["steps"]) if t > 0]
    entry.update(edge_of_stability([entry["steps"][i] for i in later],
                                   [entry["preconditioned_sharpness"][i] for i in later], lr,
                                   threshold=threshold))
    entry["ratio_at_step0"] = (entry["preconditioned_sharpness"][0] / threshold
                               if entry["steps"] and entry["steps"][0] == 0 else math.nan)
    ratio = finite(_floats(entry["critical_sharpness"]) / _floats(entry["preconditioned_sharpness"]))
    entry["critical_over_preconditioned_median"] = float(np.median(ratio)) if ratio.size else math.nan
    lr_ratio = finite(_floats(entry["critical_sharpness"]) * lr / 2)  # λ_c / (2/η) = η / η_c
    entry["lr_over_critical_lr_median"] = float(np.median(lr_ratio)) if lr_ratio.size else math.nan
    plain = finite(np.asarray(entry["sharpness"]))
    entry["plain_sharpness_range"] = [float(plain.min()), float(plain.max())] if plain.size else []
    entry["final_train_loss"] = float(entry["train_loss"][-1]) if entry["train_loss"] else math.nan
    entry["diverged_at_step"] = run["run"].get("diverged_at_step")
    return entry


def adam_eos_finalize(out: Path, runs: dict[str, dict[str, Any]], *, b1: float,
                      title: str | None = None) -> dict[str, Any]:
    """``summary.json`` content and ``adam_eos.png``."""
    from landscape.figures import plot_adam_eos

    models = {label: adam_eos_summary(run, b1) for label, run in runs.items()}
    comparison = {f"{label}_{key}": float(m[key]) for label, m in models.items()
                  for key in ("crossing_step", "median_ratio_after", "fraction_within_20pct",
                              "critical_over_preconditioned_median", "lr_over_critical_lr_median")}
    crossed = [m for m in models.values() if np.isfinite(m["crossing_step"])]
    comparison["num_runs_crossing"] = float(len(crossed))
    summary = {"models": models, "config": {label: run["config"] for label, run in runs.items()},
               "comparison": comparison,
               "note": ("Cohen et al. 2022: λ_max(P⁻¹H) rises to (2+2β₁)/((1−β₁)η) = 38/η and "
                        "hovers there (median_ratio_after ≈ 1); λ_max(H) is not tied to 2/η. "
                        "critical_over_preconditioned_median: λ_c along Adam's step ÷ λ_max(P⁻¹H); "
                        "lr_over_critical_lr_median: η/η_c, how close Adam's own step is to the "
                        "step length that would raise the loss.")}
    plot_adam_eos(models, title=title, path=out / "adam_eos")
    return summary


def adam_eos_experiment(preset: str = "quick", *, lrs: Sequence[float] | None = None,
                        curvature_every: int | None = None, lanczos_iters: int | None = None,
                        **overrides: Any) -> Experiment:
    """Cohen et al. (2022): full-batch Adam (β₁ = 0.9) on the ``eos`` setting at several η.

    Example:
        >>> run_experiment(adam_eos_experiment(steps=200), "runs/adam-eos")
    """
    base, lrs, p, overrides = full_batch_setup(ADAM_EOS_PRESETS, preset, overrides, lrs,
                                               optimizer="adam", name="adam-eos")
    every = int(p["curvature_every"] if curvature_every is None else curvature_every)
    iters = int(p["lanczos_iters"] if lanczos_iters is None else lanczos_iters)
    b1 = float(p["b1"])
    runs = {f"lr{lr:.4g}": base.replace(lr=lr, tag=f"lr{lr:.4g}") for lr in lrs}

    def hooks(label: str, cfg: TrainConfig):
        from landscape.engine.hooks import CriticalSharpnessHook, CurvatureHook

        return [CurvatureHook(every=every, k=1, num_iters=iters, preconditioned=True,
                              preconditioner_options={"b1": b1}),
                CriticalSharpnessHook(every=every, direction="update")]

    title = (f"full-batch Adam (β₁ = {b1}), tanh MLP {tuple(base.model_options.get('hidden', ()))} "
             f"on the first {base.train_subset} {base.dataset} images")
    options = {"preset": preset, "lrs": list(lrs), "curvature_every": curvature_every,
               "lanczos_iters": lanczos_iters, **overrides}
    return Experiment("adam-eos", runs,
                      lambda out, r: adam_eos_finalize(out, r, b1=b1, title=title), hooks=hooks,
                      options=clean_options(options))
