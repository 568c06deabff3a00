"""The step probe as a host loop: ONE compiled point evaluation, called once per step size.

``strategy="host"`` of :func:`landscape.probes.step_probe` computes what the traced layouts compute
(:mod:`landscape.probes._step`) with the same function per point, :func:`_point`:

    start:  (L(θ), g)                       one compiled value_and_grad (skipped when the caller
                                            passes the training step's own ``value_and_grad``),
                                            with d, ‖d‖₂, ε‖g‖₂ and θ ⊕ δ for the floor
    points: (L(θ − η_k d), ‖∇L(θ − η_k d) − g‖₂)   a Python loop over η_k of ONE compiled function
    floor:  ‖∇L(θ ⊕ δ − 0·d) − g‖₂           the same compiled function at η = 0 from θ ⊕ δ
                                            (θ ⊕ δ − 0·d is θ ⊕ δ exactly for a finite d)
    finish: β and the included η             a small compiled function of the K + 1 scalars

Its run time is that of a plain Python loop over the same K (+1) jitted gradients, by construction
(plus one gradient for L(θ), g when they are not passed); it compiles two gradient programs (one
when the step's gradient is passed) however large K is, where the unrolled layout compiles K + 2
gradients into one program. Each η is the same arithmetic as in the traced layouts (float64:
equal to ``"unroll"`` to rounding of reassociated norms). It needs concrete arrays: under
``jax.jit``/``vmap`` it is a ValueError (use ``"auto"``, which keeps a traced layout there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape.probes._checks import _is_traced
from landscape.probes._precision import (_FLOOR_ULPS, _evaluation_floor, _result_dtype,
                                         _rounding_perturbation, _tree_norm, _widen_low_precision)
from landscape.probes._step import StepProbe, _check_step_sizes, _effective_beta, _point, _start
from landscape.probes._strategy import _compiled
from landscape.probes._types import LossFn, PyTree


def _start_impl(loss_fn: LossFn, floor: bool, floor_eps: float | None, params: PyTree,
                batch: PyTree, direction: PyTree, value_and_grad) -> dict:
    """L(θ), g (native and in the result dtype), d, ‖d‖₂, ‖g‖₂ and, with ``floor``, θ ⊕ δ and the
    evaluation floor ε‖g‖₂: everything of the probe that is not a point."""
    dtype = _result_dtype(params)
    loss0, grad, direction = _start(loss_fn, params, batch, direction, value_and_grad)
    grad_acc = optax.tree.cast(grad, dtype)
    out = {"loss0": jnp.asarray(loss0, dtype), "grad": grad, "grad_acc": grad_acc,
           "grad_norm": optax.tree.norm(grad_acc).astype(dtype),
           "direction_norm": _tree_norm(direction, dtype)}
    if floor:
        out["perturbed"] = _rounding_perturbation(params, _FLOOR_ULPS, floor_eps)
        out["evaluation_floor"] = _evaluation_floor(grad_acc, params, floor_eps, dtype)
    return out


def _finish_impl(floor_factor: float, step_sizes: jax.Array, losses: tuple, changes: tuple,
                 start: dict, sensitivity: jax.Array | None) -> StepProbe:
    """The :class:`StepProbe` from the start values and the K point values (and the floor's)."""
    dtype = step_sizes.dtype
    loss, grad_change = jnp.stack(losses), jnp.stack(changes)
    if sensitivity is None:
        floor = jnp.full((), jnp.nan, dtype)
    else:
        floor = jnp.maximum(sensitivity, start["evaluation_floor"])
    distance = jnp.abs(step_sizes) * start["direction_norm"]
    effective_beta, included = _effective_beta(loss, grad_change, distance, floor, floor_factor)
    return StepProbe(step_sizes=step_sizes, loss0=start["loss0"], grad_norm=start["grad_norm"],
                     loss=loss, grad_change=grad_change, effective_beta=effective_beta,
                     grad_change_floor=floor, beta_included=included)


_start_jit = _compiled(_start_impl, 3)
_point_jit = _compiled(_point, 1)
_finish_jit = _compiled(_finish_impl, 1)


def host_step_probe(loss_fn: LossFn, floor_factor: float, floor_eps: float | None, params: PyTree,
                    batch: PyTree, step_sizes, direction: PyTree = None,
                    value_and_grad: tuple[jax.Array, PyTree] | None = None) -> StepProbe:
    """:func:`landscape.probes.step_probe` with ``strategy="host"`` (arguments checked there):
    the start, then one compiled point per η_k in a Python loop, the floor, the finish."""
    if _is_traced(params, batch, step_sizes, direction, value_and_grad):
        raise ValueError(
            "strategy='host' runs a Python loop of one compiled point and needs concrete arrays; "
            "under jax.jit/vmap use strategy='auto' (or 'unroll', 'vmap', 'map').")
    params, direction, value_and_grad = _widen_low_precision(params, direction, value_and_grad)
    params, batch = jax.tree.map(_on_device, (params, batch))  # moved once, not once per η
    dtype = _result_dtype(params)
    etas = np.asarray(step_sizes, dtype=dtype)
    _check_step_sizes(etas)
    floor = floor_factor > 0
    start = _start_jit(loss_fn, floor, floor_eps, params, batch, direction, value_and_grad)
    grad, grad_acc, perturbed = start.pop("grad"), start.pop("grad_acc"), start.pop("perturbed", None)
    d = grad if direction is None else direction
    losses, changes = zip(*[_point_jit(loss_fn, params, batch, d, grad_acc, eta) for eta in etas])
    sensitivity = None
    if floor:
        _, sensitivity = _point_jit(loss_fn, perturbed, batch, d, grad_acc, np.zeros((), dtype))
    return _finish_jit(floor_factor, jnp.asarray(etas), losses, changes, start, sensitivity)


def _on_device(leaf):
    """A NumPy leaf as a device array (a jit call would transfer it again for every point)."""
    return jnp.asarray(leaf) if isinstance(leaf, (np.ndarray, np.generic)) else leaf
