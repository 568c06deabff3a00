"""Run folders: ``train(config, workdir)``, :func:`read_run` and :func:`restore_model`.

``train`` is :func:`landscape.engine.train`, the config adapter over :func:`landscape.engine.fit`
(explicit state, one compiled step, hooks, records, checkpoints, resume).

A run's folder (``workdir``) holds:

- ``config.json`` — the :class:`~landscape.config.TrainConfig`,
- ``train.jsonl`` — one line per step: ``step``, ``loss``, ``accuracy``, ``lr`` (minibatch, train mode),
- ``eval.jsonl`` — one line per evaluation: ``step``, ``test_loss``, ``test_accuracy`` (eval mode),
- ``probes.jsonl`` — one line per probe: ``step``, ``tag`` and every :class:`~landscape.probes.StepProbe`
  field (plus the band summaries and ``grad_norm_per_layer``),
- ``{name}.jsonl`` — one line per result of every other hook or measurement,
- ``run.json`` — ``final_step``, ``diverged_at_step``, ``seconds``, ``devices``, the model's
  ``input_shape`` and ``num_classes``,
- ``checkpoints/`` — Orbax checkpoints of ``(params, state, opt_state)`` and the hooks' carries every
  ``checkpoint_every`` steps and at the end; a new call with the same ``workdir`` resumes.

Step t uses the minibatch :func:`landscape.data.batch_at` (seed, t) and the noise key
``fold_in(key(seed), t)``, so a resumed run repeats an uninterrupted one exactly. A probe at step t
measures θ_t (before update t) on step t's own minibatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flax import nnx

from landscape import bridge
from landscape.config import ConfigError, TrainConfig
from landscape.engine.hooks import Measurement, Schedule, StepContext, probe_record
from landscape.engine.configured import (TrainResult, build_config_model, default_hooks, load_run_data,
                                   train)
from landscape.engine.rundir import RunExistsError, restore_checkpoint
from landscape.engine.state import build_optimizer
from landscape.records import read_records

__all__ = ["restore_model", "Measurement", "StepContext", "Schedule", "TrainResult",
           "build_optimizer", "build_config_model", "default_hooks", "load_run_data",
           "probe_record", "read_run", "train", "RunExistsError"]


def read_run(workdir: str | os.PathLike) -> dict[str, Any]:
    """Everything a run folder holds: ``config``, ``run`` info, and every ``*.jsonl`` record file by stem."""
    workdir = Path(workdir)
    out: dict[str, Any] = {}
    cfg = workdir / "config.json"
    out["config"] = json.loads(cfg.read_text()) if cfg.exists() else None
    info = workdir / "run.json"
    out["run"] = json.loads(info.read_text()) if info.exists() else {}
    for name in ("train", "eval", "probes"):
        out[name] = read_records(workdir / f"{name}.jsonl")
    for path in sorted(workdir.glob("*.jsonl")):  # measurements
        out.setdefault(path.stem, read_records(path))
    return out


def restore_model(workdir: str | os.PathLike, *, step: int | None = None) -> nnx.Module:
    """The NNX model of a run folder with the parameters and statistics of a checkpoint.

    ``step=None`` takes the latest checkpoint. Raises :class:`~landscape.config.ConfigError` when the
    folder has no configuration or checkpoint, or when the checkpoint does not fit the model.

    Example:
        >>> model = restore_model("runs/fig4/batchnorm")
        >>> model.eval()  # ready for inference with running statistics
    """
    workdir = Path(workdir).absolute()
    cfg_path = workdir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{workdir} holds no run (config.json missing)")
    config = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    info_path = workdir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if "input_shape" in info and "num_classes" in info:  # saved by the run: no dataset needed
        input_shape, num_classes = tuple(info["input_shape"]), int(info["num_classes"])
    else:  # a run folder from before landscape saved the shapes
        _, _, input_shape, num_classes = load_run_data(config)
    model = build_config_model(config, input_shape, num_classes)
    if config.dtype != "float32":  # a float64 run: restore under jax.enable_x64(True)
        bridge.cast(model, config.dtype)
    _, params, state = bridge.split(model)
    opt_state = build_optimizer(config).init(params)
    target = {"params": params, "state": state, "opt_state": opt_state}
    restored = restore_checkpoint(workdir, target, step)
    nnx.update(model, restored["params"], restored["state"])
    return model
