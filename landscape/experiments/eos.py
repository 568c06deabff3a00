"""Cohen et al. (ICLR 2021): full-batch gradient descent runs at the edge of stability.

Under full-batch GD with step η the sharpness λ_max(∇²L) first rises (progressive sharpening) until
it reaches 2/η — the largest curvature a quadratic model lets GD descend at step η — and then
hovers just above 2/η while the loss keeps falling, non-monotonically.

``eos_experiment`` trains the same tanh MLP by plain full-batch GD (``optimizer="sgd"``,
``batch_size`` = the training subset) at several η and measures λ_max every ``curvature_every``
steps with :class:`~landscape.engine.CurvatureHook` (k = 1, warm-started Lanczos). ``eos_finalize``
writes ``summary.json`` and ``eos.png`` (loss, and sharpness against the dashed 2/η lines).

Setting (quick preset, chosen to fit a 2-core CPU in a few minutes, offline):

- data: the first 1 000 training images of ``mnist5k`` (real MNIST, standardised; Cohen: the first
  5 000 CIFAR-10 images), one full batch per step;
- model: 784 → 200 → 200 → 10, tanh, biases, **Gaussian init with std 0.03** for every weight
  matrix. Glorot init gives an initial sharpness of ≈ 179 here (> 2/η for any η that trains in
  1 000 steps: GD blows up at once); std 0.03 gives ≈ 15, so the sharpening phase is visible, as
  in Cohen et al.'s figures with PyTorch's small default init;
- loss: ½‖f(x) − e_y‖² averaged over the examples (``loss_kind="mse_onehot"``; their
  ``SquaredLoss`` divided by n);
- η ∈ {2/20, 2/30, 2/40} (Cohen: 2/30 … 2/200 on CIFAR-10, where the sharpness scale differs),
  1 000 steps, λ_max every 20 steps with 20 Lanczos iterations (warm-started from the previous top
  eigenvector; ≈ 1e-5 residuals measured at init).

The ``paper`` preset is Cohen et al.'s setting (CIFAR-10 first 5 000, 200 units, η = 2/30 … 2/200);
it needs the CIFAR-10 files and has not been run here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.experiments.base import Experiment, clean_options, finite

__all__ = ["EOS_PRESETS", "eos_experiment", "full_batch_setup", "eos_finalize", "eos_summary", "edge_of_stability"]

_MODEL_OPTIONS = {"hidden": [200, 200], "activation": "tanh", "loss_kind": "mse_onehot",
                  "init": "gaussian", "init_std": 0.03}

#: Per preset: the shared run configuration, the step sizes η and the curvature schedule.
EOS_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"config": dict(dataset="mnist5k", train_subset=1000, batch_size=1000, model="mlp",
                             width=1.0, norm="none", model_options=_MODEL_OPTIONS,
                             optimizer="sgd", steps=1000, eval_every=1000, checkpoint_every=500),
              "lrs": (2 / 20, 2 / 30, 2 / 40), "curvature_every": 20, "lanczos_iters": 20},
    "paper": {"config": dict(dataset="cifar10", train_subset=5000, batch_size=5000, model="mlp",
                             width=1.0, norm="none", model_options=_MODEL_OPTIONS,
                             optimizer="sgd", steps=10000, eval_every=1000, checkpoint_every=1000),
              "lrs": (2 / 30, 2 / 50, 2 / 100, 2 / 200), "curvature_every": 50,
              "lanczos_iters": 20},
}


def edge_of_stability(steps: Sequence[int], sharpness: Sequence[float], lr: float, *,
                      threshold: float | None = None) -> dict[str, float]:
    """Where a run's sharpness first reaches 2/η (or ``threshold``) and how it sits there afterwards.

    Args:
        steps: the measured steps (increasing).
        sharpness: λ_max at those steps (None/NaN allowed).
        lr: the step size η.

    Returns:
        ``crossing_step``: the first measured step with λ_max ≥ 2/η (NaN if none);
        ``median_ratio_after``: the median of λ_max/(2/η) over the measurements from that step on
        (Cohen et al.: "hovers just above 2/η", i.e. slightly above 1); ``fraction_within_20pct``:
        the fraction of those within [0.8, 1.2]·2/η; ``max_ratio_before``: the largest ratio before
        the crossing (all measurements when there is none).

    Example:
        >>> edge_of_stability([0, 10, 20], [1.0, 2.1, 1.9], lr=1.0)["crossing_step"]
        10.0
    """
    threshold = 2.0 / float(lr) if threshold is None else float(threshold)
    s = np.asarray([math.nan if v is None else float(v) for v in sharpness], dtype=float)
    ratio = s / threshold
    hit = np.flatnonzero(np.isfinite(ratio) & (ratio >= 1.0))
    if hit.size == 0:
        before = finite(ratio)
        return {"crossing_step": math.nan, "median_ratio_after": math.nan,
                "fraction_within_20pct": math.nan,
                "max_ratio_before": float(before.max()) if before.size else math.nan}
    first = int(hit[0])
    after, before = finite(ratio[first:]), finite(ratio[:first])
    return {"crossing_step": float(steps[first]), "median_ratio_after": float(np.median(after)),
            "fraction_within_20pct": float(np.mean((after >= 0.8) & (after <= 1.2))),
            "max_ratio_before": float(before.max()) if before.size else math.nan}


def eos_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """One run's entry: ``steps``/``sharpness``/``gradient_curvature`` (equal length, the measured
    steps), ``loss_steps``/``train_loss`` (every step), ``lr``, ``threshold`` = 2/η, the
    :func:`edge_of_stability` numbers, the final test accuracy and the divergence step."""
    lr = float(run["config"]["lr"])
    rows = sorted(run.get("curvature", []), key=lambda r: r["step"])
    critical = {int(r["step"]): r["sharpness"] for r in run.get("critical", [])}
    entry: dict[str, Any] = {
        "lr": lr, "threshold": 2.0 / lr,
        "steps": [int(r["step"]) for r in rows],
        "sharpness": [r["lambda_max"] for r in rows],
        "gradient_curvature": [r["gradient_curvature"] for r in rows],
        "critical_sharpness": [critical.get(int(r["step"])) for r in rows],
        "loss_steps": [int(r["step"]) for r in run["train"]],
        "train_loss": [r["loss"] for r in run["train"]],
    }
    entry.update(edge_of_stability(entry["steps"], entry["sharpness"], lr))
    ratio = finite(np.asarray([math.nan if c is None or s is None else c / s for c, s in
                               zip(entry["critical_sharpness"], entry["sharpness"])], float))
    entry["critical_over_sharpness_median"] = float(np.median(ratio)) if ratio.size else math.nan
    crossing = entry["crossing_step"]
    losses = np.asarray([math.nan if v is None else v for v in entry["train_loss"]], float)
    if np.isfinite(crossing):
        after = losses[np.asarray(entry["loss_steps"]) >= crossing]
        entry["fraction_loss_increases_after"] = (float(np.mean(np.diff(after) > 0))
                                                  if after.size > 1 else math.nan)
    else:
        entry["fraction_loss_increases_after"] = math.nan
    entry["initial_train_loss"] = float(losses[0]) if losses.size else math.nan
    entry["final_train_loss"] = float(losses[-1]) if losses.size else math.nan
    entry["test_accuracy"] = float(run["eval"][-1]["test_accuracy"]) if run["eval"] else math.nan
    entry["diverged_at_step"] = run["run"].get("diverged_at_step")
    return entry


_COMPARED = ("crossing_step", "median_ratio_after", "fraction_within_20pct", "max_ratio_before",
             "fraction_loss_increases_after", "final_train_loss", "critical_over_sharpness_median")


def eos_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str | None = None
                 ) -> dict[str, Any]:
    """``summary.json`` content (``models``, ``config``, flat ``comparison``) and ``eos.png``."""
    from landscape.figures import plot_eos

    models = {label: eos_summary(run) for label, run in runs.items()}
    comparison = {f"{label}_{key}": float(m[key]) for label, m in models.items()
                  for key in _COMPARED}
    crossed = [m for m in models.values() if np.isfinite(m["crossing_step"])]
    comparison["num_runs_crossing"] = float(len(crossed))
    comparison["median_ratio_after_over_runs"] = (
        float(np.median([m["median_ratio_after"] for m in crossed])) if crossed else math.nan)
    summary = {"models": models, "config": {label: run["config"] for label, run in runs.items()},
               "comparison": comparison,
               "note": ("Cohen et al. 2021: sharpness rises to 2/η and then hovers just above it "
                        "(median_ratio_after slightly > 1) while the loss keeps falling "
                        "non-monotonically. crossing_step is the first measured step with "
                        "λ_max ≥ 2/η (NaN: never within the run).")}
    plot_eos(models, title=title, path=out / "eos")
    return summary


def full_batch_setup(presets: Mapping[str, Mapping[str, Any]], preset: str,
                     overrides: Mapping[str, Any], lrs: Sequence[float] | None, *, optimizer: str,
                     name: str) -> tuple[TrainConfig, tuple[float, ...], Mapping[str, Any], dict]:
    """``(base config, step sizes, preset, overrides)`` of a full-batch experiment (eos,
    adam-eos): ``batch_size`` follows ``train_subset`` unless given; one-line ConfigErrors."""
    if preset not in presets:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of {', '.join(presets)}")
    p = presets[preset]
    overrides = clean_options(overrides)
    values = {**p["config"], **overrides}
    if "train_subset" in overrides and "batch_size" not in overrides:
        values["batch_size"] = values["train_subset"]
    base = TrainConfig(**values)
    if base.optimizer != optimizer or not base.train_subset or base.batch_size != base.train_subset:
        raise ConfigError(f"{name} needs full-batch training: optimizer={optimizer!r} and "
                          "batch_size == train_subset > 0")
    lrs = tuple(float(v) for v in (p["lrs"] if lrs is None else lrs))
    if not lrs or any(not v > 0 for v in lrs):
        raise ConfigError(f"lrs={lrs!r} must be a non-empty list of positive step sizes")
    return base, lrs, p, overrides


def eos_experiment(preset: str = "quick", *, lrs: Sequence[float] | None = None,
                   curvature_every: int | None = None, lanczos_iters: int | None = None,
                   **overrides: Any) -> Experiment:
    """Cohen et al. (2021), edge of stability: full-batch GD on a tanh MLP at several η.

    Args:
        preset: ``"quick"`` or ``"paper"`` (:data:`EOS_PRESETS`).
        lrs: the step sizes η (default: the preset's); one run ``lr{η:.4g}`` each.
        curvature_every: steps between λ_max measurements (default: the preset's).
        lanczos_iters: Lanczos iterations per measurement (default: the preset's).
        **overrides: :class:`~landscape.config.TrainConfig` fields (``batch_size`` follows
            ``train_subset`` unless given: full-batch GD).

    Example:
        >>> exp = eos_experiment(steps=200, lrs=[0.1])
        >>> run_experiment(exp, "runs/eos")   # runs/eos/summary.json, runs/eos/eos.png
    """
    base, lrs, p, overrides = full_batch_setup(EOS_PRESETS, preset, overrides, lrs,
                                               optimizer="sgd", name="eos")
    every = int(p["curvature_every"] if curvature_every is None else curvature_every)
    iters = int(p["lanczos_iters"] if lanczos_iters is None else lanczos_iters)
    runs = {f"lr{lr:.4g}": base.replace(lr=lr, tag=f"lr{lr:.4g}") for lr in lrs}

    def hooks(label: str, cfg: TrainConfig):
        from landscape.engine.hooks import CriticalSharpnessHook, CurvatureHook

        return [CurvatureHook(every=every, k=1, num_iters=iters),
                CriticalSharpnessHook(every=every, direction="update")]

    title = (f"full-batch GD, tanh MLP {tuple(base.model_options.get('hidden', ()))} on the first "
             f"{base.train_subset} {base.dataset} images, ½·MSE on one-hot targets")
    options = {"preset": preset, "lrs": list(lrs), "curvature_every": curvature_every,
               "lanczos_iters": lanczos_iters, **overrides}
    return Experiment("eos", runs, lambda out, r: eos_finalize(out, r, title=title), hooks=hooks,
                      options=clean_options(options))
