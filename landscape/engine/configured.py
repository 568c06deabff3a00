"""``train(config, workdir)``: a :class:`~landscape.config.TrainConfig` run, as one adapter over
:func:`landscape.engine.fit`'s loop (:func:`~landscape.engine.fit.run_job`).

The config names a model (built in, or a user's ``"module:factory"``), a dataset, a loss (the
model's ``loss_kind``) and an optimizer; this module turns them into the engine's components:
the model's pure loss through :mod:`landscape.bridge` (batch statistics, the noise key of
``noisy_batch``), the minibatch :func:`landscape.data.batch_at` (seed, t) cast to the run's
dtype, the test-set evaluation, the learning-rate schedule and the Figure-4 hook the config asks
for. Records, checkpoints and resume are the engine's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from flax import nnx

from landscape import bridge, data as data_lib
from landscape.config import ConfigError, TrainConfig
from landscape.engine.fit import Job, run_job
from landscape.engine.hooks import Hook, Measurement, MeasurementHook, Schedule, StepProbeHook
from landscape.engine.objective import Objective
from landscape.engine.state import build_optimizer, lr_schedule
from landscape.models import build_model

__all__ = ["BridgeObjective", "TrainResult", "build_config_model", "config_job", "default_hooks",
           "load_run_data", "train"]


class TrainResult(NamedTuple):
    """What :func:`train` returns (everything is also on disk in ``workdir``)."""

    params: Any
    state: Any
    opt_state: Any
    model: nnx.Module  # the config's model, holding the final parameters and statistics
    workdir: Path
    diverged_at_step: int | None


class BridgeObjective(Objective):
    """The :class:`~landscape.engine.objective.Objective` of a toolkit-style NNX model: its pure
    loss through :mod:`landscape.bridge` (``__call__(x, *, use_running_average, rng)``, the loss
    named by ``loss_kind``), batches ``(x, y)``, the metric ``accuracy``; the probes' batch is
    :func:`landscape.bridge.make_batch`'s dict. The noise key is passed only when ``uses_noise``."""

    def __init__(self, model: nnx.Module, *, uses_noise: bool = False):
        self._objective = bridge.make_train_objective(model)
        self._model, self.uses_key = model, uses_noise
        self.state = bridge.split(model)[2]

    def probe_batch(self, batch, state, key):
        x, y = batch
        return bridge.make_batch(x, y, state, key if self.uses_key else None)

    def train(self, params, state, batch, key):
        loss, (new_state, acc) = self._objective(params, self.probe_batch(batch, state, key))
        return loss, (new_state, {"accuracy": acc})

    def loss_fn(self, mode="batch_stats"):
        return bridge.make_loss_fn(self._model, mode=mode)


def load_run_data(config: TrainConfig) -> tuple[Any, Any, tuple[int, ...], int]:
    """``(train_data, test_data, input_shape, num_classes)`` for ``config`` (``dln``: regression;
    ``train_subset`` N > 0 keeps the first N training examples, e.g. for full-batch GD)."""
    if config.dataset == "dln":
        x, y, _ = data_lib.make_dln_regression(seed=config.seed)
        return (x, y), (x, y), (x.shape[1],), y.shape[1]
    ds = data_lib.load_dataset(config.dataset, config.data_dir, download=config.download,
                               seed=config.seed, context=config.model_options.get("context"))
    if config.train_subset:
        if config.train_subset > len(ds.x_train):
            raise ConfigError(f"train_subset={config.train_subset} exceeds the {len(ds.x_train)} "
                              f"training examples of {config.dataset}")
        ds = ds._replace(x_train=ds.x_train[:config.train_subset],
                         y_train=ds.y_train[:config.train_subset])
    return ds, (ds.x_test, ds.y_test), ds.input_shape, ds.num_classes


def build_config_model(config: TrainConfig, input_shape: Sequence[int],
                       num_classes: int) -> nnx.Module:
    """The NNX model ``config`` describes; bad model or normalization options → ConfigError."""
    from landscape.normalization import NormalizationError

    try:
        return build_model(config.model, norm=config.norm, input_shape=input_shape,
                           num_classes=num_classes, width=config.width, seed=config.seed,
                           norm_options=config.norm_options, **config.model_options)
    except ConfigError:
        raise
    except NormalizationError as e:
        raise ConfigError(f"norm_options: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model_options for {config.model!r}: {e}") from None


def default_hooks(config: TrainConfig) -> list[Hook]:
    """The hooks a config asks for itself: the Figure-4 probe when ``probe_every``/``probe_at``."""
    if not config.probes_enabled():
        return []
    from landscape.probes import lr_multiples

    steps = lr_multiples(config.lr, config.step_size_lo, config.step_size_hi, config.num_step_sizes)
    return [StepProbeHook(step_sizes=steps, schedule=Schedule(config.probe_every, tuple(config.probe_at)),
                          mode=config.probe_mode, strategy=config.probe_strategy,
                          tag=config.tag or config.norm)]




