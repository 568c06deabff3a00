"""One protocol for every scheduled measurement: :class:`Hook`.

A hook names a record file (``{name}.jsonl`` in the run folder), says when it is due
(:class:`Schedule`) and measures with a pure, jit-compatible function of the step's inputs::

    class Hook:
        name: str
        schedule: Schedule
        def setup(self, run: RunContext) -> None           # once per run: build loss functions
        def init(self, params, *, key) -> carry             # optional state carried between calls
        def measure(self, carry, inputs: StepInputs) -> (result, carry)   # pure; jitted by the loop
        def record(self, step, result) -> dict              # host side: the JSON record

At a due step t the loop computes the step's gradient once (:class:`StepInputs` holds θ_t, the
minibatch, L(θ_t) and ∇L(θ_t) with batch statistics), runs every due hook on it, then applies the
update — so a Figure-4 probe costs K (+1 for its rounding floor) gradients beyond the step's own.
Results stay on the device until the loop writes them in blocks; the carries (e.g. a warm-start
eigenvector) are saved in every checkpoint, so a resumed run repeats an uninterrupted one.

Built-in hooks: :class:`StepProbeHook` (Figure 4 + per-layer gradient norms),
:class:`CurvatureHook` (λ_max by warm-started Lanczos and gᵀHg/‖g‖², every N steps) and
:class:`MeasurementHook` (adapts a host-side :class:`Measurement`, the pre-hook API). See
``examples/custom_hook.py`` for a user-defined hook.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from landscape import bridge, parallel, probes
from landscape.config import ConfigError, TrainConfig
from landscape.engine.objective import Objective
from landscape.records import to_jsonable

__all__ = ["CriticalSharpnessHook", "Curvature", "CurvatureHook", "Hook", "Measurement", "MeasurementHook", "RunContext", "Schedule",
           "StepContext", "StepInputs", "StepProbeHook", "hook_key", "probe_record"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a hook is due: every ``every`` steps (0: never) and/or at the steps in ``at``.

    Example:
        >>> Schedule(every=10, at=(3,)).due(3), Schedule(every=10).due(20), Schedule(0).due(0)
        (True, True, False)
    """

    every: int = 1
    at: tuple[int, ...] = ()

    def due(self, step: int) -> bool:
        return (self.every > 0 and step % self.every == 0) or step in self.at


