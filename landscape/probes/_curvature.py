"""Curvature probes: Hessian (or Gauss–Newton) eigenpairs, trace and spectral density.

Matrix-free measurements of the curvature of ``loss_fn(params, batch) -> scalar`` at θ, built on
one operator product v ↦ Cv, where C is

- the Hessian H = ∇²L(θ) (``curvature="hessian"``), applied as forward-over-reverse
  ``jax.jvp(jax.grad(L), (θ,), (v,))[1]`` (:func:`hvp`), or
- the generalised Gauss–Newton matrix G = Jᵀ H_out J (``curvature=GaussNewton(output_fn,
  output_loss)``), with J the Jacobian of the outputs z = output_fn(θ, batch) and H_out the Hessian
  of output_loss(z, batch) in z (:func:`gnvp`). G is positive semi-definite when the output loss
  is convex in z (cross-entropy on logits, squared error).

``mask`` (a pytree of Python bools shaped like ``params``, e.g. from
:func:`landscape.probes.param_mask` / :func:`landscape.probes.block_masks`) restricts C to the
selected leaves, C_SS: v is zeroed outside the mask before and after each product, so the
probes measure the diagonal block of the selected parameters (per-layer / per-block curvature).

``preconditioner`` (a pytree of strictly positive diagonal entries P shaped like ``params``, e.g.
from :func:`landscape.probes.adam_preconditioner`) replaces C by the symmetric P^{-1/2} C P^{-1/2},
which has the spectrum of P⁻¹C and the trace tr(P⁻¹C) = Σ_i C_ii / P_i: the optimizer-aware
("preconditioned") sharpness of Cohen et al. (2022). It is one wrapper of the operator product,
v ↦ P^{-1/2} C (P^{-1/2} v) (two elementwise products, no extra operator product), so every
strategy, ``mask`` and ``mesh`` path gets it; S = P^{-1/2} travels with the batch.

Probes (all pure, usable inside ``jax.jit``; results in the params' float dtype, at least float32):

- :func:`hessian_eigs` — top-k (or bottom-k) eigenpairs by Lanczos with full reorthogonalisation.
- :func:`hessian_trace` — tr C by Hutchinson (Rademacher) or Hutch++.
- :func:`spectral_density` — the smoothed eigenvalue density by stochastic Lanczos quadrature (SLQ).
- :func:`gradient_curvature` — gᵀHg/‖g‖², the curvature along the gradient, and ‖g‖.

Loop layout (``strategy``): XLA:CPU runs convolutions inside ``while`` loops about 10× slower than
outside them (STACK.md, "Loops on XLA:CPU"). ``"scan"`` puts the whole Lanczos iteration in one jit
(``lax.fori_loop`` over a preallocated (m, n) basis): right on GPU/TPU and required under an outer
``jax.jit``. ``"host"`` runs a Python loop calling ONE compiled Lanczos step whose state is donated,
so the operator product is compiled outside any loop. ``"auto"`` = ``"host"`` on CPU when the
arguments are concrete, ``"scan"`` otherwise. Both run the same step function and agree to
rounding. Neither's compile time grows with the number of iterations, and every jit is module-level
and keyed on ``loss_fn`` (pass the same function object each call, not a fresh lambda), so a second
call with new values does not recompile.

Lanczos is hand-written here rather than taken from matfree 0.6.3 (``decomp.tridiag_sym`` with
``reortho="full"``, an Arnoldi loop): matfree runs only inside a ``lax.fori_loop`` (no host-loop
layout), has no restart on breakdown (it divides by a zero β), and flattens with ``ravel_pytree``
as we do. Measured on a narrow VGG-11 (0.58 M params, batch 32, 2 shared CPU cores,
benchmarks/bench_curvature.py): matfree ≈ 4–5.3 HVP-times per step and our ``"scan"`` ≈ 4–5.2
(the while-loop penalty), our ``"host"`` ≈ 1.0–1.1; the tests check that both give the same Ritz
values from the same start vector.

BatchNorm: which normalisation mode the curvature refers to (batch statistics or running averages)
is the ``loss_fn``'s business (:func:`landscape.bridge.make_loss_fn`'s ``mode``). The two modes are
different functions with different Hessians (Ghorbani et al. 2019 find the outliers come back with
running averages): save the mode with every result.

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
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from landscape.parallel import spread_points
from landscape.probes._precondition import inverse_sqrt
from landscape.probes._step import _result_dtype
from landscape.probes._types import LossFn, PyTree

__all__ = [
    "CURVATURE_STRATEGIES",
    "GaussNewton",
    "GradientCurvature",
    "HessianEigs",
    "HessianTrace",
    "SpectralDensity",
    "gnvp",
    "gradient_curvature",
    "hessian_eigs",
    "hessian_trace",
    "hvp",
    "spectral_density",
]


#: Accepted values of the ``strategy`` argument of the Lanczos and trace probes.
CURVATURE_STRATEGIES = ("auto", "scan", "host")
_WHICH = ("largest", "smallest")
_TRACE_METHODS = ("hutchinson", "hutch++")


class GaussNewton(NamedTuple):
    """The generalised Gauss–Newton operator G = Jᵀ H_out J, passed as ``curvature=``.

    Attributes:
      output_fn: ``output_fn(params, batch) -> outputs`` (any pytree, e.g. logits (B, C)).
      output_loss: ``output_loss(outputs, batch) -> scalar`` with
        ``loss_fn(params, batch) == output_loss(output_fn(params, batch), batch)``.

    Both must be hashable (module-level functions or the same objects each call): they key the
    compiled functions.
    """

    output_fn: Callable[[PyTree, PyTree], PyTree]
    output_loss: Callable[[PyTree, PyTree], jax.Array]


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


class SpectralDensity(NamedTuple):
    """Result of :func:`spectral_density` (R = num_runs, m = num_iters, G = grid_size).

    Attributes:
      grid: (G,) evenly spaced points from min(nodes) − 5σ to max(nodes) + 5σ.
      density: (G,) the Gaussian-smoothed density on ``grid``, trapezoid integral 1.
      nodes: (R, m) the Ritz values θ_rj of each run (the quadrature nodes).
      weights: (R, m) the squared first components s_{1j}² of the tridiagonal's eigenvectors
        (each row sums to 1).
    """

    grid: jax.Array
    density: jax.Array
    nodes: jax.Array
    weights: jax.Array


class GradientCurvature(NamedTuple):
    """Result of :func:`gradient_curvature`.

    Attributes:
      curvature: () gᵀHg/‖g‖² (NaN when g = 0).
      grad_norm: () ‖g‖₂.
    """

    curvature: jax.Array
    grad_norm: jax.Array


# ----------------------------------------------------------------------------------------------
# operator products


def _hvp_impl(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (v,))[1]


def _gnvp_impl(gauss_newton: GaussNewton, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    output_fn, output_loss = gauss_newton
    outputs, jvp_fn = jax.linearize(lambda p: output_fn(p, batch), params)
    jv = jvp_fn(v)
    hjv = jax.jvp(lambda z: jax.grad(output_loss)(z, batch), (outputs,), (jv,))[1]
    return jax.linear_transpose(jvp_fn, params)(hjv)[0]


_hvp_jit = jax.jit(_hvp_impl, static_argnums=0)
_gnvp_jit = jax.jit(_gnvp_impl, static_argnums=0)


def hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product Hv = ∇²L(θ)·v, forward-over-reverse.

    Hv = ``jax.jvp(jax.grad(L), (θ,), (v,))[1]``: one forward and one reverse pass with tangents,
    about 2–3× the cost of a gradient. Jitted internally, keyed on ``loss_fn``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ.
      batch: pytree passed to ``loss_fn``.
      v: pytree like ``params`` (same dtypes).

    Returns:
      Hv, a pytree like ``params``.

    Reference:
      Pearlmutter (1994), "Fast exact multiplication by the Hessian".

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p ** 2)
        >>> hvp(loss_fn, jnp.ones(2), jnp.array([1.0, 3.0]), jnp.array([1.0, 1.0])).tolist()
        [1.0, 3.0]
    """
    return _hvp_jit(loss_fn, params, batch, v)


