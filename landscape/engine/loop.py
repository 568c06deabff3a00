"""``train(config, workdir)``: build the state, then a thin loop of step → due hooks → records.

The loop composes the other engine modules and owns no measurement: :mod:`.state` (the state and
the compiled step), :mod:`.hooks` (what is measured, when), :mod:`.sinks` (where records go),
:mod:`.rundir` (config, checkpoints, resume). It never waits for the device inside a block of
steps: losses, accuracies and hook results stay on the device and are written in blocks (every
``sync_every`` steps, and at every evaluation, checkpoint and the end), where divergence is also
detected. ``stop_on_divergence`` needs each step's loss at once and syncs every step.

Step t uses the minibatch :func:`landscape.data.batch_at` (seed, t) and the noise key
``fold_in(key(seed), t)``, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from landscape import bridge, data as data_lib, parallel, probes
from landscape.config import ConfigError, TrainConfig
from landscape.engine.hooks import (Hook, Measurement, MeasurementHook, RunContext, Schedule,
                                    StepInputs, StepProbeHook)
from landscape.engine.rundir import RESERVED_NAMES, RunDir
from landscape.engine.sinks import JsonlSink, Sinks, TensorBoardSink
from landscape.engine.state import (StepFunctions, TrainState, build_optimizer, init_train_state,
                                    lr_schedule)
from landscape.models import build_model

__all__ = ["TrainResult", "build_config_model", "default_hooks", "load_run_data", "train"]


class TrainResult(NamedTuple):
    """What :func:`train` returns (everything is also on disk in ``workdir``)."""

    params: Any
    state: Any
    opt_state: Any
    model: nnx.Module
    workdir: Path
    diverged_at_step: int | None
    noise_floor: float | None = None  # kept for old callers; the probes record their own floor


def load_run_data(config: TrainConfig) -> tuple[Any, Any, tuple[int, ...], int]:
    """``(train_data, test_data, input_shape, num_classes)`` for ``config`` (``dln``: regression;
    ``train_subset`` N > 0 keeps the first N training examples, e.g. for full-batch GD)."""
    if config.dataset == "dln":
        x, y, _ = data_lib.make_dln_regression(seed=config.seed)
        return (x, y), (x, y), (x.shape[1],), y.shape[1]
    ds = data_lib.load_dataset(config.dataset, config.data_dir, download=config.download,
                               seed=config.seed)
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


def _check_hooks(hooks: Sequence[Hook]) -> None:
    names = [h.name for h in hooks]
    if len(set(names)) != len(names) or RESERVED_NAMES & set(names):
        raise ConfigError(f"hook and measurement names must be unique and not in "
                          f"{sorted(RESERVED_NAMES)}: {names}")


def _batch_size(config: TrainConfig, train_data: Any) -> int:
    if config.dataset == "dln":
        return len(train_data[0])  # full-batch gradient descent, as in the paper
    if config.batch_size > len(train_data.x_train):
        raise ConfigError(f"batch_size={config.batch_size} exceeds the "
                          f"{len(train_data.x_train)} training examples")
    return config.batch_size


class _Loop:
    """The running part of :func:`train`: one short method per job."""

    def __init__(self, config: TrainConfig, run: RunDir, model: nnx.Module, fns: StepFunctions,
                 hooks: Sequence[Hook], carries: dict[str, Any], sinks: Sinks, data: tuple,
                 batch_size: int, sync_every: int, on_step, bar, mesh):
        self.config, self.run, self.model, self.fns, self.mesh = config, run, model, fns, mesh
        self.hooks, self.carries, self.sinks, self.bar = hooks, carries, sinks, bar
        self.train_data, self.test_data = data
        self.batch_size, self.on_step = batch_size, on_step
        self.sync_every = 1 if config.stop_on_divergence else max(1, int(sync_every))
        self.measure = {h.name: (jax.jit(h.measure) if h.jit else h.measure) for h in hooks}
        self.schedule = lr_schedule(config)
        self.pending_steps: list[tuple[int, Any]] = []       # (step, StepMetrics) on the device
        self.pending_hooks: list[tuple[Hook, int, Any]] = []  # (hook, step, result) on the device
        self.diverged: int | None = run.info.get("diverged_at_step")

    def minibatch(self, step: int):
        x, y = data_lib.batch_at(self.train_data, step, self.batch_size, seed=self.config.seed)
        return parallel.shard_batch((np.asarray(x, self.config.dtype), np.asarray(y)), self.mesh)

    def step(self, state: TrainState, step: int) -> TrainState:
        """One update; hooks due at ``step`` measure θ_t with the step's own gradient first."""
        x, y = self.minibatch(step)
        due = [h for h in self.hooks if h.due(step)]
        if not due:
            state, metrics = self.fns.train(state, x, y)
        else:
            batch, out = self.fns.gradient(state, x, y)
            inputs = StepInputs(state.step, state.params, state.model_state, state.opt_state,
                                batch, out.loss, out.grad)
            for hook in due:
                result, self.carries[hook.name] = self.measure[hook.name](
                    self.carries[hook.name], inputs)
                self.pending_hooks.append((hook, step, result))
            state = self.fns.apply(state, out)
            metrics = bridge.StepMetrics(out.loss, out.accuracy)
        self.pending_steps.append((step, metrics))
        return state

    def flush(self) -> None:
        """Fetch the block's metrics and hook results in one transfer and write their records."""
        if not self.pending_steps and not self.pending_hooks:
            return
        steps = [s for s, _ in self.pending_steps]
        metrics, results = parallel.fetch(([m for _, m in self.pending_steps],
                                           [r for _, _, r in self.pending_hooks]))
        for (hook, step, _), result in zip(self.pending_hooks, results):
            self.sinks.write(hook.name, hook.record(step, result))
        lrs = np.asarray(jax.device_get(self.schedule(np.asarray(steps))), dtype=float).reshape(-1)
        if lrs.size == 1 and len(steps) > 1:
            lrs = np.full(len(steps), lrs.item())
        for step, m, lr in zip(steps, metrics, lrs):
            row = {"step": step, "loss": float(m.loss), "accuracy": float(m.accuracy), "lr": float(lr)}
            self.sinks.write("train", row)
            if self.on_step is not None:
                self.on_step(step, row)
            if not np.isfinite(row["loss"]) and self.diverged is None:
                self.diverged = step
                warnings.warn(f"{self.config.tag or self.config.norm}: loss is {row['loss']} at "
                              f"step {step} (diverged)", RuntimeWarning, stacklevel=3)
        if metrics:
            self.bar.set_postfix(loss=f"{float(metrics[-1].loss):.3g}", refresh=False)
        self.bar.update(len(steps))
        self.pending_steps.clear()
        self.pending_hooks.clear()

    def evaluate(self, state: TrainState, done: int) -> None:
        x_test, y_test = self.test_data
        test_loss, test_acc = bridge.evaluate(self.model, state.params, state.model_state,
                                              np.asarray(x_test, self.config.dtype), y_test,
                                              batch_size=self.config.eval_batch_size)
        self.sinks.write("eval", {"step": done, "test_loss": test_loss, "test_accuracy": test_acc})

    def run_steps(self, state: TrainState, start: int, seconds_before: float) -> TrainState:
        cfg, t0 = self.config, time.perf_counter()
        for step in range(start, cfg.steps):
            state = self.step(state, step)
            done = step + 1
            evaluate = cfg.eval_every and done % cfg.eval_every == 0
            checkpoint = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
            if done == cfg.steps or evaluate or checkpoint or (done - start) % self.sync_every == 0:
                self.flush()
            stop = self.diverged is not None and cfg.stop_on_divergence
            last = done == cfg.steps or stop
            if cfg.eval_every and (evaluate or last):
                self.evaluate(state, done)
            if checkpoint or last:
                self.run.save(done, checkpoint_pieces(state, self.carries),
                              diverged_at_step=self.diverged,
                              seconds=seconds_before + time.perf_counter() - t0)
            if last:
                break
        return state


