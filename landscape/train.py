"""Training with probes attached: ``train(config, workdir)`` and :class:`Prober` for your own loop.

A run's folder (``workdir``) holds:

- ``config.json`` — the :class:`~landscape.config.TrainConfig`,
- ``train.jsonl`` — one line per step: ``step``, ``loss``, ``accuracy``, ``lr`` (minibatch, train mode),
- ``eval.jsonl`` — one line per evaluation: ``step``, ``test_loss``, ``test_accuracy`` (eval mode),
- ``probes.jsonl`` — one line per probe: ``step``, ``tag`` and every :class:`~landscape.probes.StepProbe`
  field (plus the band summaries),
- ``run.json`` — ``noise_floor``, ``diverged_at_step``, ``final_step``, timings,
- ``checkpoints/`` — Orbax checkpoints of ``(params, state, opt_state)`` every ``checkpoint_every``
  steps and at the end; a new call with the same ``workdir`` resumes from the latest one.

Step t uses the minibatch :func:`landscape.data.batch_at` (seed, t) and the noise key
``fold_in(key(seed), t)``, so a resumed run repeats an uninterrupted one exactly. A probe at step t
measures θ_t (before update t) on step t's own minibatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from landscape import bridge, data as data_lib, probes
from landscape.config import ConfigError, TrainConfig
from landscape.models import build_model
from landscape.records import RecordWriter, read_records, truncate_records, write_json_atomic

__all__ = ["restore_model", "Measurement", "StepContext", "Prober", "ProbeSchedule", "TrainResult", "build_optimizer", "load_run_data", "train",
           "RunExistsError"]


class RunExistsError(RuntimeError):
    """``workdir`` holds a run with a different configuration."""


@dataclasses.dataclass(frozen=True)
class ProbeSchedule:
    """When to probe: every ``every`` steps (0: never) and/or at the steps in ``at``.

    Example:
        >>> ProbeSchedule(every=10, at=(3,)).due(3), ProbeSchedule(every=10).due(20)
        (True, True)
    """

    every: int = 1
    at: tuple[int, ...] = ()

    def due(self, step: int) -> bool:
        return (self.every > 0 and step % self.every == 0) or step in self.at


class StepContext(NamedTuple):
    """What a :class:`Measurement` sees at step t, before update t.

    ``params``/``state``/``opt_state`` are θ_t and its companions (pure pytrees), ``batch`` is step t's
    own minibatch in :func:`landscape.bridge.make_batch` form, ``model`` the NNX model (structure
    only: its values are not kept current during training), ``tx`` the optimizer.
    """

    step: int
    params: Any
    state: Any
    opt_state: Any
    batch: dict[str, Any]
    model: nnx.Module
    tx: optax.GradientTransformation
    config: TrainConfig


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A named measurement taken on a schedule during :func:`train`.

    ``fn(ctx) -> dict`` runs at every due step; each result is appended to ``{name}.jsonl`` in the
    run folder as ``{"step": t, **result}`` (dropped and recomputed on resume like every record).

    Example:
        >>> Measurement("grad_norm", lambda ctx: {"value": 1.0}, ProbeSchedule(every=10))
    """

    name: str
    fn: Callable[[StepContext], Mapping[str, Any]]
    schedule: ProbeSchedule = ProbeSchedule()