def gnvp(gauss_newton: GaussNewton, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    """Generalised Gauss–Newton vector product Gv = Jᵀ H_out J v.

    J v by ``jax.linearize`` of ``output_fn`` (one forward pass), H_out (Jv) by a Hessian-vector
    product of ``output_loss`` in the outputs, Jᵀ(·) by transposing the linearisation.

    Args:
      gauss_newton: :class:`GaussNewton` ``(output_fn, output_loss)``.
      params: pytree θ.
      batch: pytree passed to both functions.
      v: pytree like ``params``.

    Returns:
      Gv, a pytree like ``params``.

    Reference:
      Schraudolph (2002), "Fast curvature matrix-vector products for second-order gradient
      descent", Sec. 3; Martens (2020), "New insights and perspectives on the natural gradient
      method", Sec. 8.

    Example::

        gn = GaussNewton(lambda p, b: b["x"] @ p, lambda z, b: 0.5 * jnp.sum((z - b["y"]) ** 2))
        gnvp(gn, params, batch, v)     # = XᵀX v for this least-squares loss
    """
    return _gnvp_jit(_check_curvature(gauss_newton), params, batch, v)


def _check_curvature(curvature):
    if isinstance(curvature, GaussNewton):
        return curvature
    if isinstance(curvature, str):
        if curvature == "hessian":
            return curvature
        if curvature == "gauss_newton":
            raise ValueError(
                "curvature='gauss_newton' needs the model outputs: pass "
                "curvature=GaussNewton(output_fn, output_loss) with output_fn(params, batch) -> "
                "outputs and output_loss(outputs, batch) -> scalar."
            )
    elif isinstance(curvature, tuple) and len(curvature) == 2 and all(map(callable, curvature)):
        return GaussNewton(*curvature)
    raise ValueError(
        f"curvature must be 'hessian' or GaussNewton(output_fn, output_loss); got {curvature!r}."
    )


class _Preconditioned(NamedTuple):
    """Static tag of the operator v ↦ S C (S v) with S = P^{-1/2} diagonal (C: ``curvature``).

    S is an array, so it cannot key a compiled function with the tag: it travels in the dynamic
    ``batch`` slot that every Lanczos/trace path already threads, as ``(batch, S)``
    (:func:`_with_preconditioner`); :func:`_tree_operator` unpacks it.
    """

    curvature: str | GaussNewton


def _with_preconditioner(curvature, params, batch, preconditioner):
    """``(curvature, batch)`` for the probes' plumbing: unchanged without a preconditioner, else the
    tag :class:`_Preconditioned` and ``(batch, P^{-1/2})`` (P checked, see ``inverse_sqrt``)."""
    if preconditioner is None:
        return curvature, batch
    scale = inverse_sqrt(params, preconditioner, _result_dtype(params))
    return _Preconditioned(curvature), (batch, scale)


def _tree_operator(loss_fn, curvature, params, batch) -> Callable[[PyTree], PyTree]:
    if isinstance(curvature, _Preconditioned):
        batch, scale = batch
        product = _tree_operator(loss_fn, curvature.curvature, params, batch)

        def rescale(tree):
            return jax.tree.map(lambda s, x: (s * x).astype(x.dtype), scale, tree)

        return lambda v: rescale(product(rescale(v)))
    if curvature == "hessian":
        return lambda v: _hvp_impl(loss_fn, params, batch, v)
    return lambda v: _gnvp_impl(curvature, params, batch, v)


# ----------------------------------------------------------------------------------------------
# flat views (the Lanczos boundary) and masks


def _mask_leaves(params: PyTree, mask: PyTree) -> tuple[bool, ...] | None:
    """The mask as a hashable tuple of Python bools in params' leaf order (None: no mask)."""
    if mask is None:
        return None
    treedef = jax.tree.structure(params)
    try:
        leaves = treedef.flatten_up_to(mask)
    except (ValueError, TypeError) as err:
        raise ValueError(f"mask must have the pytree structure of params ({treedef}): {err}") from None
    out = []
    for leaf in leaves:
        if not isinstance(leaf, (bool, np.bool_)):
            raise ValueError(
                f"mask leaves must be Python bools (see probes.param_mask); got {leaf!r}."
            )
        out.append(bool(leaf))
    if not any(out):
        raise ValueError("mask selects no parameter.")
    return tuple(out)


class _FlatView(NamedTuple):
    size: int  # n, the length of the flat vector
    active: int  # number of entries inside the mask
    dtype: Any  # compute dtype
    to_tree: Callable
    to_flat: Callable
    project: Callable  # zero outside the mask


class _Flat(NamedTuple):
    view: _FlatView
    matvec: Callable  # flat → flat, masked before and after


def _flat_view(mask_leaves, params) -> _FlatView:
    dtype = _result_dtype(params)
    leaves = jax.tree.leaves(params)
    flat_params, unravel = ravel_pytree(params)
    pdtype = flat_params.dtype
    size = int(flat_params.shape[0])
    if mask_leaves is None:
        mask = None
        active = size
    else:
        if len(mask_leaves) != len(leaves):
            raise ValueError(f"mask has {len(mask_leaves)} leaves; params have {len(leaves)}.")
        mask = np.concatenate(
            [np.full(math.prod(jnp.shape(l)), m, dtype=bool) for l, m in zip(leaves, mask_leaves)]
        )
        active = int(mask.sum())

    def to_tree(x):
        return unravel(x.astype(pdtype))

    def to_flat(tree):
        return ravel_pytree(tree)[0].astype(dtype)

    def project(x):
        return x if mask is None else jnp.where(mask, x, jnp.zeros((), x.dtype))

    return _FlatView(size, active, dtype, to_tree, to_flat, project)


def _flat(loss_fn, curvature, mask_leaves, params, batch) -> _Flat:
    view = _flat_view(mask_leaves, params)
    tree_op = _tree_operator(loss_fn, curvature, params, batch)

    def matvec(x):
        return view.project(view.to_flat(tree_op(view.to_tree(view.project(x)))))

    return _Flat(view, matvec)


def _is_traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def _resolve_strategy(strategy: str, *trees) -> str:
    if strategy not in CURVATURE_STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, CURVATURE_STRATEGIES))}; got {strategy!r}."
        )
    traced = _is_traced(*trees)
    if strategy == "host" and traced:
        raise ValueError(
            "strategy='host' runs a Python loop of compiled steps and needs concrete arrays; under "
            "jax.jit/vmap use strategy='scan' (or 'auto')."
        )
    if strategy == "auto":
        return "host" if (jax.default_backend() == "cpu" and not traced) else "scan"
    return strategy


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
    return int(value)


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