def checkpoint_pieces(state: TrainState, carries: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: params, state, opt_state and the hooks' non-empty carries."""
    pieces = {"params": state.params, "state": state.model_state, "opt_state": state.opt_state}
    kept = {name: c for name, c in carries.items() if jax.tree.leaves(c)}
    if kept:
        pieces["hooks"] = kept
    return pieces


def _hook_key(seed: int, name: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def train(config: TrainConfig, workdir: str | Path, **kwargs: Any) -> TrainResult:
    """Train ``config``'s model, running the due hooks at every step, checkpointing and resuming.

    Args:
        config: a validated :class:`TrainConfig` (its probe settings add a :class:`StepProbeHook`;
            ``dtype="float64"`` runs the whole run, probes included, in JAX's x64 mode;
            ``matmul_precision`` sets ``jax_default_matmul_precision`` for all of it).
        workdir: the run's folder (created; an existing run with the same config is resumed, one
            with a different config is refused with :class:`RunExistsError`).
        progress: show a progress bar (tqdm), updated once per block of ``sync_every`` steps.
        model: optional pre-built NNX model (default: ``build_model`` from the config).
        on_step: optional callback ``(step, row)`` for every step's train record, called when its
            block is written.
        measurements: host-side :class:`Measurement` s (the pre-hook API).
        hooks: extra :class:`Hook` s, e.g. a curvature probe every N steps.
        tensorboard: also write every record to ``workdir/tensorboard`` (needs tensorboardX).
        sync_every: steps per block between host syncs (records, progress bar, divergence check).
        devices: how many devices to train on, data-parallel (default: all JAX sees; 1: a plain
            one-device run). The state is replicated, each minibatch split over the devices
            (the batch size must divide evenly); BatchNorm uses the global batch's statistics, so
            the run equals a one-device run up to reduction order. Recorded in ``run.json``.

    Returns:
        :class:`TrainResult`.

    Example:
        >>> cfg = TrainConfig(dataset="synthetic", model="mlp", steps=20, probe_every=5)
        >>> result = train(cfg, "runs/demo", progress=False)
    """
    with config.arithmetic():
        return _train(config, workdir, **kwargs)


def run_mesh(devices: int | None, batch_size: int):
    """The run's mesh: ``devices`` devices (all when None), or None when that is one device;
    a device count or a batch size that cannot work is a one-line ConfigError."""
    if devices is None and jax.device_count() == 1:
        return None
    try:
        mesh = parallel.make_mesh(devices)
        parallel.check_divisible("batch size", batch_size, mesh)
    except parallel.ParallelError as e:
        raise ConfigError(str(e)) from None
    return None if mesh.size == 1 and jax.process_count() == 1 else mesh


def _resume(run: RunDir, config: TrainConfig, model: nnx.Module, tx, hooks: Sequence[Hook],
            mesh) -> tuple[TrainState, dict[str, Any], int]:
    """The state and hook carries to start from (step 0, or the latest checkpoint), replicated
    over ``mesh``; drops the records the resumed run recomputes. Returns ``(state, carries, first
    step)``."""
    state = parallel.replicate(init_train_state(model, tx, seed=config.seed), mesh)
    context = RunContext(model, tx, config, mesh)
    for hook in hooks:
        hook.setup(context)
    carries = parallel.replicate(
        {h.name: h.init(state.params, key=_hook_key(config.seed, h.name)) for h in hooks}, mesh)
    start, restored = run.restore_latest(checkpoint_pieces(state, carries))
    state = state._replace(params=restored["params"], model_state=restored["state"],
                           opt_state=restored["opt_state"], step=jnp.asarray(start, jnp.int32))
    carries.update(restored.get("hooks", {}))
    run.truncate(start, ["train"] + [h.name for h in hooks])
    if run.info.get("diverged_at_step") is not None and config.stop_on_divergence:
        start = config.steps  # the run already stopped where it diverged: nothing left to do
    return state, carries, start


def _train(config: TrainConfig, workdir: str | Path, *, progress: bool = True,
           model: nnx.Module | None = None,
           on_step: Callable[[int, Mapping[str, float]], None] | None = None,
           measurements: Sequence[Measurement] = (), hooks: Sequence[Hook] = (),
           tensorboard: bool = False, sync_every: int = 50,
           devices: int | None = None) -> TrainResult:
    from tqdm.auto import tqdm

    run = RunDir(workdir, config, writer=parallel.is_writer())
    run.check()  # reads only: nothing is written before the data and the options are valid
    train_data, test_data, input_shape, num_classes = load_run_data(config)
    batch_size = _batch_size(config, train_data)
    mesh = run_mesh(devices, batch_size)
    if model is None:
        model = build_config_model(config, input_shape, num_classes)  # bad options fail here
    if config.dtype != "float32":
        bridge.cast(model, config.dtype)
    all_hooks = default_hooks(config) + [MeasurementHook(m) for m in measurements] + list(hooks)
    _check_hooks(all_hooks)
    run.create(input_shape=list(input_shape), num_classes=int(num_classes),
               devices=parallel.mesh_size(mesh), processes=jax.process_count(),
               arithmetic_eps=probes.arithmetic_eps(config.dtype))
    tx = build_optimizer(config)
    state, carries, start = _resume(run, config, model, tx, all_hooks, mesh)
    fns = StepFunctions(model, tx, uses_noise=config.norm == "noisy_batch")
    seconds_before, t0 = float(run.info.get("seconds", 0.0)), time.perf_counter()
    sinks = [JsonlSink(run.path)] + ([TensorBoardSink(run.path / "tensorboard")] if tensorboard else [])
    sinks = sinks if run.writer else []  # one process writes the records
    try:
        with Sinks(*sinks) as out, tqdm(total=config.steps, initial=min(start, config.steps),
                                        disable=not (progress and run.writer),
                                        desc=config.tag or config.norm,
                                        leave=True, dynamic_ncols=True) as bar:
            loop = _Loop(config, run, model, fns, all_hooks, carries, out, (train_data, test_data),
                         batch_size, sync_every, on_step, bar, mesh)
            state = loop.run_steps(state, start, seconds_before)
    finally:  # an interrupted run still completes the checkpoint it started
        run.close()
    run.write_info(diverged_at_step=loop.diverged, seconds=seconds_before + time.perf_counter() - t0)
    nnx.update(model, state.params, state.model_state)
    return TrainResult(state.params, state.model_state, state.opt_state, model, run.path,
                       loop.diverged)