class Prober:
    """Figure-4 probes for an NNX model, attachable to any training loop.

    Builds the model's pure loss once (:func:`landscape.bridge.make_loss_fn` in ``mode``) and a
    jitted :func:`landscape.probes.make_step_probe` for it; each call on a due step measures the
    model's current parameters on the given minibatch at ``step_sizes`` and, when ``records`` is a
    path, appends one JSON line (``step``, ``tag``, every field, band summaries). With
    ``per_layer=True`` the record also holds ``grad_norm_per_layer`` — ‖∂L/∂W‖₂ for every parameter
    array, keyed by its path (the per-layer Lipschitz measurement; one more gradient per probe).

    Example:
        >>> prober = Prober(model, step_sizes=probes.lr_multiples(0.1), schedule=ProbeSchedule(every=10))
        >>> for step in range(100):
        ...     prober.maybe_probe(step, model, x, y)   # before the optimizer update
        ...     train_step(model, optimizer, x, y)
    """

    def __init__(self, model: nnx.Module, *, step_sizes: Sequence[float] | np.ndarray,
                 schedule: ProbeSchedule = ProbeSchedule(), mode: str = "batch_stats",
                 strategy: str = "auto", records: str | os.PathLike | None = None, tag: str = "",
                 per_layer: bool = True):
        self.step_sizes = jnp.asarray(np.asarray(step_sizes, dtype=np.float32))
        if self.step_sizes.ndim != 1 or self.step_sizes.size == 0:
            raise ValueError("step_sizes must be a non-empty 1-D sequence")
        self.schedule = schedule
        self.loss_fn = bridge.make_loss_fn(model, mode=mode)
        self._probe = probes.make_step_probe(self.loss_fn, strategy=strategy)
        self._writer = RecordWriter(records) if records is not None else None
        self.tag = tag
        self.per_layer = per_layer

    def probe(self, step: int, params, state, x, y, rng: jax.Array | None = None) -> probes.StepProbe:
        """Measure at ``params`` on ``(x, y)`` (pure pieces from :func:`landscape.bridge.split`)."""
        batch = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state, rng)
        result = self._probe(params, batch, self.step_sizes)
        if self._writer is not None:
            record = probe_record(step, result, tag=self.tag)
            if self.per_layer:
                record["grad_norm_per_layer"] = per_layer_norms(
                    probes.grad_norms(self.loss_fn, params, batch).per_leaf)
            self._writer.write(record)
        return result

    def maybe_probe(self, step: int, model: nnx.Module, x, y,
                    rng: jax.Array | None = None) -> probes.StepProbe | None:
        """Probe ``model`` (an NNX module, left unchanged) if ``step`` is due; else ``None``."""
        if not self.schedule.due(step):
            return None
        _, params, state = bridge.split(model)
        return self.probe(step, params, state, x, y, rng)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def per_layer_norms(tree: Any) -> dict[str, float]:
    """``{"blocks/0/proj/kernel": value, ...}`` from a pytree of scalars (paths joined by "/")."""
    return probes.per_leaf_dict(tree)


def probe_record(step: int, result: probes.StepProbe, *, tag: str = "") -> dict[str, Any]:
    """The JSON record of one probe: every field plus the band summaries."""
    rec: dict[str, Any] = {"step": int(step), "tag": tag}
    rec.update({k: np.asarray(v).tolist() for k, v in result._asdict().items()})
    rec.update(probes.summarize(result))
    return rec


class TrainResult(NamedTuple):
    """What :func:`train` returns (everything is also on disk in ``workdir``)."""

    params: Any
    state: Any
    opt_state: Any
    model: nnx.Module
    workdir: Path
    diverged_at_step: int | None
    noise_floor: float | None


def _lr_schedule(config: TrainConfig) -> optax.Schedule:
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, config.steps)
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(
            config.lr, {config.steps // 2: 0.1, (3 * config.steps) // 4: 0.1})
    return optax.constant_schedule(config.lr)


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """optax transformation for ``config``: plain SGD (the paper), SGD+momentum, or Adam, with a
    constant, cosine-decay or step (×0.1 at 50 % and 75 %) learning-rate schedule."""
    lr = config.lr if config.schedule == "constant" else _lr_schedule(config)
    if config.optimizer == "sgd":
        return optax.sgd(lr)
    if config.optimizer == "momentum":
        return optax.sgd(lr, momentum=config.momentum)
    return optax.adam(lr)


def load_run_data(config: TrainConfig) -> tuple[Any, Any, tuple[int, ...], int]:
    """``(train_data, test_data, input_shape, num_classes)`` for ``config`` (``dln``: regression)."""
    if config.dataset == "dln":
        x, y, _ = data_lib.make_dln_regression(seed=config.seed)
        return (x, y), (x, y), (x.shape[1],), y.shape[1]
    ds = data_lib.load_dataset(config.dataset, config.data_dir, download=config.download,
                               seed=config.seed)
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


def _step_sizes(config: TrainConfig) -> np.ndarray:
    return probes.lr_multiples(config.lr, config.step_size_lo, config.step_size_hi,
                               config.num_step_sizes)


def _restore(manager, step: int, params, state, opt_state, where: Path) -> dict[str, Any]:
    """Restore checkpoint ``step`` into the structure of the given pieces (clear error on mismatch)."""
    import orbax.checkpoint as ocp

    target = {"params": params, "state": state, "opt_state": opt_state}
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax raises many types for structure mismatches
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"checkpoint {where / str(step)} does not match the model: {detail}") from None


def _check_workdir(workdir: Path, config: TrainConfig) -> None:
    cfg_path = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"output path {workdir} exists and is not a folder")
    if cfg_path.exists():
        try:
            previous = json.loads(cfg_path.read_text())
        except ValueError:
            raise RunExistsError(f"{cfg_path} is unreadable; refusing to reuse {workdir}") from None
        if previous != json.loads(json.dumps(config.to_dict())):
            raise RunExistsError(
                f"{workdir} holds a run with a different configuration; choose another output "
                "folder or delete it")