def hook_key(seed: int, name: str) -> jax.Array:
    """The key a hook's :meth:`Hook.init` gets: ``fold_in(key(seed), crc32(name))``."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


class StepInputs(NamedTuple):
    """What a hook sees at step t, before update t (every field is an array pytree).

    Attributes:
        step: () int32, t.
        params: θ_t.
        model_state: the running statistics before step t.
        opt_state: the optimizer state before step t.
        batch: step t's minibatch in the form the run's pure loss takes (:meth:`RunContext.loss_fn`;
            for a config run the :func:`landscape.bridge.make_batch` dict with the model state
            and noise key, for a plain loss the batch itself) — pass it to the run's loss functions.
        loss: () L(θ_t) on the minibatch with batch statistics (the training loss).
        grad: ∇L(θ_t), like ``params`` — the gradient the step applies.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    batch: dict[str, Any]
    loss: jax.Array
    grad: Any


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What stays fixed during a run; handed to :meth:`Hook.setup` once.

    ``loss_fn(mode)`` gives the run's pure ``loss_fn(params, batch)`` in a normalization mode
    (``"batch_stats"``: the training loss; ``"running_average"``: eval behaviour), built once;
    its ``batch`` is :attr:`StepInputs.batch`. ``mesh`` is the run's device mesh
    (:mod:`landscape.parallel`): the state is replicated over it and every minibatch split along
    its axis; None on one device. ``model`` (an NNX module, structure only) and ``config`` (a
    :class:`~landscape.config.TrainConfig`) are set for runs described by a config, None for
    :func:`~landscape.engine.fit`.
    """

    objective: Objective
    tx: optax.GradientTransformation
    mesh: Mesh | None = None  # the run's data-parallel mesh (None: one device)
    model: Any = None
    config: TrainConfig | None = None
    lr: Callable[[Any], Any] | None = None  # the learning rate at step t, when the run knows it
    _losses: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def loss_fn(self, mode: str = "batch_stats") -> Callable[[Any, Any], jax.Array]:
        if mode not in self._losses:
            self._losses[mode] = self.objective.loss_fn(mode)
        return self._losses[mode]


class Hook:
    """Base class of a scheduled measurement (see the module docstring for the protocol).

    Subclasses set ``name`` and ``schedule`` and implement :meth:`measure`; ``jit = False`` runs
    ``measure`` eagerly (host code allowed, e.g. NumPy). Names must be unique within a run and not
    one of the loop's own record files (``train``, ``eval``, ``run``, ``config``).
    """

    name: str = "hook"
    schedule: Schedule = Schedule()
    jit: bool = True

    def due(self, step: int) -> bool:
        return self.schedule.due(step)

    def setup(self, run: RunContext) -> None:
        """Build what ``measure`` needs (loss functions, masks); called once before training."""

    def init(self, params: Any, *, key: jax.Array) -> Any:
        """The carry before the first measurement (a pytree of arrays, or None)."""
        return None

    def measure(self, carry: Any, inputs: StepInputs) -> tuple[Any, Any]:
        """``(result, new_carry)``; pure and jit-compatible unless ``jit`` is False."""
        raise NotImplementedError

    def record(self, step: int, result: Any) -> dict[str, Any]:
        """The JSON record of one result (host arrays): every NamedTuple field / dict entry."""
        fields = result._asdict() if hasattr(result, "_asdict") else dict(result)
        return {"step": int(step), **to_jsonable(fields)}


def probe_record(step: int, result: probes.StepProbe, *, tag: str = "") -> dict[str, Any]:
    """The JSON record of one Figure-4 probe: every field plus the band summaries."""
    rec: dict[str, Any] = {"step": int(step), "tag": tag}
    rec.update({k: np.asarray(v).tolist() for k, v in result._asdict().items()})
    rec.update(probes.summarize(result))
    return rec


class StepProbeHook(Hook):
    """Santurkar et al.'s Figure-4 probe at θ_t on step t's minibatch, plus ‖∇L‖ per layer.

    Writes ``probes.jsonl``: every :class:`~landscape.probes.StepProbe` field, the band summaries
    and ``grad_norm_per_layer``. In ``mode="batch_stats"`` (the paper's loss) the probe reuses the
    step's own gradient (``fuse=True``: K + 1 gradients per probed step including the step itself,
    plus one for the rounding floor); in ``"running_average"`` mode it computes its own.

    On several devices (a run's mesh) the K points are laid out by ``layout``: ``"data"`` — every
    point on every device, each on its share of the minibatch (like the training step);
    ``"points"`` — each device evaluates ⌈K/n⌉ points on the whole minibatch
    (:func:`landscape.parallel.spread_points`); ``"auto"`` — ``"points"`` when K ≥ n devices,
    else ``"data"`` (see :func:`landscape.parallel.points_mesh`). One device: the layout changes
    nothing. ``floor_factor``, ``floor_eps`` and ``strategy`` are :func:`landscape.probes.step_probe`'s.
With ``strategy="auto"`` (default) or ``"host"`` on one process and without the points layout,
the hook runs eagerly (``jit = False``, like :class:`CurvatureHook`'s host loop): the probe
times its layouts once per shape and keeps the fastest (or loops over one compiled point), is
handed the step's own (L, g), and the per-leaf norms stay jitted; records equal those of an
explicit strategy. Otherwise the probe is traced into the jitted measurement (``"auto"``: the
static rule, ``"unroll"`` on CPU).

    ``direction="gradient"`` (default, the paper's) probes θ_t − η·g_t. ``direction="update"``
    probes along the step the optimizer takes, Δ_t = θ_{t+1} − θ_t = ``tx.update(g_t, opt_state_t,
    θ_t)`` (Adam's preconditioned, momentum-carrying step, weight decay included): the points
    θ_t + η·Δ_t, so η = 1 is the next iterate, and the gradient change and effective β are divided
    by ‖ηΔ_t‖. Its records go to ``probes_update.jsonl`` by default (``direction`` in each), so
    both directions can run in one run. It needs the run's optimizer and state (``fit``/``train``
    provide them; :func:`~landscape.engine.attach` takes ``optimizer=`` and ``opt_state=``).

    Example:
        >>> hook = StepProbeHook(step_sizes=probes.lr_multiples(0.1), schedule=Schedule(every=20))
        >>> train(config, "runs/x", hooks=[hook])   # a config without its own probe schedule
    """

    def __init__(self, *, step_sizes: Sequence[float] | np.ndarray, schedule: Schedule = Schedule(),
                 mode: str = "batch_stats", strategy: str = "auto", tag: str = "",
                 name: str | None = None, fuse: bool = True,
                 floor_factor: float = probes.DEFAULT_FLOOR_FACTOR, layout: str = "auto",
                 floor_eps: float | None = None, direction: str = "gradient"):
        self.step_sizes = np.asarray(step_sizes, dtype=np.float64)  # cast to θ's dtype in the probe
        if self.step_sizes.ndim != 1 or self.step_sizes.size == 0:
            raise ValueError("step_sizes must be a non-empty 1-D sequence")
        bridge.check_mode(mode)
        if direction not in ("gradient", "update"):
            raise ValueError(f"direction={direction!r}; expected 'gradient' or 'update'")
        self.direction = direction
        name = name or ("probes" if direction == "gradient" else "probes_update")
        self.name, self.schedule, self.mode, self.tag = name, schedule, mode, tag
        self.fuse = fuse and mode == "batch_stats"
        self.strategy, self.floor_factor, self.floor_eps = strategy, floor_factor, floor_eps
        self.layout = parallel.check_layout(layout)

    def setup(self, run: RunContext) -> None:
        if self.direction == "update" and run.tx is None:
            raise ConfigError("StepProbeHook(direction='update') needs the optimizer: fit and "
                              "train pass it; attach(..., optimizer=tx)")
        self.tx = run.tx
        self.loss_fn = run.loss_fn(self.mode)
        self.points_mesh = parallel.points_mesh(self.layout, len(self.step_sizes), run.mesh)
        # "auto" measures and "host" loops over compiled points: both need concrete arrays, so
        # the hook runs eagerly (one process, no points layout) with its small pieces jitted.
        self.jit = not (self.strategy in ("auto", "host") and jax.process_count() == 1
                        and self.points_mesh is None)
        if self.jit:
            self._probe = probes.step_probe_fn(
                self.loss_fn, strategy=self.strategy, floor_factor=self.floor_factor,
                mesh=self.points_mesh, floor_eps=self.floor_eps)
        else:
            self._value_and_grad = jax.jit(jax.value_and_grad(self.loss_fn))
            self._update_direction = jax.jit(self.update_direction)
            self._per_leaf = jax.jit(_per_leaf_norms, static_argnums=1)

    def update_direction(self, inputs: StepInputs) -> Any:
        """−Δ_t, so that the probe's points θ − η·d are θ_t + η·Δ_t."""
        if inputs.opt_state is None:
            raise ConfigError("StepProbeHook(direction='update') needs the optimizer state of the "
                              "step: pass opt_state= to attach(...).step")
        updates, _ = self.tx.update(inputs.grad, inputs.opt_state, inputs.params)
        return jax.tree.map(lambda u, p: -jnp.asarray(u, jnp.result_type(p)), updates, inputs.params)

    def measure(self, carry, inputs: StepInputs):
        if not self.jit:
            return self._measure_eagerly(inputs), carry
        fused = (inputs.loss, inputs.grad) if self.fuse else None
        direction = self.update_direction(inputs) if self.direction == "update" else None
        result = self._probe(inputs.params, inputs.batch, self.step_sizes, direction, fused)
        grad = inputs.grad if self.fuse else jax.grad(self.loss_fn)(inputs.params, inputs.batch)
        return (result, _per_leaf_norms(grad, result.grad_norm.dtype)), carry

    def _measure_eagerly(self, inputs: StepInputs):
        """The probe measured (``"auto"``) or as a host loop, always handed (L(θ), g): the step's
        own when fused, else one jitted value_and_grad that also gives the per-leaf norms."""
        if self.fuse:
            loss, grad = inputs.loss, inputs.grad
        else:
            loss, grad = self._value_and_grad(inputs.params, inputs.batch)
        direction = self._update_direction(inputs) if self.direction == "update" else None
        result = probes.step_probe(self.loss_fn, inputs.params, inputs.batch, self.step_sizes,
                                   direction=direction, value_and_grad=(loss, grad),
                                   strategy=self.strategy, floor_factor=self.floor_factor,
                                   floor_eps=self.floor_eps)
        return result, self._per_leaf(grad, result.grad_norm.dtype)

    def record(self, step: int, result) -> dict[str, Any]:
        probe, per_leaf = result
        rec = probe_record(step, probe, tag=self.tag)
        rec["grad_norm_per_layer"] = probes.per_leaf_dict(per_leaf)
        if self.direction == "update":
            rec["direction"] = "update"
        return rec


def _per_leaf_norms(grad: Any, dtype) -> Any:
    """‖∇_leaf L‖₂ for every leaf of ``grad``, in ``dtype`` (the probe's result dtype)."""
    return jax.tree.map(lambda g: optax.tree.norm(g).astype(dtype), grad)


class Curvature(NamedTuple):
    """One :class:`CurvatureHook` result (scalars; ``eigenvalues`` (k,), largest first)."""

    eigenvalues: jax.Array         # top-k Hessian eigenvalues λ₁ ≥ … ≥ λ_k (λ₁ = λ_max, the β)
    residuals: jax.Array           # (k,) Lanczos residual estimates ‖Hv − λv‖
    gradient_curvature: jax.Array  # gᵀHg/‖g‖², the curvature along the step direction
    grad_norm: jax.Array           # ‖g‖
    preconditioned: jax.Array | None = None  # top-k of P^{-1/2} H P^{-1/2} (preconditioned=...)


class CurvatureHook(Hook):
    """The local smoothness β = λ_max(∇²L) every N steps, next to the Figure-4 proxy.

    At a due step t, on step t's minibatch in BatchNorm ``mode`` (recorded with every result):
    the top-``k`` Hessian eigenvalues by Lanczos (:func:`landscape.probes.hessian_eigs`,
    ``num_iters`` Hessian-vector products), **warm-started** from the previous top eigenvector
    (the carry, saved in checkpoints), and the curvature along the gradient gᵀHg/‖g‖²
    (:func:`landscape.probes.gradient_curvature`). Writes ``curvature.jsonl``. On CPU the Lanczos
    loop runs from the host over one compiled step (XLA:CPU runs convolutions inside a while loop
    ~10× slower), so the hook is not jitted there (one process; a multi-process run uses the jitted scan);
    elsewhere the whole measurement is one jit.

    ``preconditioned=True`` also records the top-``k`` eigenvalues of the *preconditioned* Hessian
    P^{-1/2} H P^{-1/2} (the spectrum of P⁻¹H: the sharpness Adam sees, Cohen et al. 2022), with P
    the preconditioner of the step taken at t — built from the optimizer state *after* update t
    (ν_{t+1}, which includes g_t², the denominator of Δ_t) by
    :func:`landscape.probes.adam_preconditioner`
    (``preconditioner_options`` are its keyword arguments: ``b2``, ``eps``, ``b1`` …, matching
    the optimizer's), or by a callable ``preconditioned(opt_state) -> P``; warm-started from its
    own previous top eigenvector, at the same ``num_iters`` HVPs. Fields
    ``preconditioned_eigenvalues`` and ``preconditioned_lambda_max``.

    Example:
        >>> hook = CurvatureHook(every=20, num_iters=20)
        >>> train(config, "runs/x", hooks=[hook])   # runs/x/curvature.jsonl
    """

    def __init__(self, *, every: int = 20, at: Sequence[int] = (), k: int = 1, num_iters: int = 20,
                 mode: str = "batch_stats", name: str = "curvature", strategy: str = "auto",
                 preconditioned: bool | Callable[[Any], Any] = False,
                 preconditioner_options: Mapping[str, Any] | None = None):
        bridge.check_mode(mode)
        if preconditioned is True:
            options = dict(preconditioner_options or {})
            preconditioned = lambda opt_state: probes.adam_preconditioner(opt_state, **options)  # noqa: E731
        self.preconditioner = preconditioned or None
        self.name, self.schedule, self.mode = name, Schedule(int(every), tuple(at)), mode
        self.k, self.num_iters = int(k), int(num_iters)
        if strategy == "auto":  # the host loop reads values back: one process only
            single = jax.process_count() == 1
            strategy = "host" if jax.default_backend() == "cpu" and single else "scan"
        self.strategy = strategy
        self.jit = strategy != "host"

    def setup(self, run: RunContext) -> None:
        if self.preconditioner is not None and run.tx is None:
            raise ConfigError("CurvatureHook(preconditioned=...) needs the run's optimizer")
        self.loss_fn, self.tx = run.loss_fn(self.mode), run.tx

    def init(self, params, *, key):
        # a fixed random start; each later measurement starts from the previous top eigenvector
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        start = jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(p), jnp.result_type(p))
                                             for k, p in zip(keys, leaves)])
        return start if self.preconditioner is None else (start, start)

    def _top(self, inputs: StepInputs, init, preconditioner=None):
        eigs = probes.hessian_eigs(self.loss_fn, inputs.params, inputs.batch, self.k,
                                   key=jax.random.key(0), num_iters=self.num_iters, init=init,
                                   strategy=self.strategy, preconditioner=preconditioner)
        return eigs, jax.tree.map(lambda v: v[0], eigs.eigenvectors)

    def measure(self, carry, inputs: StepInputs):
        plain_init = carry if self.preconditioner is None else carry[0]
        eigs, top = self._top(inputs, plain_init)
        along = probes.gradient_curvature(self.loss_fn, inputs.params, inputs.batch)
        if self.preconditioner is None:
            return Curvature(eigs.eigenvalues, eigs.residuals, along.curvature, along.grad_norm), top
        if inputs.opt_state is None:
            raise ConfigError("CurvatureHook(preconditioned=...) needs the step's optimizer state")
        _, stepped = self.tx.update(inputs.grad, inputs.opt_state, inputs.params)
        pre, pre_top = self._top(inputs, carry[1], self.preconditioner(stepped))
        return (Curvature(eigs.eigenvalues, eigs.residuals, along.curvature, along.grad_norm,
                          pre.eigenvalues), (top, pre_top))

    def record(self, step: int, result) -> dict[str, Any]:
        rec = super().record(step, result)
        rec["lambda_max"] = rec["eigenvalues"][0]
        if rec.get("preconditioned") is not None:
            rec["preconditioned_eigenvalues"] = rec.pop("preconditioned")
            rec["preconditioned_lambda_max"] = rec["preconditioned_eigenvalues"][0]
        else:
            rec.pop("preconditioned", None)
        rec["mode"] = self.mode
        return rec


