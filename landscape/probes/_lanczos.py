"""Extreme eigenpairs of a curvature operator by Lanczos with full reorthogonalisation.

:func:`hessian_eigs`: m = ``num_iters`` Lanczos steps from q₀ = v₀/‖v₀‖ build an orthonormal basis
Q = [q₀ … q_{m−1}] of the Krylov space span{q₀, Cq₀, …, C^{m−1}q₀} (three-term recurrence, then
each new vector Gram–Schmidt-orthogonalised against all previous ones: full reorthogonalisation)
and the tridiagonal T = QᵀCQ. With T = S diag(θ) Sᵀ the Ritz pairs are (θ_i, y_i = Q s_i), and
‖C y_i − θ_i y_i‖ = β_m |s_{m,i}|. The extreme Ritz values converge first: m ≈ 20–30 usually gives
the top eigenvalue to 1e-3 for a network Hessian, but clustered or tiny gaps need more. Costs m
operator products (C and its ``mask``/``preconditioner``: :mod:`landscape.probes._operators`) plus
O(m²n) for orthogonalisation. The same Lanczos runs give the quadrature of
:func:`landscape.probes.spectral_density`.

**Preconditioned eigenvectors.** With ``preconditioner=P`` the operator is the symmetric
Ĉ = P^{-1/2} C P^{-1/2}, whose eigenvalues are those of P⁻¹C (λ_max(P⁻¹H): the preconditioned
sharpness of Cohen et al. 2022), from the same m operator products. The eigenvectors y_i,
``init`` and the residuals are then in the transformed coordinates φ = P^{1/2}θ: y_i is a unit
eigenvector of Ĉ, and u_i = P^{-1/2} y_i is the parameter-space direction, with
C u_i = θ_i P u_i (P⁻¹C u_i = θ_i u_i) and u_iᵀ P u_j = δ_ij. With ``mask``: (P^{-1/2} C P^{-1/2})_SS.

**Loop layout** (``strategy``, :mod:`landscape.probes._strategy`, "Iterations"): ``"scan"`` puts
the whole Lanczos iteration in one jit (``lax.fori_loop`` over a preallocated (m, n) basis);
``"host"`` runs a Python loop calling ONE compiled Lanczos step whose state is donated. Both run
the same step function and agree to rounding. Neither's compile time grows with the number of
iterations, and every jit is module-level and keyed on ``loss_fn`` (pass the same function object
each call, not a fresh lambda), so a second call with new values does not recompile.

Lanczos is hand-written here rather than taken from matfree 0.6.3 (``decomp.tridiag_sym`` with
``reortho="full"``, an Arnoldi loop): matfree runs only inside a ``lax.fori_loop`` (no host-loop
layout), has no restart on breakdown (it divides by a zero β), and flattens with ``ravel_pytree``
as we do. Measured on a narrow VGG-11 (0.58 M params, batch 32, 2 shared CPU cores,
benchmarks/bench_curvature.py): matfree ≈ 4–5.3 HVP-times per step and our ``"scan"`` ≈ 4–5.2
(the while-loop penalty), our ``"host"`` ≈ 1.0–1.1; the tests check that both give the same Ritz
values from the same start vector.

Example::

    import jax, jax.numpy as jnp
    from landscape import probes

    def loss_fn(params, batch):
        return 0.5 * jnp.sum((batch["x"] @ params["w"] - batch["y"]) ** 2)

    eigs = probes.hessian_eigs(loss_fn, params, batch, k=3, key=jax.random.key(0), num_iters=30)
    eigs.eigenvalues          # (3,), largest first
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from landscape.choices import check_int
from landscape.probes._operators import GaussNewton, _flat, _flat_view, _FlatView, _prepare
from landscape.probes._precision import _result_dtype
from landscape.probes._strategy import _compiled, _resolve_loop_strategy
from landscape.probes._types import LossFn, PyTree

__all__ = ["HessianEigs", "hessian_eigs"]

_WHICH = ("largest", "smallest")


class HessianEigs(NamedTuple):
    """Result of :func:`hessian_eigs` (k = number of eigenpairs).

    Attributes:
      eigenvalues: (k,) Ritz values θ_i, largest first (``which="smallest"``: smallest first).
      eigenvectors: pytree like ``params`` with a leading axis k; slice i is the unit Ritz vector
        y_i (sign arbitrary), zero outside ``mask``.
      residuals: (k,) the Lanczos residual norms β_m·|s_{m,i}|, which equal ‖C y_i − θ_i y_i‖₂ in
        exact arithmetic (with full reorthogonalisation they track it down to ≈ eps·‖C‖).
    """

    eigenvalues: jax.Array
    eigenvectors: PyTree
    residuals: jax.Array


# ----------------------------------------------------------------------------------------------
# Lanczos with full reorthogonalisation


class _LanczosState(NamedTuple):
    basis: jax.Array  # (m, n) rows q_0 … q_{m−1} (rows not yet reached are 0)
    alphas: jax.Array  # (m,) diagonal of T
    betas: jax.Array  # (m,) betas[j] couples q_j and q_{j+1}; betas[m−1] is the residual norm β_m
    index: jax.Array  # () int32, the next iteration j
    seed: jax.Array  # () in [0, 1), varies the restart vectors with the key


def _orthogonalise(basis, w):
    """Classical Gram–Schmidt against all rows of ``basis``, twice (CGS2); returns (w, coeffs)."""
    h = basis @ w
    w = w - h @ basis
    h2 = basis @ w
    w = w - h2 @ basis
    return w, h + h2


def _lanczos_start_impl(mask_leaves, params, key, init):
    """(q₀, seed): the unit start vector (Rademacher from ``key``, or ``init``), masked."""
    view = _flat_view(mask_leaves, params)
    # One PRNG draw (threefry is slow to compile on CPU): n + 1 random bits, the first n give the
    # Rademacher signs, the last one the seed of the restart vectors.
    bits = jax.random.bits(key, (view.size + 1,), jnp.uint32)
    seed = (bits[-1] >> 8).astype(view.dtype) / (1 << 24)
    if init is None:
        v0 = jnp.where(bits[:-1] & 1, 1.0, -1.0).astype(view.dtype)
    else:
        v0 = view.to_flat(init)
    v0 = view.project(v0)
    return v0 / jnp.linalg.norm(v0), seed


def _lanczos_allocate_impl(num_iters, q0, seed):
    basis = jnp.zeros((num_iters, q0.shape[0]), q0.dtype).at[0].set(q0)
    zeros = jnp.zeros((num_iters,), q0.dtype)
    return _LanczosState(basis, zeros, zeros, jnp.zeros((), jnp.int32), seed)


def _check_num_iters(num_iters, mask_leaves, params):
    active = _flat_view(mask_leaves, params).active
    if num_iters > active:
        raise ValueError(
            f"num_iters ({num_iters}) must not exceed the operator's dimension ({active})."
        )


def _restart_vector(view: _FlatView, j, seed):
    """A deterministic pseudo-random vector (a sine hash of the index, the step and the seed).

    Used only after a breakdown, then orthogonalised against the basis: any vector with a
    component outside span(Q) does. Cheaper to compile inside the step than a PRNG draw.
    """
    i = jnp.arange(1, view.size + 1, dtype=view.dtype)
    x = jnp.sin(i * (12.9898 + 7.233 * j.astype(view.dtype) + 78.233 * seed)) * 43758.5453
    return view.project(x - jnp.floor(x) - 0.5)


def _lanczos_step_impl(loss_fn, curvature, mask_leaves, params, batch, state):
    """One Lanczos iteration j: w = C q_j − β_{j−1} q_{j−1}, α_j = q_jᵀw, w −= α_j q_j, then one
    classical Gram–Schmidt pass against the whole basis (full reorthogonalisation), β_j = ‖w‖.

    On breakdown (β_j ≤ eps·‖C q_j‖: the Krylov space is invariant) the next vector is a new
    vector orthogonal to the basis and β_j = 0, so T stays QᵀCQ with Q orthonormal.
    """
    op = _flat(loss_fn, curvature, mask_leaves, params, batch)
    view = op.view
    basis, alphas, betas, j, seed = state
    num_iters = basis.shape[0]
    q = jax.lax.dynamic_index_in_dim(basis, j, keepdims=False)
    w = op.matvec(q)
    w_norm = jnp.linalg.norm(w)
    # Three-term recurrence (β_{−1} = 0).
    beta_prev = jnp.where(j > 0, betas[j - 1], jnp.zeros((), view.dtype))
    w = w - beta_prev * jax.lax.dynamic_index_in_dim(basis, jnp.maximum(j - 1, 0), keepdims=False)
    alpha = q @ w
    w = w - alpha * q
    # Full reorthogonalisation: one pass against all stored vectors (rows not reached are 0), and
    # a second one when the first cancelled most of w ("twice is enough", Kahan–Parlett): near an
    # invariant subspace one pass leaves w far from orthogonal to the basis.
    before = jnp.linalg.norm(w)
    w = w - (basis @ w) @ basis
    w = jax.lax.cond(jnp.linalg.norm(w) < 0.5 * before, lambda v: v - (basis @ v) @ basis,
                     lambda v: v, w)
    beta = jnp.linalg.norm(w)
    # Breakdown: what is left is rounding (the Krylov space is numerically invariant).
    breakdown = beta <= 8.0 * math.sqrt(num_iters) * jnp.finfo(view.dtype).eps * w_norm

    def fresh(_):
        r, _ = _orthogonalise(basis, _restart_vector(view, j, seed))
        return r / jnp.linalg.norm(r)

    def scaled(_):
        return w / beta

    q_next = jax.lax.cond(breakdown & (j + 1 < num_iters), fresh, scaled, None)
    beta = jnp.where(breakdown, jnp.zeros((), view.dtype), beta)
    basis = basis.at[j + 1].set(q_next, mode="drop")  # j + 1 == m is dropped
    return _LanczosState(basis, alphas.at[j].set(alpha), betas.at[j].set(beta), j + 1, seed)


def _tridiagonal(state: _LanczosState) -> jax.Array:
    off = state.betas[:-1]
    return jnp.diag(state.alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


_lanczos_start = _compiled(_lanczos_start_impl, 1)
_lanczos_allocate = _compiled(_lanczos_allocate_impl, 1)
_lanczos_step = _compiled(_lanczos_step_impl, 3, donate_argnums=(5,))


def _lanczos_scan(loss_fn, curvature, mask_leaves, num_iters, params, batch, key, init):
    _check_num_iters(num_iters, mask_leaves, params)
    state = _lanczos_allocate_impl(num_iters, *_lanczos_start_impl(mask_leaves, params, key, init))
    return jax.lax.fori_loop(
        0,
        num_iters,
        lambda _, s: _lanczos_step_impl(loss_fn, curvature, mask_leaves, params, batch, s),
        state,
    )


def _lanczos_host(loss_fn, curvature, mask_leaves, num_iters, params, batch, key, init):
    _check_num_iters(num_iters, mask_leaves, params)
    state = _lanczos_allocate(num_iters, *_lanczos_start(mask_leaves, params, key, init))
    for _ in range(num_iters):
        state = _lanczos_step(loss_fn, curvature, mask_leaves, params, batch, state)
    return state


def _eigs_finish_impl(k, which, params, state) -> HessianEigs:
    dtype = _result_dtype(params)
    theta, s = jnp.linalg.eigh(_tridiagonal(state))  # ascending
    idx = jnp.arange(k) if which == "smallest" else jnp.arange(theta.shape[0] - 1, theta.shape[0] - 1 - k, -1)
    theta, s = theta[idx], s[:, idx]
    ritz = s.T @ state.basis  # (k, n)
    flat_params, unravel = ravel_pytree(params)
    vectors = jax.vmap(lambda x: unravel(x.astype(flat_params.dtype)))(ritz)
    residuals = jnp.abs(state.betas[-1] * s[-1, :])
    return HessianEigs(theta.astype(dtype), vectors, residuals.astype(dtype))


def _eigs_scan_impl(loss_fn, curvature, mask_leaves, num_iters, k, which, params, batch, key, init):
    state = _lanczos_scan(loss_fn, curvature, mask_leaves, num_iters, params, batch, key, init)
    return _eigs_finish_impl(k, which, params, state)


_eigs_scan = _compiled(_eigs_scan_impl, 6)
_eigs_finish = _compiled(_eigs_finish_impl, 2)


def _check_eigs_args(k: int, num_iters: int, which: str) -> tuple[int, int]:
    k = check_int("k", k)
    num_iters = check_int("num_iters", num_iters)
    if k > num_iters:
        raise ValueError(f"k ({k}) must not exceed num_iters ({num_iters}).")
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}; got {which!r}.")
    return k, num_iters


def hessian_eigs(loss_fn: LossFn, params: PyTree, batch: PyTree, k: int, *, key: jax.Array,
                 num_iters: int, which: str = "largest", init: PyTree = None,
                 strategy: str = "auto", curvature: str | GaussNewton = "hessian",
                 mask: PyTree = None, preconditioner: PyTree = None) -> HessianEigs:
    """Top-k (or bottom-k) eigenpairs of the Hessian by Lanczos with full reorthogonalisation.

    m = ``num_iters`` steps give an orthonormal basis Q of span{q₀, Cq₀, …, C^{m−1}q₀} and
    T = QᵀCQ = S diag(θ) Sᵀ; the Ritz pairs are (θ_i, y_i = Q s_i), ‖C y_i − θ_i y_i‖ = β_m |s_{m,i}|
    (convergence, preconditioned eigenvectors, layouts: the module docstring).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (hashable; keys the compiled functions).
      params, batch: θ (float leaves) and the pytree passed to ``loss_fn``.
      k: number of eigenpairs, 1 ≤ k ≤ num_iters.
      key: PRNG key of the Rademacher start vector (and of restart vectors after a breakdown).
      num_iters: m, the number of Lanczos steps (= operator products), k ≤ m ≤ dimension.
      which: ``"largest"`` (top-k, largest first) or ``"smallest"`` (bottom-k, smallest first).
      init: optional start vector like ``params`` (e.g. a warm start), nonzero inside ``mask``.
      strategy: ``"host"``, ``"scan"`` or ``"auto"``.
      curvature: ``"hessian"`` or :class:`GaussNewton` (``loss_fn`` then unused by the operator).
      mask: optional pytree of Python bools like ``params``: the diagonal block C_SS.
      preconditioner: optional pytree P > 0 like ``params`` (e.g. ``adam_preconditioner``): the
        eigenpairs of P^{-1/2} C P^{-1/2}, whose eigenvalues are those of P⁻¹C.

    Returns:
      :class:`HessianEigs` ``(eigenvalues (k,), eigenvectors (leading axis k), residuals (k,))``.

    Raises:
      ValueError: bad ``k``, ``num_iters``, ``which``, ``strategy``, ``curvature``, ``mask`` or
        ``preconditioner``; ``strategy="host"`` under a trace.

    Reference:
      Lanczos (1950); Golub & Van Loan (4th ed.), Sec. 10.1–10.3; Ghorbani, Krishnan, Xiao (2019),
      Sec. 2; Cohen et al. (2022), arXiv 2207.14484 (the preconditioned sharpness λ_max(P⁻¹H)).

    Example::

        >>> loss_fn, b = lambda p, b: 0.5 * jnp.sum(b * p ** 2), jnp.array([1.0, 2.0, 5.0])
        >>> r = hessian_eigs(loss_fn, jnp.ones(3), b, 1, key=jax.random.key(0), num_iters=3)
        >>> round(float(r.eigenvalues[0]), 4)                          # H = diag(b)
        5.0
        >>> r = hessian_eigs(loss_fn, jnp.ones(3), b, 1, key=jax.random.key(0), num_iters=3,
        ...                  preconditioner=jnp.array([1.0, 1.0, 10.0]))   # P⁻¹H = diag(1, 2, 0.5)
        >>> round(float(r.eigenvalues[0]), 4)
        2.0
    """
    k, num_iters = _check_eigs_args(k, num_iters, which)
    curvature, mask_leaves, batch = _prepare(curvature, params, batch, mask, preconditioner)
    args = (loss_fn, curvature, mask_leaves, num_iters)
    if _resolve_loop_strategy(strategy, params, batch, key, init) == "scan":
        return _eigs_scan(*args, k, which, params, batch, key, init)
    return _eigs_finish(k, which, params, _lanczos_host(*args, params, batch, key, init))
