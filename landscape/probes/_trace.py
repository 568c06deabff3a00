"""Stochastic estimates of the trace of a curvature operator: Hutchinson and Hutch++.

Hutchinson: with Rademacher vectors v_i (E v vᵀ = I), tr C ≈ (1/n) Σ_i v_iᵀ C v_i, stderr =
std_i(v_iᵀCv_i)/√n. Its variance is 2 Σ_{i≠j} C_ij², large when a few outlier eigenvalues
dominate (network Hessians).

Hutch++: s = ⌊n/3⌋ products sketch the range, Q = orth(C S) (S: n×s signs); then
tr C ≈ tr(QᵀCQ) + (1/r) Σ_i g_iᵀ(I−QQᵀ) C (I−QQᵀ) g_i with the remaining r = n − 2s sign vectors
g_i. The top of the spectrum is taken exactly, so the variance drops when it dominates (O(1/n²) vs
O(1/n) error for PSD C). Its stderr is that of the second (Hutchinson) part, conditional on Q;
NaN when r < 2. Hutch++ is sequential (its later products depend on the sketch), so only
Hutchinson's independent samples can be spread over a mesh.

C, ``mask`` and ``preconditioner``: :mod:`landscape.probes._operators` (with ``preconditioner=P``
the estimate is of tr(P^{-1/2} C P^{-1/2}) = tr(P⁻¹C) = Σ_i C_ii / P_i, from the same products).
Loop layouts (``strategy``): :mod:`landscape.probes._strategy`, "Iterations".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from landscape.parallel import spread_points
from landscape.choices import check_int
from landscape.probes._operators import (GaussNewton, _flat, _flat_matvec, _flat_matvec_impl,
                                         _flat_view, _prepare)
from landscape.probes._strategy import _compiled, _resolve_loop_strategy
from landscape.probes._types import LossFn, PyTree

__all__ = ["HessianTrace", "hessian_trace"]

_TRACE_METHODS = ("hutchinson", "hutch++")


class HessianTrace(NamedTuple):
    """Result of :func:`hessian_trace`.

    Attributes:
      estimate: () estimate of tr C (of the masked block C_SS with ``mask``).
      stderr: () standard error. Hutchinson: std(vᵢᵀCvᵢ)/√n (sample std, ddof 1). Hutch++: the
        same for its Hutchinson part on the deflated operator, conditional on the sketch (the
        exact part tr(QᵀCQ) has no sampling error given Q); NaN when that part has < 2 samples.
    """

    estimate: jax.Array
    stderr: jax.Array


# ----------------------------------------------------------------------------------------------
# Hutchinson and Hutch++


def _hutchinson_sample_impl(loss_fn, curvature, mask_leaves, params, batch, key, i):
    op = _flat(loss_fn, curvature, mask_leaves, params, batch)
    view = op.view
    v = view.project(jax.random.rademacher(jax.random.fold_in(key, i), (view.size,), dtype=view.dtype))
    return v @ op.matvec(v)


def _mean_stderr(samples):
    n = samples.shape[0]
    mean = jnp.mean(samples)
    if n < 2:
        return mean, jnp.full((), jnp.nan, samples.dtype)
    return mean, jnp.std(samples, ddof=1) / jnp.sqrt(jnp.asarray(n, samples.dtype))


def _hutchinson_scan_impl(loss_fn, curvature, mask_leaves, num_samples, params, batch, key):
    samples = jax.lax.map(
        lambda i: _hutchinson_sample_impl(loss_fn, curvature, mask_leaves, params, batch, key, i),
        jnp.arange(num_samples),
    )
    return HessianTrace(*_mean_stderr(samples))


def _hutchpp_signs(mask_leaves, num_sketch, num_rest, params, key):
    """Sketch and Hutchinson sign matrices (rows), masked."""
    view = _flat_view(mask_leaves, params)
    k1, k2 = jax.random.split(key)
    signs_s = jax.random.rademacher(k1, (num_sketch, view.size), dtype=view.dtype)
    signs_g = jax.random.rademacher(k2, (num_rest, view.size), dtype=view.dtype)
    return view.project(signs_s), view.project(signs_g)


def _hutchpp_basis_impl(cs):
    """Rows of Qᵀ: an orthonormal basis of the span of the rows of ``cs`` (= C S)."""
    q, _ = jnp.linalg.qr(cs.T)  # (n, s)
    return q.T


def _hutchpp_deflate_impl(q_rows, g_rows):
    return g_rows - (g_rows @ q_rows.T) @ q_rows


def _hutchpp_basis_deflate_impl(cs, g_rows):
    q_rows = _hutchpp_basis_impl(cs)
    return q_rows, _hutchpp_deflate_impl(q_rows, g_rows)


def _hutchpp_combine_impl(q_rows, cq_rows, g_rows, cg_rows):
    exact = jnp.sum(q_rows * cq_rows)
    samples = jnp.sum(g_rows * cg_rows, axis=1)
    mean, stderr = _mean_stderr(samples)
    return HessianTrace(exact + mean, stderr)


def _hutchpp_scan_impl(loss_fn, curvature, mask_leaves, num_sketch, num_rest, params, batch, key):
    matvec = lambda x: _flat_matvec_impl(loss_fn, curvature, mask_leaves, params, batch, x)
    signs_s, signs_g = _hutchpp_signs(mask_leaves, num_sketch, num_rest, params, key)
    q_rows = _hutchpp_basis_impl(jax.lax.map(matvec, signs_s))
    g_rows = _hutchpp_deflate_impl(q_rows, signs_g)
    return _hutchpp_combine_impl(q_rows, jax.lax.map(matvec, q_rows), g_rows,
                                 jax.lax.map(matvec, g_rows))


def _hutchinson_spread_impl(loss_fn, curvature, mask_leaves, num_samples, mesh, params, batch,
                            key):
    """Hutchinson with the samples spread over ``mesh``'s devices (a written-out loop on each)."""
    def evaluate(indices, params, batch, key):
        return jnp.stack([_hutchinson_sample_impl(loss_fn, curvature, mask_leaves, params, batch,
                                                  key, indices[j])
                          for j in range(indices.shape[0])])

    samples = spread_points(evaluate, jnp.arange(num_samples), params, batch, key, mesh=mesh)
    return HessianTrace(*_mean_stderr(samples))


