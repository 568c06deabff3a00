"""``fit(loss_fn, params, optimizer, data, *, steps, workdir)``: the engine's centre.

Any JAX model trains here with every measurement the toolkit has: a loss (plain, with state, or
a Flax NNX model — :mod:`.objective`), any pytree of parameters, any optax transformation, and
minibatches from :mod:`.batches`. The loop composes the other engine modules and owns no
measurement: :mod:`.state` (the state and the compiled step), :mod:`.hooks` (what is measured,
when), :mod:`.sinks` (where records go), :mod:`.rundir` (config, checkpoints, resume). It never
waits for the device inside a block of steps: losses, metrics and hook results stay on the device
and are written in blocks (every ``sync_every`` steps, and at every evaluation, checkpoint and the
end), where divergence is also detected. ``stop_on_divergence`` syncs every step.

Step t uses the minibatch ``data(t)`` and the key ``fold_in(key(seed), t)``, so a resumed run
repeats an uninterrupted one exactly; the engine checks both halves of that promise (every batch
has the first one's shapes; the batch before a checkpoint has the same bytes when resumed).
:func:`landscape.engine.train` (a :class:`~landscape.config.TrainConfig`) is one adapter over
the same :func:`run_job`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from landscape import parallel, probes
from landscape.choices import check_int
from landscape.config import ConfigError
from landscape.engine.batches import BatchCheck, as_batch_fn, data_error, fingerprint
from landscape.engine.hooks import Hook, RunContext, StepInputs, hook_key
from landscape.engine.objective import Objective, as_objective, check_objective, check_params
from landscape.engine.rundir import RESERVED_NAMES, RunDir
from landscape.engine.sinks import JsonlSink, Sinks, TensorBoardSink
from landscape.engine.state import StepFunctions, StepMetrics, TrainState, init_train_state

__all__ = ["FitResult", "Job", "fit", "run_job", "run_mesh"]


class FitResult(NamedTuple):
    """What :func:`fit` returns (everything is also on disk in ``workdir``)."""

    params: Any                    # θ after the last step
    state: Any                     # the model state after the last step ({} for a plain loss)
    opt_state: Any
    workdir: Path
    diverged_at_step: int | None   # the first step whose loss was not finite


@dataclasses.dataclass
class Job:
    """Everything one run needs, however it was described (:func:`fit` or a TrainConfig).

    ``identity`` is what ``config.json`` holds: a folder with another identity is refused, one
    with the same identity resumed. ``evaluate(params, state) -> dict`` runs every
    ``eval_every`` steps and at the end (``eval.jsonl``); ``lr(step)`` is recorded in
    ``train.jsonl`` when given. ``model`` and ``config`` are handed to hooks (None for ``fit``).
    """

    objective: Objective
    params: Any
    tx: Any
    batch: Callable[[int], Any]
    steps: int
    identity: dict[str, Any]
    seed: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 0
    evaluate: Callable[[Any, Any], Mapping[str, float]] | None = None
    lr: Callable[[Any], Any] | None = None
    tag: str = ""
    stop_on_divergence: bool = False
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: Any = None
    config: Any = None


def _check_optimizer(optimizer: Any) -> None:
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise ConfigError(f"optimizer must be an optax.GradientTransformation (init, update), e.g. "
                          f"optax.adamw(1e-3); got {type(optimizer).__name__}")


def fit(loss_fn: Callable | Objective, params: Any, optimizer: Any, data: Any, *, steps: int,
        workdir: str | Path, hooks: Sequence[Hook] = (), batch_size: int | None = None,
        seed: int = 0, evaluate: Callable[[Any, Any], Mapping[str, float]] | None = None,
        eval_every: int = 0, checkpoint_every: int = 0, keep_checkpoints: int = 2,
        learning_rate: float | Callable[[Any], Any] | None = None,
        setup: str | Callable[..., Any] | None = None, setup_kwargs: Mapping[str, Any] | None = None,
        tag: str = "", stop_on_divergence: bool = False, **options: Any) -> FitResult:
    """Train ``params`` on ``loss_fn`` with ``optimizer`` for ``steps`` steps, running ``hooks``.

    Step t computes L(θ_t) and g_t = ∇L(θ_t) on ``data``'s minibatch t (the key
    ``fold_in(key(seed), t)`` for a loss that uses one), runs every hook due at t on (θ_t, batch
    t, L, g_t) — a Figure-4 probe reuses g_t, K + 1 gradients per probed step — then applies
    ``optimizer.update(g_t, opt_state, θ_t)``.

    Args:
        loss_fn: ``loss_fn(params, batch) -> loss`` or ``-> (loss, metrics)`` (``metrics`` a dict
            of scalars, written to ``train.jsonl`` under their names); a
            :class:`~landscape.engine.Stateful` loss for a model with state; or the first half of
            :func:`~landscape.engine.nnx_loss` for a Flax NNX model.
        params: any pytree with at least one floating-point array.
        optimizer: any ``optax.GradientTransformation`` (schedules, chains, clipping, AdamW ...).
        data: ``data(step) -> batch`` (any pytree, left as given); a pytree of arrays with a
            leading example axis and ``batch_size=`` (epoch-wise permutations of ``seed``,
            drop-last, :func:`landscape.data.batch_indices`); or an indexable dataset of batches
            (``data[step % len(data)]``, e.g. a grain ``MapDataset``).
        steps: the number of updates; workdir: the run folder (``config.json``, ``train.jsonl``,
            the hooks' ``{name}.jsonl``, ``run.json``, ``checkpoints/``); the same call on the
            same folder resumes from its latest checkpoint, another run's folder is refused.
        hooks: :class:`~landscape.engine.Hook` s (``StepProbeHook``, ``CurvatureHook``, yours).
        evaluate: ``evaluate(params, state) -> {name: float}`` every ``eval_every`` steps and at
            the end, written to ``eval.jsonl`` (host side).
        checkpoint_every: steps between checkpoints (0: only at the end); ``keep_checkpoints``.
        learning_rate: a float or an optax schedule, recorded as ``lr`` in ``train.jsonl``.
        setup: ``"module:function"`` / ``"file.py:function"`` (or a top-level function) that
            returns ``(loss_fn, params, optimizer, data)`` for ``**setup_kwargs`` — recorded in
            ``config.json`` so that ``landscape analyze WORKDIR`` can rebuild the run.
        tag: a label for progress bars and warnings; stop_on_divergence: stop at the first
            non-finite loss (otherwise warn once and finish).
        options: ``progress``, ``on_step(step, row)``, ``tensorboard``, ``sync_every``,
            ``devices`` (data parallel over a mesh: the batch is split along its first axis).

    Returns:
        :class:`FitResult` ``(params, state, opt_state, workdir, diverged_at_step)``.

    Example:
        >>> def loss_fn(params, batch):
        ...     pred = batch["x"] @ params["w"] + params["b"]
        ...     return jnp.mean((pred - batch["y"]) ** 2)
        >>> params = {"w": jnp.zeros((3,)), "b": jnp.zeros(())}
        >>> data = {"x": np.random.randn(256, 3), "y": np.random.randn(256)}
        >>> result = fit(loss_fn, params, optax.sgd(0.1), data, batch_size=32, steps=100,
        ...              workdir="runs/linear", hooks=[StepProbeHook(step_sizes=[0.05, 0.1, 0.2])])
    """
    objective = as_objective(loss_fn)
    check_params(params)
    _check_optimizer(optimizer)
    steps = check_int("steps", steps, error=ConfigError)
    seed = check_int("seed", seed, minimum=0, error=ConfigError)
    for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        check_int(name, value, minimum=0, error=ConfigError)
    check_int("keep_checkpoints", keep_checkpoints, error=ConfigError)
    if eval_every and evaluate is None:
        raise ConfigError("eval_every needs evaluate=(params, state) -> {name: value}")
    identity = {"engine": "fit", "steps": steps, "seed": seed, "batch_size": batch_size,
                "checkpoint_every": checkpoint_every, "eval_every": eval_every,
                "setup": _setup_identity(setup, setup_kwargs)}
    lr = None if learning_rate is None else (
        learning_rate if callable(learning_rate) else (lambda step, v=float(learning_rate): v))
    job = Job(objective, params, optimizer, as_batch_fn(data, batch_size=batch_size, seed=seed),
              steps, identity, seed=seed, checkpoint_every=checkpoint_every,
              keep_checkpoints=keep_checkpoints, eval_every=eval_every, evaluate=evaluate, lr=lr,
              tag=tag, stop_on_divergence=stop_on_divergence)
    return run_job(job, workdir, hooks=hooks, **options)


def _setup_identity(setup: Any, kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    from landscape.factories import portable_name
    from landscape.records import to_jsonable

    if setup is None:
        if kwargs:
            raise ConfigError("setup_kwargs needs setup=")
        return None
    name = setup if isinstance(setup, str) else portable_name(setup)
    if isinstance(setup, str):
        from landscape.factories import load_callable

        load_callable(setup, "setup")  # a name that cannot be imported fails now, not in analyze
    return {"factory": name, "kwargs": to_jsonable(dict(kwargs or {}))}


# ------------------------------------------------------------------------------- the loop


class _Loop:
    """The running part of :func:`run_job`: one short method per job."""

    def __init__(self, job: Job, run: RunDir, fns: StepFunctions, hooks: Sequence[Hook],
                 carries: dict[str, Any], sinks: Sinks, check: BatchCheck, sync_every: int,
                 on_step, bar, mesh):
        self.job, self.run, self.fns, self.mesh, self.check = job, run, fns, mesh, check
        self.hooks, self.carries, self.sinks, self.bar = hooks, carries, sinks, bar
        self.on_step = on_step
        self.sync_every = 1 if job.stop_on_divergence else max(1, int(sync_every))
        self.measure = {h.name: (jax.jit(h.measure) if h.jit else h.measure) for h in hooks}
        self.pending_steps: list[tuple[int, StepMetrics]] = []  # on the device
        self.pending_hooks: list[tuple[Hook, int, Any]] = []    # (hook, step, result) on the device
        self.diverged: int | None = run.info.get("diverged_at_step")
        self.last_batch: tuple[int, Any] | None = None

    def minibatch(self, step: int):
        batch = _call_data(self.job.batch, step)
        self.check(step, batch)
        self.last_batch = (step, batch)
        return parallel.shard_batch(batch, self.mesh)

    def step(self, state: TrainState, step: int) -> TrainState:
        """One update; hooks due at ``step`` measure θ_t with the step's own gradient first."""
        batch = self.minibatch(step)
        due = [h for h in self.hooks if h.due(step)]
        if not due:
            state, metrics = self.fns.train(state, batch)
        else:
            probe_batch, out = self.fns.gradient(state, batch)
            inputs = StepInputs(state.step, state.params, state.model_state, state.opt_state,
                                probe_batch, out.loss, out.grad)
            for hook in due:
                result, self.carries[hook.name] = self.measure[hook.name](
                    self.carries[hook.name], inputs)
                self.pending_hooks.append((hook, step, result))
            state = self.fns.apply(state, out)
            metrics = StepMetrics(out.loss, out.metrics)
        self.pending_steps.append((step, metrics))
        return state

    def _lrs(self, steps: list[int]) -> list[float | None]:
        if self.job.lr is None:
            return [None] * len(steps)
        lrs = np.asarray(jax.device_get(self.job.lr(np.asarray(steps))), dtype=float).reshape(-1)
        return list(np.full(len(steps), lrs.item()) if lrs.size == 1 and len(steps) > 1 else lrs)

    def flush(self) -> None:
        """Fetch the block's metrics and hook results in one transfer and write their records."""
        if not self.pending_steps and not self.pending_hooks:
            return
        steps = [s for s, _ in self.pending_steps]
        metrics, results = parallel.fetch(([m for _, m in self.pending_steps],
                                           [r for _, _, r in self.pending_hooks]))
        for (hook, step, _), result in zip(self.pending_hooks, results):
            self.sinks.write(hook.name, hook.record(step, result))
        for step, m, lr in zip(steps, metrics, self._lrs(steps)):
            row = {"step": step, "loss": float(m.loss), **{k: float(v) for k, v in m.metrics.items()}}
            if lr is not None:
                row["lr"] = float(lr)
            self.sinks.write("train", row)
            if self.on_step is not None:
                self.on_step(step, row)
            if not np.isfinite(row["loss"]) and self.diverged is None:
                self.diverged = step
                warnings.warn(f"{self.job.tag or 'fit'}: loss is {row['loss']} at step {step} "
                              "(diverged)", RuntimeWarning, stacklevel=3)
        if metrics:
            self.bar.set_postfix(loss=f"{float(metrics[-1].loss):.3g}", refresh=False)
        self.bar.update(len(steps))
        self.pending_steps.clear()
        self.pending_hooks.clear()

    def evaluate(self, state: TrainState, done: int) -> None:
        result = self.job.evaluate(state.params, state.model_state)
        self.sinks.write("eval", {"step": done, **{k: float(v) for k, v in dict(result).items()}})

    def save(self, state: TrainState, done: int, seconds: float) -> None:
        info = {"diverged_at_step": self.diverged, "seconds": seconds}
        if self.last_batch is not None:
            info["data_fingerprint"] = [self.last_batch[0], fingerprint(self.last_batch[1])]
        self.run.save(done, checkpoint_pieces(state, self.carries), **info)

    def run_steps(self, state: TrainState, start: int, seconds_before: float) -> TrainState:
        job, t0 = self.job, time.perf_counter()
        for step in range(start, job.steps):
            state = self.step(state, step)
            done = step + 1
            evaluate = job.eval_every and done % job.eval_every == 0
            checkpoint = job.checkpoint_every and done % job.checkpoint_every == 0
            if done == job.steps or evaluate or checkpoint or (done - start) % self.sync_every == 0:
                self.flush()
            last = done == job.steps or (self.diverged is not None and job.stop_on_divergence)
            if job.eval_every and (evaluate or last):
                self.evaluate(state, done)
            if checkpoint or last:
                self.save(state, done, seconds_before + time.perf_counter() - t0)
            if last:
                break
        return state


def _call_data(batch_fn: Callable[[int], Any], step: int) -> Any:
    try:
        return batch_fn(step)
    except Exception as e:
        raise data_error(e, step) from None


def checkpoint_pieces(state: TrainState, carries: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: params, state, opt_state and the hooks' non-empty carries."""
    pieces = {"params": state.params, "state": state.model_state, "opt_state": state.opt_state}
    kept = {name: c for name, c in carries.items() if jax.tree.leaves(c)}
    if kept:
        pieces["hooks"] = kept
    return pieces


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


def _check_hooks(hooks: Sequence[Hook]) -> None:
    names = [h.name for h in hooks]
    if len(set(names)) != len(names) or RESERVED_NAMES & set(names):
        raise ConfigError(f"hook and measurement names must be unique and not in "
                          f"{sorted(RESERVED_NAMES)}: {names}")


def _check_resumed_data(run: RunDir, job: Job, start: int) -> None:
    saved = run.info.get("data_fingerprint")
    if not start or not saved or saved[0] >= start:
        return
    if fingerprint(_call_data(job.batch, saved[0])) != saved[1]:
        raise ConfigError(f"data({saved[0]}) differs from the batch this run trained on before "
                          f"its checkpoint at step {start}: data(step) must be deterministic for "
                          "a resumed run to repeat an uninterrupted one")


def _resume(run: RunDir, job: Job, hooks: Sequence[Hook], mesh) -> tuple[TrainState, dict, int]:
    """The state and hook carries to start from (step 0, or the latest checkpoint), replicated
    over ``mesh``; drops the records the resumed run recomputes."""
    # the step donates its input buffers: train on copies, never on the caller's arrays
    params, model_state = jax.tree.map(lambda x: jnp.array(x, copy=True),
                                       (job.params, job.objective.state))
    state = parallel.replicate(init_train_state(params, model_state, job.tx, seed=job.seed), mesh)
    context = RunContext(job.objective, job.tx, mesh, model=job.model, config=job.config,
                         lr=job.lr)
    for hook in hooks:
        hook.setup(context)
    carries = parallel.replicate(
        {h.name: h.init(state.params, key=hook_key(job.seed, h.name)) for h in hooks}, mesh)
    start, restored = run.restore_latest(checkpoint_pieces(state, carries))
    _check_resumed_data(run, job, start)
    state = state._replace(params=restored["params"], model_state=restored["state"],
                           opt_state=restored["opt_state"], step=jnp.asarray(start, jnp.int32))
    carries.update(restored.get("hooks", {}))
    run.truncate(start, ["train"] + [h.name for h in hooks])
    if run.info.get("diverged_at_step") is not None and job.stop_on_divergence:
        start = job.steps  # the run already stopped where it diverged: nothing left to do
    return state, carries, start


def _float_dtype(params: Any) -> Any:
    return next(jnp.result_type(x) for x in jax.tree.leaves(params)
                if jnp.issubdtype(jnp.result_type(x), jnp.floating))


def _first_batch_size(batch: Any) -> int:
    sizes = [np.shape(x)[0] for x in jax.tree.leaves(batch) if np.ndim(x)]
    return sizes[0] if sizes else 1


def run_job(job: Job, workdir: str | Path, *, hooks: Sequence[Hook] = (), progress: bool = True,
            on_step: Callable[[int, Mapping[str, float]], None] | None = None,
            tensorboard: bool = False, sync_every: int = 50,
            devices: int | None = None) -> FitResult:
    """Run ``job`` in ``workdir``: check everything, then resume or start, train, checkpoint.

    Nothing is written before the folder, the data's first batch, the loss (traced once on it)
    and the hooks are valid, so a bad call never touches a finished run.
    """
    from tqdm.auto import tqdm

    run = RunDir(workdir, job.identity, keep_checkpoints=job.keep_checkpoints,
                 writer=parallel.is_writer())
    run.check()  # reads only
    first = _call_data(job.batch, 0)
    check_objective(job.objective, job.params, first)
    mesh = run_mesh(devices, _first_batch_size(first))
    _check_hooks(hooks)
    run.create(**job.info, devices=parallel.mesh_size(mesh), processes=jax.process_count(),
               x64=bool(jax.config.read("jax_enable_x64")),
               arithmetic_eps=probes.arithmetic_eps(_float_dtype(job.params)))
    state, carries, start = _resume(run, job, hooks, mesh)
    fns = StepFunctions(job.objective, job.tx)
    seconds_before, t0 = float(run.info.get("seconds", 0.0)), time.perf_counter()
    sinks = [JsonlSink(run.path)] + ([TensorBoardSink(run.path / "tensorboard")] if tensorboard else [])
    sinks = sinks if run.writer else []  # one process writes the records
    try:
        with Sinks(*sinks) as out, tqdm(total=job.steps, initial=min(start, job.steps),
                                        disable=not (progress and run.writer),
                                        desc=job.tag or "fit", leave=True,
                                        dynamic_ncols=True) as bar:
            loop = _Loop(job, run, fns, hooks, carries, out, BatchCheck(first), sync_every,
                         on_step, bar, mesh)
            state = loop.run_steps(state, start, seconds_before)
    finally:  # an interrupted run still completes the checkpoint it started
        run.close()
    run.write_info(diverged_at_step=loop.diverged, seconds=seconds_before + time.perf_counter() - t0)
    return FitResult(state.params, state.model_state, state.opt_state, run.path, loop.diverged)