def train(config: TrainConfig, workdir: str | os.PathLike, *, progress: bool = True,
          model: nnx.Module | None = None,
          on_step: Callable[[int, Mapping[str, float]], None] | None = None,
          measurements: Sequence[Measurement] = ()) -> TrainResult:
    """Train ``config``'s model, probing on the schedule, checkpointing, and resuming from ``workdir``.

    Args:
        config: a validated :class:`TrainConfig`.
        workdir: the run's folder (created; an existing run with the same config is resumed, one
            with a different config is refused with :class:`RunExistsError`).
        progress: show a progress bar (tqdm).
        model: optional pre-built NNX model (default: ``build_model`` from the config).
        on_step: optional callback ``(step, metrics)`` after every step.
        measurements: extra :class:`Measurement` s taken on θ_t and step t's minibatch.

    Returns:
        :class:`TrainResult`.

    Example:
        >>> cfg = TrainConfig(dataset="synthetic", model="mlp", steps=20, probe_every=5)
        >>> result = train(cfg, "runs/demo", progress=False)
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    workdir = Path(workdir).absolute()
    _check_workdir(workdir, config)
    train_data, test_data, input_shape, num_classes = load_run_data(config)
    batch_size = config.batch_size
    if config.dataset == "dln":
        batch_size = len(train_data[0])  # full-batch gradient descent, as in the paper
    elif batch_size > len(train_data.x_train):
        raise ConfigError(f"batch_size={batch_size} exceeds the {len(train_data.x_train)} training examples")
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "config.json", config.to_dict())

    if model is None:
        model = build_config_model(config, input_shape, num_classes)
    graphdef, params, state = bridge.split(model)
    tx = build_optimizer(config)
    opt_state = tx.init(params)
    train_step = bridge.make_train_step(model, tx)
    root_key = jax.random.key(config.seed)

    # --- resume
    ckpt_dir = workdir / "checkpoints"
    manager = ocp.CheckpointManager(
        ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints,
                                                       create=True))
    start = 0
    latest = manager.latest_step()
    if latest is not None:
        restored = _restore(manager, latest, params, state, opt_state, ckpt_dir)
        params, state, opt_state = restored["params"], restored["state"], restored["opt_state"]
        start = int(latest)
    run_info_path = workdir / "run.json"
    run_info: dict[str, Any] = {}
    if run_info_path.exists():
        try:
            run_info = json.loads(run_info_path.read_text())
        except ValueError:
            raise RunExistsError(f"{run_info_path} is unreadable; refusing to reuse {workdir}") from None
        if start == 0 and run_info.get("final_step", 0) > 0:  # never wipe finished records
            raise RunExistsError(
                f"{workdir} has records up to step {run_info['final_step']} but no checkpoint to "
                "resume from; pass --overwrite (or delete the folder) to start over")
    if run_info.get("diverged_at_step") is not None and run_info["diverged_at_step"] >= start:
        run_info["diverged_at_step"] = None
    # Rows of steps not yet covered by the checkpoint are recomputed: drop them (no duplicates).
    # Evaluation rows are keyed by the number of completed steps, so the one at `start` stays.
    truncate_records(workdir / "train.jsonl", before_step=start)
    truncate_records(workdir / "probes.jsonl", before_step=start)
    truncate_records(workdir / "eval.jsonl", before_step=start + 1)
    names = [m.name for m in measurements]
    reserved = {"train", "eval", "probes", "run", "config"}
    if len(set(names)) != len(names) or reserved & set(names):
        raise ConfigError(f"measurement names must be unique and not in {sorted(reserved)}: {names}")
    for m in measurements:
        truncate_records(workdir / f"{m.name}.jsonl", before_step=start)

    prober = None
    step_sizes = None
    if config.probes_enabled():
        step_sizes = jnp.asarray(_step_sizes(config), dtype=jnp.float32)
        prober = Prober(model, step_sizes=step_sizes,
                        schedule=ProbeSchedule(config.probe_every, tuple(config.probe_at)),
                        mode=config.probe_mode, strategy=config.probe_strategy,
                        records=workdir / "probes.jsonl", tag=config.tag or config.norm)

    schedule = _lr_schedule(config)
    uses_noise = config.norm == "noisy_batch"
    diverged = run_info.get("diverged_at_step")
    if diverged is not None and config.stop_on_divergence:
        start = config.steps  # the run already stopped where it diverged: nothing left to do
    seconds_before = float(run_info.get("seconds", 0.0))
    t_start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            train_log = stack.enter_context(RecordWriter(workdir / "train.jsonl"))
            eval_log = stack.enter_context(RecordWriter(workdir / "eval.jsonl"))
            logs = {m.name: stack.enter_context(RecordWriter(workdir / f"{m.name}.jsonl"))
                    for m in measurements}
            bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
                       disable=not progress, desc=config.tag or config.norm, leave=True,
                       dynamic_ncols=True)
            for step in bar:
                x, y = data_lib.batch_at(train_data, step, batch_size, seed=config.seed)
                x, y = jnp.asarray(x), jnp.asarray(y)
                rng = jax.random.fold_in(root_key, step) if uses_noise else None
                batch = bridge.make_batch(x, y, state, rng)
                if prober is not None and prober.schedule.due(step):
                    if "noise_floor" not in run_info:
                        run_info["noise_floor"] = float(
                            probes.noise_floor(prober.loss_fn, params, batch))
                    prober.probe(step, params, state, x, y, rng)
                for m in measurements:
                    if m.schedule.due(step):
                        ctx = StepContext(step, params, state, opt_state, batch, model, tx, config)
                        logs[m.name].write({"step": step, **m.fn(ctx)})
                params, state, opt_state, metrics = train_step(params, state, opt_state, batch)
                loss = float(metrics.loss)
                row = {"step": step, "loss": loss, "accuracy": float(metrics.accuracy), "lr": float(schedule(step))}
                train_log.write(row)
                if on_step is not None:
                    on_step(step, row)
                if not math.isfinite(loss) and diverged is None:
                    diverged = step
                    run_info["diverged_at_step"] = step
                    warnings.warn(f"{config.tag or config.norm}: loss is {loss} at step {step} "
                                  "(diverged)", RuntimeWarning, stacklevel=2)
                bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
                done = step + 1
                last = done == config.steps or (diverged is not None and config.stop_on_divergence)
                if config.eval_every and (done % config.eval_every == 0 or last):
                    tl, ta = bridge.evaluate(model, params, state, *test_data,
                                             batch_size=config.eval_batch_size)
                    eval_log.write({"step": done, "test_loss": tl, "test_accuracy": ta})
                if (config.checkpoint_every and done % config.checkpoint_every == 0) or last:
                    manager.save(done, args=ocp.args.StandardSave(
                        {"params": params, "state": state, "opt_state": opt_state}))
                    # run.json may only name a step whose checkpoint is complete on disk
                    manager.wait_until_finished()
                    run_info.update(final_step=done,
                                    seconds=seconds_before + time.perf_counter() - t_start)
                    write_json_atomic(run_info_path, run_info)
                if last:
                    break
            bar.close()
    finally:  # an interrupted run still completes the checkpoint it started
        manager.wait_until_finished()
        manager.close()
        if prober is not None:
            prober.close()
    run_info.setdefault("diverged_at_step", diverged)
    run_info["seconds"] = seconds_before + time.perf_counter() - t_start
    write_json_atomic(run_info_path, run_info)
    nnx.update(model, params, state)
    return TrainResult(params, state, opt_state, model, workdir, diverged,
                       run_info.get("noise_floor"))


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
    import orbax.checkpoint as ocp

    workdir = Path(workdir).absolute()
    cfg_path = workdir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{workdir} holds no run (config.json missing)")
    config = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    _, _, input_shape, num_classes = load_run_data(config)
    model = build_config_model(config, input_shape, num_classes)
    _, params, state = bridge.split(model)
    opt_state = build_optimizer(config).init(params)
    with ocp.CheckpointManager(workdir / "checkpoints") as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"{workdir} has no checkpoint yet")
        restored = _restore(manager, step, params, state, opt_state, workdir / "checkpoints")
    nnx.update(model, restored["params"], restored["state"])
    return model
