"""Loss-landscape probes along a direction: loss variation, gradient predictiveness, effective β.

These are the measurements behind Figure 4 of Santurkar et al., "How Does Batch Normalization Help
Optimization?" (NeurIPS 2018, Sec. 3.2 and App. A.2.2). At parameters θ with gradient
g = ∇L(θ) on a minibatch, the probe looks at the points θ − η·d for a range of step sizes η
(by default d = g) and records

- loss variation          L(θ − η d)                                  (Fig. 4a, a band over η),
- gradient predictiveness ‖∇L(θ − η d) − g‖₂                          (Fig. 4b, a band over η),
- effective β-smoothness  max_η ‖∇L(θ − η d) − g‖₂ / ‖η d‖₂           (Fig. 4c, one number).

The best-known public notebook reproducing Fig. 4c forgets to divide by the distance ‖η d‖₂
(it plots max_η ‖∇L(θ − η d) − g‖₂); this module divides.

**Which η enter β.** Entries with |η_k|·‖d‖₂ = 0 are 0/0 and left out of the max, and so are
entries whose gradient change is not clearly above the rounding floor (more than ``floor_factor``
floors, :mod:`landscape.probes._precision`): for small η the two gradients agree in most of their
digits and their difference is rounding, which the max over η would otherwise report as β
(float32 deep linear net: 1.7× too large). ``beta_included`` marks the entries used. If none is,
``effective_beta`` is NaN. A NaN loss or gradient change at an included point (a diverged point)
gives NaN. The floor costs one more gradient. Whenever no η clears the floor, β is NaN and
``beta_included`` is all False — the record's ``num_beta_excluded`` says so.

**Dtypes.** Results are in the params' float dtype (float32 → float32, float64 → float64). Each
probed point keeps every leaf's own dtype, except that bfloat16/float16 parameters are probed in
float32 copies (:mod:`landscape.probes._precision`, "Low precision").

**Layout and compilation.** The K evaluations are laid out by ``strategy``
(:mod:`landscape.probes._strategy`, "Points"): ``"unroll"``, ``"vmap"``, ``"map"``, ``"host"`` (a
Python loop of one compiled point, :mod:`landscape.probes._step_host`) or ``"auto"``. ``"auto"``
on concrete arrays times its candidates once per compiled shape and keeps the fastest
(:func:`landscape.probes.choose_strategy`, :mod:`landscape.probes._step_choice`); under a trace
it is ``"vmap"`` on GPU/TPU, ``"unroll"`` on CPU, and ``"vmap"`` whenever ``chunk_size`` is given.
With a ``mesh`` the K points are spread over its devices (the *points* layout,
:func:`landscape.parallel.spread_points`: each device evaluates ⌈K/n⌉ step sizes on the whole
minibatch); without one, a minibatch sharded over devices gives the *data* layout (every point on
every device, each on its share of the batch). :func:`step_probe` is jitted internally, keyed on
``loss_fn`` (which must be hashable; pass the same function object each time, not a fresh lambda,
or build a probe once with :func:`make_step_probe`); it also works inside an outer ``jax.jit``,
e.g. ``jax.jit(step_probe, static_argnums=0, static_argnames=("strategy", "chunk_size"))``.
:func:`step_probe_fn` gives the same probe unjitted, to trace inside a compiled training step.
This module holds the probe's math and its traced layouts; :func:`step_probe`,
:func:`make_step_probe` and the measured choice live in :mod:`landscape.probes._step_choice`.

Every function takes the toolkit's one loss signature, ``loss_fn(params, batch) -> scalar``, with
``params`` and ``batch`` arbitrary pytrees. The probe functions are pure and jit-compatible and
never print.

Example::

    import jax.numpy as jnp
    from landscape import probes

    def loss_fn(params, batch):
        return 0.5 * jnp.sum((batch["x"] @ params["w"] - batch["y"]) ** 2)

    r = probes.step_probe(loss_fn, params, batch, probes.lr_multiples(0.1))
    r.effective_beta        # scalar
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from landscape.choices import check_number
from landscape.parallel import spread_points
from landscape.probes._checks import _check_direction
from landscape.probes._precision import (_FLOOR_ULPS, _check_floor_eps, _evaluation_floor,
                                         _result_dtype, _rounding_perturbation, _tree_norm,
                                         _widen_low_precision)
from landscape.probes._strategy import _compiled, _resolve_point_strategy, map_with_strategy
from landscape.probes._types import LossFn, PyTree

__all__ = [
    "DEFAULT_FLOOR_FACTOR",
    "GradNorms",
    "StepProbe",
    "grad_norms",
    "lr_multiples",
    "step_probe_fn",
    "summarize",
]

#: Default ``floor_factor``: an η enters the effective β only when its gradient change exceeds this
#: many rounding floors (then rounding moves the ratio by ≲ 1/floor_factor, and typically by its square).
DEFAULT_FLOOR_FACTOR = 10.0


class StepProbe(NamedTuple):
    """Result of :func:`step_probe` (shapes: ``K`` = number of step sizes).

    Attributes:
      step_sizes: (K,) the absolute step sizes η_k, in the order given.
      loss0: () L(θ).
      grad_norm: () ‖g‖₂ with g = ∇L(θ) — always the gradient, even for a custom direction.
      loss: (K,) L(θ − η_k d)  (Fig. 4a, "loss variation").
      grad_change: (K,) ‖∇L(θ − η_k d) − g‖₂  (Fig. 4b, "gradient predictiveness").
      effective_beta: () max_k grad_change_k / (|η_k|·‖d‖₂)  (Fig. 4c), over the *included* k
        (``beta_included``); NaN when no k is included, and NaN when an included point's loss or
        gradient change is not finite (a diverged point has no finite smoothness).
      grad_change_floor: () the rounding floor of ``grad_change``, the larger of two bounds: the
        *sensitivity* ‖∇L(θ ⊕ δ) − g‖₂ for a perturbation δ of one unit in the last place of each
        parameter, computed in the same precision, and the *evaluation* floor ε·‖g‖₂ — one unit
        of the arithmetic's resolution ε in every entry of g, the rounding of evaluating a
        gradient at all (it dominates when much of g does not move with θ: a strong linear
        term, a large bias gradient, a loss summed over many samples). NaN when the floor was not
        measured (``floor_factor=0``). A gradient change not clearly above it is mostly rounding.
      beta_included: (K,) bool, the k entering ``effective_beta``: |η_k|·‖d‖₂ > 0 and
        grad_change_k > floor_factor · grad_change_floor.
    """

    step_sizes: jax.Array
    loss0: jax.Array
    grad_norm: jax.Array
    loss: jax.Array
    grad_change: jax.Array
    effective_beta: jax.Array
    grad_change_floor: jax.Array
    beta_included: jax.Array


class GradNorms(NamedTuple):
    """Result of :func:`grad_norms`.

    Attributes:
      total: () ‖∇L(θ)‖₂ over all parameters.
      per_leaf: pytree like ``params``; each leaf is the () norm ‖∇_leaf L(θ)‖₂ of that leaf's
        gradient block. ``total == sqrt(sum(per_leaf**2))``.
    """

    total: jax.Array
    per_leaf: PyTree


# ----------------------------------------------------------------------------------------------
# the traced probe


def _check_step_sizes(step_sizes: jax.Array) -> jax.Array:
    step_sizes = jnp.asarray(step_sizes)
    if step_sizes.ndim != 1 or step_sizes.shape[0] < 1:
        raise ValueError(
            f"step_sizes must be a 1-D array with at least one entry; got shape {step_sizes.shape}."
        )
    return step_sizes


def _start(loss_fn: LossFn, params: PyTree, batch: PyTree, direction: PyTree,
           value_and_grad: tuple[jax.Array, PyTree] | None) -> tuple[jax.Array, PyTree, PyTree]:
    """``(L(θ), g, d)``: the loss and gradient at θ (computed, or a training step's own) and the
    direction (g unless given), checked against ``params``."""
    if value_and_grad is None:
        loss0, grad = jax.value_and_grad(loss_fn)(params, batch)
    else:  # fused with a training step that already computed L(θ) and g on this batch
        loss0, grad = value_and_grad
        _check_direction(params, grad, what="value_and_grad's gradient")
    if direction is None:
        direction = grad
    else:
        _check_direction(params, direction)
    return loss0, grad, direction


def _grad_change(grad_moved: PyTree, grad_acc: PyTree, dtype) -> jax.Array:
    """‖∇L(θ') − g‖₂, accumulated in ``dtype`` (``grad_acc``: g already in ``dtype``)."""
    return optax.tree.norm(optax.tree.sub(optax.tree.cast(grad_moved, dtype), grad_acc))


def _point(loss_fn: LossFn, params: PyTree, batch: PyTree, direction: PyTree, grad_acc: PyTree,
           eta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(L(θ − η d), ‖∇L(θ − η d) − g‖₂) at one step size, in the result dtype of ``params``: the
    evaluation every layout repeats (the host layout calls it compiled, once per η)."""
    dtype = _result_dtype(params)
    # θ − η d, each leaf kept in its own dtype.
    moved = optax.tree.cast_like(optax.tree.add_scale(params, -eta, direction), params)
    loss, grad_moved = jax.value_and_grad(loss_fn)(moved, batch)
    return jnp.asarray(loss, dtype), _grad_change(grad_moved, grad_acc, dtype).astype(dtype)


def _along(loss_fn: LossFn, strategy: str, chunk_size: int | None, mesh: Mesh | None,
           params: PyTree, batch: PyTree, step_sizes: jax.Array, direction: PyTree,
           grad_acc: PyTree) -> tuple[jax.Array, jax.Array]:
    """(K,) losses L(θ − η_k d) and (K,) gradient changes, laid out by ``strategy`` (and over
    ``mesh``'s devices when given: each device evaluates K/n step sizes on the whole minibatch)."""

    def evaluate(etas: jax.Array, params, batch, direction, grad_acc):
        """(loss, grad_change) at θ − η d for every η of ``etas`` (this device's share)."""
        return map_with_strategy(functools.partial(_point, loss_fn, params, batch, direction, grad_acc),
                                 etas, strategy, chunk_size)

    return spread_points(evaluate, step_sizes, params, batch, direction, grad_acc, mesh=mesh)


def _rounding_floor(loss_fn: LossFn, floor_factor: float, floor_eps: float | None, dtype,
                    params: PyTree, batch: PyTree, grad_acc: PyTree) -> jax.Array:
    """``grad_change_floor``: max(sensitivity, evaluation floor), NaN when ``floor_factor`` = 0."""
    if not floor_factor > 0:
        return jnp.full((), jnp.nan, dtype)
    perturbed = _rounding_perturbation(params, _FLOOR_ULPS, floor_eps)
    sensitivity = _grad_change(jax.grad(loss_fn)(perturbed, batch), grad_acc, dtype).astype(dtype)
    return jnp.maximum(sensitivity, _evaluation_floor(grad_acc, params, floor_eps, dtype))


def _effective_beta(loss, grad_change, distance, floor, floor_factor: float):
    """``(β, included)``: max over the included η of grad_change / distance (see :class:`StepProbe`)."""
    included = distance > 0
    if floor_factor > 0:
        # NaN changes stay included so that a diverged point yields a NaN β
        included = included & ~(grad_change <= floor_factor * floor)
    ratio = grad_change / jnp.where(included, distance, 1)
    ratio = jnp.where(jnp.isfinite(loss), ratio, jnp.nan)  # a NaN loss has no finite smoothness
    ratio = jnp.where(included, ratio, -jnp.inf)
    beta = jnp.where(jnp.any(included), jnp.max(ratio), jnp.nan).astype(distance.dtype)
    return beta, included


def _step_probe_impl(
    loss_fn: LossFn,
    strategy: str,
    chunk_size: int | None,
    floor_factor: float,
    mesh: Mesh | None,
    floor_eps: float | None,
    params: PyTree,
    batch: PyTree,
    step_sizes: jax.Array,
    direction: PyTree = None,
    value_and_grad: tuple[jax.Array, PyTree] | None = None,
) -> StepProbe:
    """The traced body of :func:`step_probe`, :func:`make_step_probe` and :func:`step_probe_fn`."""
    params, direction, value_and_grad = _widen_low_precision(params, direction, value_and_grad)
    dtype = _result_dtype(params)
    step_sizes = _check_step_sizes(step_sizes).astype(dtype)
    loss0, grad, direction = _start(loss_fn, params, batch, direction, value_and_grad)
    grad_acc = optax.tree.cast(grad, dtype)
    loss, grad_change = _along(loss_fn, strategy, chunk_size, mesh, params, batch, step_sizes,
                               direction, grad_acc)
    floor = _rounding_floor(loss_fn, floor_factor, floor_eps, dtype, params, batch, grad_acc)
    distance = jnp.abs(step_sizes) * _tree_norm(direction, dtype)
    effective_beta, included = _effective_beta(loss, grad_change, distance, floor, floor_factor)
    return StepProbe(
        step_sizes=step_sizes,
        loss0=jnp.asarray(loss0, dtype),
        grad_norm=optax.tree.norm(grad_acc).astype(dtype),
        loss=loss,
        grad_change=grad_change,
        effective_beta=effective_beta,
        grad_change_floor=floor,
        beta_included=included,
    )


_step_probe_jit = _compiled(_step_probe_impl, 6)


# ----------------------------------------------------------------------------------------------
# the traceable probe


def step_probe_fn(
    loss_fn: LossFn, *, strategy: str = "auto", chunk_size: int | None = None,
    floor_factor: float = DEFAULT_FLOOR_FACTOR, mesh: Mesh | None = None,
    floor_eps: float | None = None,
) -> Callable[..., StepProbe]:
    """The step probe of ``loss_fn`` as a pure, unjitted ``probe(params, batch, step_sizes,
    direction=None, value_and_grad=None) -> StepProbe``, to trace inside your own compiled step.

    The same computation as :func:`step_probe`, with g = ∇L(θ), d = ``direction`` (default g):

        loss_k = L(θ − η_k d),   grad_change_k = ‖∇L(θ − η_k d) − g‖₂,
        effective_β = max_k grad_change_k / (|η_k| ‖d‖₂)   over k clearly above the rounding floor,

    with ``loss_fn``, ``strategy`` (``"auto"`` resolved now by the static rule of the current
    default backend: ``"unroll"`` on CPU, ``"vmap"`` elsewhere — nothing is measured under a
    trace), ``chunk_size``, ``floor_factor``, ``mesh`` and ``floor_eps`` fixed. Not jitted: call
    it under ``jax.jit`` (a training step that passes its own ``value_and_grad``), or use
    :func:`make_step_probe` for a jitted one.

    Args:
      loss_fn, strategy, chunk_size, floor_factor, mesh, floor_eps: see :func:`step_probe`
        (``strategy="host"`` is a ValueError: it cannot be traced).

    Returns:
      The probe function (traceable, no side effects).

    Reference:
      Santurkar et al. (2018), Fig. 4, App. A.2.2.

    Example::

        probe = step_probe_fn(loss_fn)

        @jax.jit
        def train_step(params, batch):
            loss, grad = jax.value_and_grad(loss_fn)(params, batch)
            return probe(params, batch, lr_multiples(0.1), value_and_grad=(loss, grad))
    """
    resolved = _resolve_point_strategy(strategy, chunk_size)
    if resolved == "host":
        raise ValueError("step_probe_fn builds a probe to trace inside jax.jit, where strategy "
                         "'host' (a Python loop of compiled points) cannot run; use "
                         "make_step_probe(strategy='host') or step_probe(strategy='host').")
    floor_factor = float(check_number("floor_factor", floor_factor, minimum=0))
    body = functools.partial(_step_probe_impl, loss_fn, resolved, chunk_size, floor_factor, mesh,
                             _check_floor_eps(floor_eps))

    def probe(params: PyTree, batch: PyTree, step_sizes: jax.Array, direction: PyTree = None,
              value_and_grad: tuple[jax.Array, PyTree] | None = None):
        return body(params, batch, step_sizes, direction, value_and_grad)

    name = getattr(loss_fn, "__name__", "loss_fn")
    probe.__name__ = probe.__qualname__ = f"step_probe[{name}]"
    probe.__doc__ = (
        f"step_probe of {name} (strategy {resolved!r}, chunk_size {chunk_size}): probe(params, "
        "batch, step_sizes, direction=None, value_and_grad=None) -> StepProbe."
    )
    return probe


# ----------------------------------------------------------------------------------------------
# step-size ranges


def lr_multiples(lr: float, lo: float = 0.5, hi: float = 4.0, num: int = 8) -> np.ndarray:
    """``num`` evenly spaced step sizes from ``lo·lr`` to ``hi·lr`` (both included).

    η_k = lr·(lo + k·(hi − lo)/(num − 1)), k = 0…num−1 (just ``lo·lr`` when num = 1). The paper's
    VGG range is [½, 4] × lr (lr 0.1 → [0.05, 0.4]); its deep linear network uses [1/100, 30] × lr.
    The number of points is unstated; reproductions use 8 or 13.

    Args:
      lr: learning rate, finite and > 0.
      lo, hi: multiples of ``lr`` at the ends, finite, 0 < lo ≤ hi.
      num: number of step sizes, an int ≥ 1.

    Returns:
      float64 NumPy array of shape (num,) (cast to the params' dtype by :func:`step_probe`).

    Raises:
      ValueError: naming the bad argument.

    Reference:
      Santurkar et al. (2018), App. A.2.2.

    Example::

        >>> lr_multiples(0.1)
        array([0.05, 0.1 , 0.15, 0.2 , 0.25, 0.3 , 0.35, 0.4 ])
    """

    for name, value in (("lr", lr), ("lo", lo), ("hi", hi)):
        check_number(name, value, minimum=0, strict=True)
    if hi < lo:
        raise ValueError(f"need lo <= hi; got lo={lo!r}, hi={hi!r}.")
    check_number("num", num, minimum=1, integer=True)
    lr, lo, hi = float(lr), float(lo), float(hi)
    return lr * np.linspace(lo, hi, int(num), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# gradient norms


def _grad_norms_impl(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradNorms:
    dtype = _result_dtype(params)
    grad = optax.tree.cast(jax.grad(loss_fn)(params, batch), dtype)
    per_leaf = jax.tree.map(lambda leaf: optax.tree.norm(leaf).astype(dtype), grad)
    return GradNorms(total=optax.tree.norm(grad).astype(dtype), per_leaf=per_leaf)


_grad_norms_jit = _compiled(_grad_norms_impl, 1)


def grad_norms(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradNorms:
    """Global and per-leaf gradient norms ‖∇L(θ)‖₂ (the Lipschitzness of the loss).

    total = ‖∇L(θ)‖₂ = sqrt(Σ_leaves ‖∇_leaf L(θ)‖₂²); per_leaf holds each ‖∇_leaf L(θ)‖₂ (a layer's
    norm is the root-sum-square of its leaves, e.g. kernel and bias). Jitted internally (keyed on
    ``loss_fn``); works inside ``jax.jit``. Dtypes as in :func:`step_probe`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ.
      batch: pytree passed to ``loss_fn``.

    Returns:
      :class:`GradNorms` ``(total, per_leaf)``.

    Reference:
      Santurkar et al. (2018), Sec. 3.2 (Lipschitzness of the loss, Fig. 4a) and Sec. 4.

    Example::

        >>> n = grad_norms(lambda p, b: jnp.sum(p["w"] * b), {"w": jnp.ones(2)},
        ...                jnp.array([3.0, 4.0]))
        >>> float(n.total), float(n.per_leaf["w"])
        (5.0, 5.0)
    """
    return _grad_norms_jit(loss_fn, params, batch)


# ----------------------------------------------------------------------------------------------
# records


def summarize(probe: StepProbe) -> dict[str, float]:
    """Python-float summary of a :class:`StepProbe` for records (call outside ``jax.jit``).

    The Fig. 4 bands are [loss_min, loss_max] and [grad_change_min, grad_change_max] over η; NaNs
    propagate (a NaN anywhere in ``loss`` makes loss_min and loss_max NaN), so a diverged probe is
    visible in the record.

    Args:
      probe: a :class:`StepProbe` (concrete arrays).

    Returns:
      dict with float values: ``loss0``, ``loss_min``, ``loss_max``, ``grad_change_min``,
      ``grad_change_max``, ``effective_beta``, ``grad_norm``, ``step_size_min``, ``step_size_max``
      ``grad_change_floor`` (Python floats, NaN preserved), ``num_steps`` (K) and
      ``num_beta_excluded`` (how many η the effective β left out; Python ints).

    Reference:
      Santurkar et al. (2018), Fig. 4 (bands a, b; curve c).

    Example::

        record = summarize(step_probe(loss_fn, params, batch, lr_multiples(0.1)))
    """
    loss = np.asarray(probe.loss, dtype=np.float64)
    change = np.asarray(probe.grad_change, dtype=np.float64)
    steps = np.asarray(probe.step_sizes, dtype=np.float64)
    return {
        "loss0": float(probe.loss0),
        "loss_min": float(np.min(loss)),
        "loss_max": float(np.max(loss)),
        "grad_change_min": float(np.min(change)),
        "grad_change_max": float(np.max(change)),
        "effective_beta": float(probe.effective_beta),
        "grad_norm": float(probe.grad_norm),
        "step_size_min": float(np.min(steps)),
        "step_size_max": float(np.max(steps)),
        "num_steps": int(steps.shape[0]),
        "grad_change_floor": float(probe.grad_change_floor),
        "num_beta_excluded": int(np.sum(~np.asarray(probe.beta_included, dtype=bool))),
    }
