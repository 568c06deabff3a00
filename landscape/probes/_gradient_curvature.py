"""Curvature along the gradient: gᵀHg/‖g‖², the quadratic model's curvature along the step.

The second-order Taylor model along −g: L(θ − ηg) ≈ L − η‖g‖² + ½η²gᵀHg, so the step
η* = ‖g‖²/gᵀHg minimises it and a step η > 2‖g‖²/gᵀHg increases it. One gradient and one
Hessian-vector product (``jax.linearize`` of the gradient); no Lanczos.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from landscape.probes._precision import _result_dtype
from landscape.probes._strategy import _compiled
from landscape.probes._types import LossFn, PyTree

__all__ = ["GradientCurvature", "gradient_curvature"]


class GradientCurvature(NamedTuple):
    """Result of :func:`gradient_curvature`.

    Attributes:
      curvature: () gᵀHg/‖g‖² (NaN when g = 0).
      grad_norm: () ‖g‖₂.
    """

    curvature: jax.Array
    grad_norm: jax.Array


def _gradient_curvature_impl(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradientCurvature:
    dtype = _result_dtype(params)
    grad, hvp_fn = jax.linearize(lambda p: jax.grad(loss_fn)(p, batch), params)
    hg = hvp_fn(grad)
    grad_acc, hg_acc = optax.tree.cast(grad, dtype), optax.tree.cast(hg, dtype)
    sq_norm = optax.tree.vdot(grad_acc, grad_acc).astype(dtype)
    curv = jnp.where(sq_norm > 0, optax.tree.vdot(grad_acc, hg_acc) / jnp.where(sq_norm > 0, sq_norm, 1),
                     jnp.nan)
    return GradientCurvature(curv.astype(dtype), jnp.sqrt(sq_norm))


_gradient_curvature_jit = _compiled(_gradient_curvature_impl, 1)


def gradient_curvature(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradientCurvature:
    """Curvature along the gradient, gᵀHg/‖g‖², with g = ∇L(θ), and ‖g‖.

    The second-order Taylor model along −g: L(θ − ηg) ≈ L − η‖g‖² + ½η²gᵀHg, so the step
    η* = ‖g‖²/gᵀHg = 1/curvature minimises it, and a step η > 2/curvature increases the quadratic
    model. One gradient and one Hessian-vector product (``jax.linearize`` of the gradient).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ.
      batch: pytree passed to ``loss_fn``.

    Returns:
      :class:`GradientCurvature` ``(curvature (), grad_norm ())``; curvature is NaN when g = 0.

    Reference:
      Santurkar et al. (2018), Sec. 3.2 and Theorem 4.2 (the quadratic form gᵀHg/‖g‖² along the
      gradient); Cohen et al. (2021), Sec. 3 (directional sharpness).

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p ** 2)          # g = b·p, Hg = b²·p
        >>> r = gradient_curvature(loss_fn, jnp.ones(2), jnp.array([1.0, 3.0]))
        >>> round(float(r.curvature), 5), round(float(r.grad_norm) ** 2, 4)   # (1 + 27)/(1 + 9)
        (2.8, 10.0)
    """
    return _gradient_curvature_jit(loss_fn, params, batch)