_hutchinson_spread = _compiled(_hutchinson_spread_impl, 5)
_hutchinson_sample = _compiled(_hutchinson_sample_impl, 3)
_hutchinson_scan = _compiled(_hutchinson_scan_impl, 4)
_hutchpp_scan = _compiled(_hutchpp_scan_impl, 5)
_hutchpp_signs_jit = _compiled(_hutchpp_signs, 3)
_hutchpp_basis_deflate = _compiled(_hutchpp_basis_deflate_impl)
_hutchpp_combine = _compiled(_hutchpp_combine_impl)


def _hutchinson(loss_fn, curvature, mask_leaves, num_samples, strategy, params, batch, key):
    if strategy == "scan":
        return _hutchinson_scan(loss_fn, curvature, mask_leaves, num_samples, params, batch, key)
    samples = jnp.stack([
        _hutchinson_sample(loss_fn, curvature, mask_leaves, params, batch, key,
                           jnp.asarray(i, jnp.int32))
        for i in range(num_samples)
    ])
    return HessianTrace(*_mean_stderr(samples))


def _hutchpp(loss_fn, curvature, mask_leaves, num_samples, strategy, params, batch, key):
    if num_samples < 3:
        raise ValueError(f"method='hutch++' needs num_samples >= 3; got {num_samples}.")
    num_sketch = num_samples // 3
    num_rest = num_samples - 2 * num_sketch
    args = (loss_fn, curvature, mask_leaves)
    if strategy == "scan":
        return _hutchpp_scan(*args, num_sketch, num_rest, params, batch, key)

    def apply(rows):
        return jnp.stack([_flat_matvec(*args, params, batch, x) for x in rows])

    signs_s, signs_g = _hutchpp_signs_jit(mask_leaves, num_sketch, num_rest, params, key)
    q_rows, g_rows = _hutchpp_basis_deflate(apply(signs_s), signs_g)
    return _hutchpp_combine(q_rows, apply(q_rows), g_rows, apply(g_rows))