_lanczos_start = jax.jit(_lanczos_start_impl, static_argnums=0)
_lanczos_allocate = jax.jit(_lanczos_allocate_impl, static_argnums=0)
_lanczos_step = jax.jit(_lanczos_step_impl, static_argnums=(0, 1, 2), donate_argnums=(5,))


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


_eigs_scan = jax.jit(_eigs_scan_impl, static_argnums=(0, 1, 2, 3, 4, 5))
_eigs_finish = jax.jit(_eigs_finish_impl, static_argnums=(0, 1))


def hessian_eigs(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    k: int,
    *,
    key: jax.Array,
    num_iters: int,
    which: str = "largest",
    init: PyTree = None,
    strategy: str = "auto",
    curvature: str | GaussNewton = "hessian",
    mask: PyTree = None,
    preconditioner: PyTree = None,
) -> HessianEigs:
    """Top-k (or bottom-k) eigenpairs of the Hessian by Lanczos with full reorthogonalisation.

    m = ``num_iters`` Lanczos steps from q₀ = v₀/‖v₀‖ build an orthonormal basis Q = [q₀ … q_{m−1}]
    of the Krylov space span{q₀, Cq₀, …, C^{m−1}q₀} (three-term recurrence, then each new vector
    Gram–Schmidt-orthogonalised against all previous ones: full reorthogonalisation) and the tridiagonal T = QᵀCQ. With T = S diag(θ) Sᵀ the Ritz
    pairs are (θ_i, y_i = Q s_i), and ‖C y_i − θ_i y_i‖ = β_m |s_{m,i}|. The extreme Ritz values
    converge first: m ≈ 20–30 usually gives the top eigenvalue to 1e-3 for a network Hessian, but
    clustered or tiny gaps need more. Costs m operator products plus O(m²n) for orthogonalisation.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (hashable; keys the compiled functions). For
        BatchNorm nets the caller picks batch statistics or running averages; record which.
      params: pytree θ (float leaves).
      batch: pytree passed to ``loss_fn``.
      k: number of eigenpairs, 1 ≤ k ≤ num_iters.
      key: PRNG key of the Rademacher start vector (and of restart vectors after a breakdown).
      num_iters: m, the number of Lanczos steps (= operator products), k ≤ m ≤ dimension.
      which: ``"largest"`` (top-k, largest first) or ``"smallest"`` (bottom-k, smallest first; the
        most negative curvature).
      init: optional pytree like ``params``, the start vector (e.g. the previous top eigenvector
        for a warm start); must be nonzero inside ``mask``.
      strategy: ``"host"``, ``"scan"`` or ``"auto"`` (see the module docstring).
      curvature: ``"hessian"`` or :class:`GaussNewton` ``(output_fn, output_loss)`` (``loss_fn`` is
        then unused by the operator).
      mask: optional pytree of Python bools like ``params``: use the diagonal block C_SS of the
        selected leaves.
      preconditioner: optional pytree P like ``params`` of strictly positive, finite diagonal
        entries (e.g. :func:`landscape.probes.adam_preconditioner`): use the symmetric
        Ĉ = P^{-1/2} C P^{-1/2}, whose eigenvalues are those of P⁻¹C (λ_max(P⁻¹H): the
        preconditioned sharpness of Cohen et al. 2022). Same m operator products as without it
        (each is wrapped as v ↦ P^{-1/2} C (P^{-1/2} v)). The eigenvectors y_i, ``init`` and the
        residuals are then in the transformed coordinates φ = P^{1/2}θ: y_i is a unit eigenvector
        of Ĉ, and u_i = P^{-1/2} y_i is the parameter-space direction, with C u_i = θ_i P u_i
        (P⁻¹C u_i = θ_i u_i) and u_iᵀ P u_j = δ_ij. With ``mask``: (P^{-1/2} C P^{-1/2})_SS.
        Its structure and shapes must match ``params`` (ValueError naming the leaf); a zero,
        negative or non-finite entry raises when P is concrete, and under ``jax.jit`` (where
        values cannot be checked) makes every result NaN.

    Returns:
      :class:`HessianEigs` ``(eigenvalues (k,), eigenvectors (pytree, leading axis k),
      residuals (k,))``.

    Raises:
      ValueError: bad ``k``, ``num_iters``, ``which``, ``strategy``, ``curvature``, ``mask`` or
        ``preconditioner``; ``strategy="host"`` under a trace.

    Reference:
      Lanczos (1950); Golub & Van Loan, Matrix Computations (4th ed.), Sec. 10.1–10.3 (Ritz pairs,
      residual bound, full reorthogonalisation); Ghorbani, Krishnan, Xiao (2019), Sec. 2;
      Cohen et al. (2022), "Adaptive Gradient Methods at the Edge of Stability", arXiv 2207.14484
      (the preconditioned sharpness λ_max(P⁻¹H)).

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p ** 2)          # H = diag(b)
        >>> r = hessian_eigs(loss_fn, jnp.ones(3), jnp.array([1.0, 2.0, 5.0]), 1,
        ...                  key=jax.random.key(0), num_iters=3)
        >>> round(float(r.eigenvalues[0]), 4)
        5.0
        >>> P = jnp.array([1.0, 1.0, 10.0])                            # P⁻¹H = diag(1, 2, 0.5)
        >>> r = hessian_eigs(loss_fn, jnp.ones(3), jnp.array([1.0, 2.0, 5.0]), 1,
        ...                  key=jax.random.key(0), num_iters=3, preconditioner=P)
        >>> round(float(r.eigenvalues[0]), 4)
        2.0
    """
    k = _positive_int("k", k)
    num_iters = _positive_int("num_iters", num_iters)
    if k > num_iters:
        raise ValueError(f"k ({k}) must not exceed num_iters ({num_iters}).")
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}; got {which!r}.")
    curvature = _check_curvature(curvature)
    mask_leaves = _mask_leaves(params, mask)
    curvature, batch = _with_preconditioner(curvature, params, batch, preconditioner)
    resolved = _resolve_strategy(strategy, params, batch, key, init)
    args = (loss_fn, curvature, mask_leaves, num_iters)
    if resolved == "scan":
        return _eigs_scan(*args, k, which, params, batch, key, init)
    state = _lanczos_host(*args, params, batch, key, init)
    return _eigs_finish(k, which, params, state)