class CriticalSharpnessHook(Hook):
    """Critical sharpness λ_c = 2/η_c every N steps, from forward passes only (Kalra et al. 2026).

    At a due step t: η_c is the smallest learning rate at which one step raises the minibatch
    loss (:func:`landscape.probes.critical_sharpness`: exponential search from the current η_t,
    then bisection to a relative bracket ``tol``). ``direction="update"`` (default, the paper's)
    steps along the optimizer's own update per unit learning rate, d = −Δ_t/η_t (Adam's
    preconditioned step: λ_c then tracks the preconditioned sharpness); ``"gradient"`` along −g_t
    (plain GD: λ_c ≤ λ_max, = gᵀHg/gᵀg on a quadratic). Writes ``critical.jsonl``: ``sharpness``,
    ``critical_lr``, the bracket, ``loss0``, ``num_evals`` (forward passes), ``lr`` = η_t. Needs the
    run's learning rate (``fit(..., learning_rate=)``; a config run has it). Host-side (one
    compiled loss evaluation per trial), so not jitted.

    Example:
        >>> fit(loss_fn, params, optax.adam(1e-3), data, steps=1000, workdir="runs/c",
        ...     learning_rate=1e-3, hooks=[CriticalSharpnessHook(every=50)])
    """

    jit = False

    def __init__(self, *, every: int = 10, at: Sequence[int] = (), direction: str = "update",
                 tol: float = 1 / 16, max_evals: int = 40, mode: str = "batch_stats",
                 name: str = "critical"):
        if direction not in ("gradient", "update"):
            raise ValueError(f"direction={direction!r}; expected 'gradient' or 'update'")
        bridge.check_mode(mode)
        self.name, self.schedule, self.mode = name, Schedule(int(every), tuple(at)), mode
        self.direction, self.tol, self.max_evals = direction, float(tol), int(max_evals)

    def setup(self, run: RunContext) -> None:
        if run.lr is None:
            raise ConfigError("CriticalSharpnessHook needs the run's learning rate: "
                              "fit(..., learning_rate=...)")
        if self.direction == "update" and run.tx is None:
            raise ConfigError("CriticalSharpnessHook(direction='update') needs the optimizer")
        self.loss_fn, self.lr, tx = run.loss_fn(self.mode), run.lr, run.tx

        @jax.jit
        def per_unit_lr(inputs: StepInputs, lr):  # d = −Δ_t / η_t, or g_t
            if self.direction == "gradient":
                return inputs.grad
            updates, _ = tx.update(inputs.grad, inputs.opt_state, inputs.params)
            return jax.tree.map(lambda u: -u / lr, updates)

        self._direction = per_unit_lr

    def measure(self, carry, inputs: StepInputs):
        lr = float(np.asarray(self.lr(int(inputs.step))))
        direction = self._direction(inputs, lr)
        loss0 = float(inputs.loss) if self.mode == "batch_stats" else None
        result = probes.critical_sharpness(self.loss_fn, inputs.params, inputs.batch, direction,
                                           guess=lr, tol=self.tol, max_evals=self.max_evals,
                                           loss0=loss0)
        return {**result._asdict(), "lr": lr, "direction": self.direction}, carry

    def record(self, step: int, result) -> dict[str, Any]:
        return {"step": int(step), **to_jsonable(result)}