# ----------------------------------------------------------------------------------------------
# the probe


def hessian_trace(loss_fn: LossFn, params: PyTree, batch: PyTree, *, key: jax.Array,
                  num_samples: int, method: str = "hutchinson", strategy: str = "auto",
                  curvature: str | GaussNewton = "hessian", mask: PyTree = None,
                  mesh: Mesh | None = None, preconditioner: PyTree = None) -> HessianTrace:
    """Stochastic estimate of the Hessian trace tr C from ``num_samples`` operator products.

    Hutchinson: tr C ≈ (1/n) Σ_i v_iᵀ C v_i (Rademacher v_i), stderr = std_i(v_iᵀCv_i)/√n.
    Hutch++: tr C ≈ tr(QᵀCQ) + (1/r) Σ_i g_iᵀ(I−QQᵀ) C (I−QQᵀ) g_i, Q = orth(C S) from s = ⌊n/3⌋
    sketch products, r = n − 2s (the module docstring).

    Args:
      loss_fn, params, batch, strategy, curvature, mask: as in :func:`hessian_eigs` (with ``mask``
        the trace of the block C_SS).
      preconditioner: as in :func:`hessian_eigs`: estimate tr(P⁻¹C) = Σ_i C_ii / P_i.
      key: PRNG key of the random vectors (sample i of Hutchinson uses ``fold_in(key, i)``).
      num_samples: n, the number of operator products (Hutch++: ≥ 3).
      method: ``"hutchinson"`` or ``"hutch++"``.
      mesh: Hutchinson only: spread the n samples over this mesh's devices (⌈n/m⌉ each, on the
        whole batch, :func:`landscape.parallel.spread_points`); the same estimate as without it.

    Returns:
      :class:`HessianTrace` ``(estimate (), stderr ())``.

    Reference:
      Hutchinson (1990); Meyer, Musco, Musco, Woodruff (2021), "Hutch++", Algorithm 1;
      Yao et al. (2020), PyHessian, Sec. 3.2.

    Example::

        >>> loss_fn, b = lambda p, b: 0.5 * jnp.sum(b * p ** 2), jnp.array([1.0, 2.0, 5.0])
        >>> float(hessian_trace(loss_fn, jnp.ones(3), b, key=jax.random.key(0),     # Σ b
        ...                     num_samples=4).estimate)
        8.0
        >>> float(hessian_trace(loss_fn, jnp.ones(3), b, key=jax.random.key(0),     # Σ b_i / P_i
        ...                     num_samples=4, preconditioner=jnp.array([1.0, 1.0, 10.0])).estimate)
        3.5
    """
    num_samples = check_int("num_samples", num_samples)
    if method not in _TRACE_METHODS:
        raise ValueError(f"method must be one of {_TRACE_METHODS}; got {method!r}.")
    curvature, mask_leaves, batch = _prepare(curvature, params, batch, mask, preconditioner)
    resolved = _resolve_loop_strategy(strategy, params, batch, key)
    args = (loss_fn, curvature, mask_leaves, num_samples)
    if mesh is not None:
        if method != "hutchinson":
            raise ValueError("mesh= spreads Hutchinson's independent samples; hutch++ is sequential "
                             "(its later products depend on the sketch): use method='hutchinson'.")
        return _hutchinson_spread(*args, mesh, params, batch, key)
    if method == "hutchinson":
        return _hutchinson(*args, resolved, params, batch, key)
    return _hutchpp(*args, resolved, params, batch, key)