# ----------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature


def _nodes_weights_impl(state: _LanczosState):
    theta, s = jnp.linalg.eigh(_tridiagonal(state))
    return theta, s[0, :] ** 2


def _density_impl(grid_size, sigma2, nodes, weights):
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    variance = sigma2 * jnp.maximum(1.0, hi - lo)
    sigma = jnp.sqrt(variance)
    grid = jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=nodes.dtype)
    diff = grid[:, None] - nodes.reshape(-1)[None, :]
    kernel = jnp.exp(-0.5 * diff**2 / variance) / jnp.sqrt(2 * jnp.pi * variance)
    density = kernel @ weights.reshape(-1) / nodes.shape[0]
    density = density / jnp.trapezoid(density, grid)
    return grid, density


def _slq_scan_impl(loss_fn, curvature, mask_leaves, num_iters, num_runs, grid_size, sigma2,
                   mesh, params, batch, key):
    """SLQ as one compiled function: the R runs a ``lax.map`` of scan Lanczos, spread over
    ``mesh``'s devices when given (⌈R/n⌉ runs each)."""
    def evaluate(runs, params, batch, key):
        def run(r):
            state = _lanczos_scan(loss_fn, curvature, mask_leaves, num_iters, params, batch,
                                  jax.random.fold_in(key, r), None)
            return _nodes_weights_impl(state)

        return jax.lax.map(run, runs)

    nodes, weights = spread_points(evaluate, jnp.arange(num_runs), params, batch, key, mesh=mesh)
    grid, density = _density_impl(grid_size, sigma2, nodes, weights)
    return SpectralDensity(grid, density, nodes, weights)