def _as_inputs(x: Any, dtype: str) -> np.ndarray:
    """Floating inputs in the run's dtype; integer inputs (token ids) left as they are."""
    x = np.asarray(x)
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x


def _batch_size(config: TrainConfig, train_data: Any) -> int:
    if config.dataset == "dln":
        return len(train_data[0])  # full-batch gradient descent, as in the paper
    if config.batch_size > len(train_data.x_train):
        raise ConfigError(f"batch_size={config.batch_size} exceeds the "
                          f"{len(train_data.x_train)} training examples")
    return config.batch_size


def config_job(config: TrainConfig, measurements: Sequence[Measurement] = (),
               hooks: Sequence[Hook] = ()) -> tuple[Job, list[Hook]]:
    """The engine's :class:`~landscape.engine.fit.Job` for ``config`` and its hooks (the config's
    own Figure-4 hook, the measurements, then ``hooks``); validates data and model first."""
    train_data, test_data, input_shape, num_classes = load_run_data(config)
    batch_size = _batch_size(config, train_data)
    model = build_config_model(config, input_shape, num_classes)  # bad options fail here
    if config.dtype != "float32":
        bridge.cast(model, config.dtype)
    x_test, y_test = test_data

    def batch(step: int):
        x, y = data_lib.batch_at(train_data, step, batch_size, seed=config.seed)
        return _as_inputs(x, config.dtype), np.asarray(y)

    def evaluate(params, state):
        loss, acc = bridge.evaluate(model, params, state, _as_inputs(x_test, config.dtype), y_test,
                                    batch_size=config.eval_batch_size)
        return {"test_loss": loss, "test_accuracy": acc}

    job = Job(BridgeObjective(model, uses_noise=config.norm == "noisy_batch"),
              bridge.split(model)[1], build_optimizer(config), batch, config.steps,
              config.to_dict(), seed=config.seed, checkpoint_every=config.checkpoint_every,
              keep_checkpoints=config.keep_checkpoints, eval_every=config.eval_every,
              evaluate=evaluate, lr=lr_schedule(config), tag=config.tag or config.norm,
              stop_on_divergence=config.stop_on_divergence,
              info={"input_shape": list(input_shape), "num_classes": int(num_classes)},
              model=model, config=config)
    all_hooks = default_hooks(config) + [MeasurementHook(m) for m in measurements] + list(hooks)
    return job, all_hooks


def train(config: TrainConfig, workdir: str | Path, *, measurements: Sequence[Measurement] = (),
          hooks: Sequence[Hook] = (), **options: Any) -> TrainResult:
    """Train ``config``'s model, running the due hooks at every step, checkpointing and resuming.

    The config path of :func:`landscape.engine.fit`: the same loop, records and resume, with the
    model, data, loss, optimizer and Figure-4 hook the config names (:func:`config_job`).

    Args:
        config: a validated :class:`TrainConfig` (its probe settings add a :class:`StepProbeHook`;
            ``dtype="float64"`` runs the whole run, probes included, in JAX's x64 mode;
            ``matmul_precision`` sets ``jax_default_matmul_precision`` for all of it).
        workdir: the run's folder (created; an existing run with the same config is resumed, one
            with a different config is refused with :class:`RunExistsError`).
        measurements: host-side :class:`Measurement` s (the pre-hook API).
        hooks: extra :class:`Hook` s, e.g. a curvature probe every N steps.
        options: :func:`~landscape.engine.fit.run_job`'s — ``progress`` (a tqdm bar, updated once
            per block of ``sync_every`` steps), ``on_step(step, row)``, ``tensorboard`` (also write
            every record to ``workdir/tensorboard``), ``sync_every``, ``devices`` (data parallel:
            the state replicated, each minibatch split over the devices; BatchNorm uses the
            global batch's statistics; recorded in ``run.json``).

    Returns:
        :class:`TrainResult`.

    Example:
        >>> cfg = TrainConfig(dataset="synthetic", model="mlp", steps=20, probe_every=5)
        >>> result = train(cfg, "runs/demo", progress=False)
    """
    from landscape.engine.rundir import RunDir

    with config.arithmetic():
        RunDir(workdir, config.to_dict()).check()  # another run's folder: refused before the data
        job, all_hooks = config_job(config, measurements, hooks)
        result = run_job(job, workdir, hooks=all_hooks, **options)
    nnx.update(job.model, result.params, result.state)
    return TrainResult(result.params, result.state, result.opt_state, job.model, result.workdir,
                       result.diverged_at_step)