# --------------------------------------------------------------------- host-side measurements


class StepContext(NamedTuple):
    """What a host-side :class:`Measurement` sees at step t, before update t.

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
    """A named host-side measurement: ``fn(ctx: StepContext) -> dict`` on a schedule.

    Each result is appended to ``{name}.jsonl`` as ``{"step": t, **result}``. Prefer a
    :class:`Hook` (pure, jitted, no host round-trip); this form suits NumPy post-processing.

    Example:
        >>> Measurement("grad_norm", lambda ctx: {"value": 1.0}, Schedule(every=10))
    """

    name: str
    fn: Callable[[StepContext], Mapping[str, Any]]
    schedule: Schedule = Schedule()


class MeasurementHook(Hook):
    """Runs a :class:`Measurement` as a hook (eagerly, on the host)."""

    jit = False

    def __init__(self, measurement: Measurement):
        self.measurement = measurement
        self.name, self.schedule = measurement.name, measurement.schedule

    def setup(self, run: RunContext) -> None:
        self.run = run

    def measure(self, carry, inputs: StepInputs):
        ctx = StepContext(int(inputs.step), inputs.params, inputs.model_state, inputs.opt_state,
                          inputs.batch, self.run.model, self.run.tx, self.run.config)
        return dict(self.measurement.fn(ctx)), carry

    def record(self, step: int, result) -> dict[str, Any]:
        return {"step": int(step), **result}