_slq_scan = jax.jit(_slq_scan_impl, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
_nodes_weights = jax.jit(_nodes_weights_impl)
_density = jax.jit(_density_impl, static_argnums=(0, 1))


def spectral_density(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    *,
    key: jax.Array,
    num_iters: int,
    num_runs: int,
    grid_size: int = 10_000,
    sigma2: float = 1e-5,
    strategy: str = "auto",
    curvature: str | GaussNewton = "hessian",
    mask: PyTree = None,
    mesh: Mesh | None = None,
    preconditioner: PyTree = None,
) -> SpectralDensity:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ).

    For each run r (Rademacher start v_r, key ``fold_in(key, r)``), m Lanczos steps give
    T_r = S_r diag(θ_r) S_rᵀ; the Gauss quadrature of the spectral measure of C seen from v_r has
    nodes θ_rj and weights w_rj = (S_r)_{1j}² (squared FIRST components of T's eigenvectors; not
    the eigenvalues' multiplicities, and not the components of the Ritz vectors). Averaged over
    runs and smoothed with a Gaussian kernel:

        φ(t) = (1/R) Σ_r Σ_j w_rj · N(t; θ_rj, σ²),   σ² = sigma2 · max(1, λ_max − λ_min),

    with λ_max/λ_min the largest/smallest node. This is the smoothing of Ghorbani et al.'s code
    (google/spectral-density ``eigv_to_density``, their σ² = 1e-5 scaled by the spectrum's range).
    φ is evaluated on ``grid_size`` points from λ_min − 5σ to λ_max + 5σ and normalised to
    trapezoid integral 1 there. Costs num_runs · num_iters operator products.

    Args:
      loss_fn, params, batch, curvature, mask, strategy: as in :func:`hessian_eigs` (with
        ``"scan"`` the runs are a ``lax.map``, one after the other).
      preconditioner: as in :func:`hessian_eigs`: the density of P^{-1/2} C P^{-1/2} (the
        eigenvalues of P⁻¹C), same num_runs · num_iters operator products.
      key: PRNG key; run r uses ``fold_in(key, r)``.
      num_iters: m, Lanczos steps per run (Ghorbani et al. use 90).
      num_runs: R, independent start vectors (≥ 1).
      grid_size: number of grid points (≥ 2). The kernel's σ should span a few grid steps: with
        the defaults σ ≈ 3e-3·√range, the grid step ≈ (range + 10σ)/grid_size.
      sigma2: the relative kernel variance above (> 0).
      mesh: spread the R independent runs over this mesh's devices (⌈R/n⌉ each, on the whole
        batch, one compiled ``"scan"`` Lanczos per device; :func:`landscape.parallel.spread_points`);
        the same start vectors, so the same density, as without it.

    Returns:
      :class:`SpectralDensity` ``(grid (G,), density (G,), nodes (R, m), weights (R, m))``.

    Reference:
      Ghorbani, Krishnan, Xiao (2019), Sec. 2.2 and App. A; Lin, Saad, Yang (2016), "Approximating
      spectral densities of large matrices", Sec. 3.2; Golub & Meurant (2010), Ch. 6 (Gauss
      quadrature from Lanczos).

    Example::

        d = spectral_density(loss_fn, params, batch, key=jax.random.key(0), num_iters=90,
                             num_runs=5)
        plt.semilogy(d.grid, d.density)
    """
    num_iters = _positive_int("num_iters", num_iters)
    num_runs = _positive_int("num_runs", num_runs)
    grid_size = _positive_int("grid_size", grid_size)
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2; got {grid_size}.")
    if not (isinstance(sigma2, (int, float)) and math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be a finite float > 0; got {sigma2!r}.")
    sigma2 = float(sigma2)
    curvature = _check_curvature(curvature)
    mask_leaves = _mask_leaves(params, mask)
    curvature, batch = _with_preconditioner(curvature, params, batch, preconditioner)
    resolved = _resolve_strategy(strategy, params, batch, key)
    args = (loss_fn, curvature, mask_leaves, num_iters)
    if resolved == "scan" or mesh is not None:
        return _slq_scan(*args, num_runs, grid_size, sigma2, mesh, params, batch, key)
    nodes, weights = [], []
    for r in range(num_runs):
        state = _lanczos_host(*args, params, batch, jax.random.fold_in(key, r), None)
        theta, w = _nodes_weights(state)
        nodes.append(theta)
        weights.append(w)
    nodes, weights = jnp.stack(nodes), jnp.stack(weights)
    grid, density = _density(grid_size, sigma2, nodes, weights)
    return SpectralDensity(grid, density, nodes, weights)


# ----------------------------------------------------------------------------------------------
# trace


def _hutchinson_sample_impl(loss_fn, curvature, mask_leaves, params, batch, key, i):
    op = _flat(loss_fn, curvature, mask_leaves, params, batch)
    view = op.view
    v = view.project(jax.random.rademacher(jax.random.fold_in(key, i), (view.size,), dtype=view.dtype))
    return v @ op.matvec(v)


def _flat_matvec_impl(loss_fn, curvature, mask_leaves, params, batch, x):
    return _flat(loss_fn, curvature, mask_leaves, params, batch).matvec(x)


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


def _hutchpp_signs(mask_leaves, params, key, num_sketch, num_rest):
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
    signs_s, signs_g = _hutchpp_signs(mask_leaves, params, key, num_sketch, num_rest)
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


_hutchinson_spread = jax.jit(_hutchinson_spread_impl, static_argnums=(0, 1, 2, 3, 4))
_hutchinson_sample = jax.jit(_hutchinson_sample_impl, static_argnums=(0, 1, 2))
_hutchinson_scan = jax.jit(_hutchinson_scan_impl, static_argnums=(0, 1, 2, 3))
_flat_matvec = jax.jit(_flat_matvec_impl, static_argnums=(0, 1, 2))
_hutchpp_scan = jax.jit(_hutchpp_scan_impl, static_argnums=(0, 1, 2, 3, 4))
_hutchpp_signs_jit = jax.jit(_hutchpp_signs, static_argnums=(0, 3, 4))
_hutchpp_basis_deflate = jax.jit(_hutchpp_basis_deflate_impl)
_hutchpp_combine = jax.jit(_hutchpp_combine_impl)


def hessian_trace(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    *,
    key: jax.Array,
    num_samples: int,
    method: str = "hutchinson",
    strategy: str = "auto",
    curvature: str | GaussNewton = "hessian",
    mask: PyTree = None,
    mesh: Mesh | None = None,
    preconditioner: PyTree = None,
) -> HessianTrace:
    """Stochastic estimate of the Hessian trace tr C from ``num_samples`` operator products.

    Hutchinson: with Rademacher vectors v_i (E v vᵀ = I), tr C ≈ (1/n) Σ_i v_iᵀ C v_i, stderr =
    std_i(v_iᵀCv_i)/√n. Its variance is 2 Σ_{i≠j} C_ij², large when a few outlier eigenvalues
    dominate (network Hessians).

    Hutch++: s = ⌊n/3⌋ products sketch the range, Q = orth(C S) (S: n×s signs); then
    tr C ≈ tr(QᵀCQ) + (1/r) Σ_i g_iᵀ(I−QQᵀ) C (I−QQᵀ) g_i with the remaining r = n − 2s sign
    vectors g_i. The top of the spectrum is taken exactly, so the variance drops when it
    dominates (O(1/n²) vs O(1/n) error for PSD C). stderr is that of the second (Hutchinson) part,
    conditional on Q; NaN when r < 2.

    Args:
      loss_fn, params, batch, strategy, curvature, mask: as in :func:`hessian_eigs` (with ``mask``
        the trace of the block C_SS).
      preconditioner: as in :func:`hessian_eigs`: estimate tr(P^{-1/2} C P^{-1/2}) = tr(P⁻¹C) =
        Σ_i C_ii / P_i from the same n operator products.
      key: PRNG key of the random vectors (sample i of Hutchinson uses ``fold_in(key, i)``).
      num_samples: n, the number of operator products (Hutch++: ≥ 3).
      method: ``"hutchinson"`` or ``"hutch++"``.
      mesh: Hutchinson only: spread the n independent samples over this mesh's devices (each
        evaluates ⌈n/m⌉ of them on the whole batch, :func:`landscape.parallel.spread_points`);
        the same samples, so the same estimate, as without it.

    Returns:
      :class:`HessianTrace` ``(estimate (), stderr ())``.

    Reference:
      Hutchinson (1990), "A stochastic estimator of the trace of the influence matrix";
      Meyer, Musco, Musco, Woodruff (2021), "Hutch++: optimal stochastic trace estimation",
      Algorithm 1; Yao et al. (2020), PyHessian, Sec. 3.2.

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p ** 2)          # tr H = Σ b
        >>> float(hessian_trace(loss_fn, jnp.ones(3), jnp.array([1.0, 2.0, 5.0]),
        ...                     key=jax.random.key(0), num_samples=4).estimate)
        8.0
        >>> float(hessian_trace(loss_fn, jnp.ones(3), jnp.array([1.0, 2.0, 5.0]),    # Σ b_i / P_i
        ...                     key=jax.random.key(0), num_samples=4,
        ...                     preconditioner=jnp.array([1.0, 1.0, 10.0])).estimate)
        3.5
    """
    num_samples = _positive_int("num_samples", num_samples)
    if method not in _TRACE_METHODS:
        raise ValueError(f"method must be one of {_TRACE_METHODS}; got {method!r}.")
    curvature = _check_curvature(curvature)
    mask_leaves = _mask_leaves(params, mask)
    curvature, batch = _with_preconditioner(curvature, params, batch, preconditioner)
    resolved = _resolve_strategy(strategy, params, batch, key)
    args = (loss_fn, curvature, mask_leaves)
    if mesh is not None:
        if method != "hutchinson":
            raise ValueError("mesh= spreads Hutchinson's independent samples; hutch++ is sequential "
                             "(its later products depend on the sketch): use method='hutchinson'.")
        return _hutchinson_spread(*args, num_samples, mesh, params, batch, key)
    if method == "hutchinson":
        if resolved == "scan":
            return _hutchinson_scan(*args, num_samples, params, batch, key)
        samples = jnp.stack([
            _hutchinson_sample(*args, params, batch, key, jnp.asarray(i, jnp.int32))
            for i in range(num_samples)
        ])
        return HessianTrace(*_mean_stderr(samples))
    if num_samples < 3:
        raise ValueError(f"method='hutch++' needs num_samples >= 3; got {num_samples}.")
    num_sketch = num_samples // 3
    num_rest = num_samples - 2 * num_sketch
    if resolved == "scan":
        return _hutchpp_scan(*args, num_sketch, num_rest, params, batch, key)

    def apply(rows):
        return jnp.stack([_flat_matvec(*args, params, batch, x) for x in rows])

    signs_s, signs_g = _hutchpp_signs_jit(mask_leaves, params, key, num_sketch, num_rest)
    q_rows, g_rows = _hutchpp_basis_deflate(apply(signs_s), signs_g)
    return _hutchpp_combine(q_rows, apply(q_rows), g_rows, apply(g_rows))


# ----------------------------------------------------------------------------------------------
# curvature along the gradient


def _gradient_curvature_impl(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradientCurvature:
    dtype = _result_dtype(params)
    grad, hvp_fn = jax.linearize(lambda p: jax.grad(loss_fn)(p, batch), params)
    hg = hvp_fn(grad)
    grad_acc, hg_acc = optax.tree.cast(grad, dtype), optax.tree.cast(hg, dtype)
    sq_norm = optax.tree.vdot(grad_acc, grad_acc).astype(dtype)
    curv = jnp.where(sq_norm > 0, optax.tree.vdot(grad_acc, hg_acc) / jnp.where(sq_norm > 0, sq_norm, 1),
                     jnp.nan)
    return GradientCurvature(curv.astype(dtype), jnp.sqrt(sq_norm))


_gradient_curvature_jit = jax.jit(_gradient_curvature_impl, static_argnums=0)


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
