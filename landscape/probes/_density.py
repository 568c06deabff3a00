"""Eigenvalue densities of a curvature operator by stochastic Lanczos quadrature (SLQ).

For each run r (Rademacher start v_r, key ``fold_in(key, r)``), m Lanczos steps
(:mod:`landscape.probes._lanczos`) give T_r = S_r diag(θ_r) S_rᵀ; the Gauss quadrature of the
spectral measure of C seen from v_r has nodes θ_rj and weights w_rj = (S_r)_{1j}² (squared FIRST
components of T's eigenvectors; not the eigenvalues' multiplicities, and not the components of the
Ritz vectors). Averaged over runs and smoothed with a Gaussian kernel:

    φ(t) = (1/R) Σ_r Σ_j w_rj · N(t; θ_rj, σ²),   σ² = sigma2 · max(1, λ_max − λ_min),

with λ_max/λ_min the largest/smallest node. This is the smoothing of Ghorbani et al.'s code
(google/spectral-density ``eigv_to_density``, their σ² = 1e-5 scaled by the spectrum's range).
φ is evaluated on ``grid_size`` points from λ_min − 5σ to λ_max + 5σ and normalised to trapezoid
integral 1 there (:func:`smoothed_density`, also for nodes and weights read back from records).
The kernel's σ should span a few grid steps: with the defaults σ ≈ 3e-3·√range, the grid step
≈ (range + 10σ)/grid_size.

Example::

    d = probes.spectral_density(loss_fn, params, batch, key=jax.random.key(0), num_iters=90,
                                num_runs=5)
    plt.semilogy(d.grid, d.density)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from landscape.parallel import spread_points
from landscape.choices import check_int
from landscape.probes._lanczos import _lanczos_host, _lanczos_scan, _LanczosState, _tridiagonal
from landscape.probes._operators import GaussNewton, _prepare
from landscape.probes._strategy import _compiled, _resolve_loop_strategy
from landscape.probes._types import LossFn, PyTree

__all__ = ["SpectralDensity", "smoothed_density", "spectral_density"]


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


# ----------------------------------------------------------------------------------------------
# from Lanczos to a density


def _nodes_weights_impl(state: _LanczosState):
    """The quadrature of one run: nodes θ_j (eigenvalues of T) and weights s_{1j}²."""
    theta, s = jnp.linalg.eigh(_tridiagonal(state))
    return theta, s[0, :] ** 2


def _kernel_variance(sigma2: float, nodes: jax.Array):
    """``(λ_min, λ_max, σ²)`` with σ² = sigma2 · max(1, λ_max − λ_min) over all ``nodes``."""
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    return lo, hi, sigma2 * jnp.maximum(1.0, hi - lo)


def _grid(lo: jax.Array, hi: jax.Array, variance: jax.Array, grid_size: int, dtype) -> jax.Array:
    """``grid_size`` evenly spaced points from λ_min − 5σ to λ_max + 5σ."""
    sigma = jnp.sqrt(variance)
    return jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=dtype)


def _smoothed(grid, variance, nodes, weights):
    """φ(t) = (1/R) Σ_rj w_rj N(t; θ_rj, σ²) on ``grid``, normalised to trapezoid integral 1."""
    diff = grid[:, None] - nodes.reshape(-1)[None, :]
    kernel = jnp.exp(-0.5 * diff**2 / variance) / jnp.sqrt(2 * jnp.pi * variance)
    density = kernel @ weights.reshape(-1) / nodes.shape[0]
    return density / jnp.trapezoid(density, grid)


def _density_impl(grid_size, sigma2, nodes, weights):
    lo, hi, variance = _kernel_variance(sigma2, nodes)
    grid = _grid(lo, hi, variance, grid_size, nodes.dtype)
    return grid, _smoothed(grid, variance, nodes, weights)


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


def _slq_host(loss_fn, curvature, mask_leaves, num_iters, num_runs, grid_size, sigma2, params,
              batch, key):
    """SLQ as a host loop over the R runs, each a host-loop Lanczos."""
    nodes, weights = [], []
    for r in range(num_runs):
        state = _lanczos_host(loss_fn, curvature, mask_leaves, num_iters, params, batch,
                              jax.random.fold_in(key, r), None)
        theta, w = _nodes_weights(state)
        nodes.append(theta)
        weights.append(w)
    nodes, weights = jnp.stack(nodes), jnp.stack(weights)
    grid, density = _density(grid_size, sigma2, nodes, weights)
    return SpectralDensity(grid, density, nodes, weights)


_slq_scan = _compiled(_slq_scan_impl, 8)
_nodes_weights = _compiled(_nodes_weights_impl)
_density = _compiled(_density_impl, 2)


# ----------------------------------------------------------------------------------------------
# the probes


def _check_grid(grid_size: int, sigma2: float) -> tuple[int, float]:
    grid_size = check_int("grid_size", grid_size)
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2; got {grid_size}.")
    if not (isinstance(sigma2, (int, float)) and math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be a finite float > 0; got {sigma2!r}.")
    return grid_size, float(sigma2)


def smoothed_density(nodes: jax.Array, weights: jax.Array, *, grid_size: int = 10_000,
                     sigma2: float = 1e-5) -> tuple[jax.Array, jax.Array]:
    """The Gaussian-smoothed SLQ density of given quadrature nodes and weights, on its own grid.

        φ(t) = (1/R) Σ_r Σ_j w_rj · N(t; θ_rj, σ²),   σ² = sigma2 · max(1, θ_max − θ_min),

    on ``grid_size`` points from θ_min − 5σ to θ_max + 5σ, normalised to trapezoid integral 1:
    the rule of :func:`spectral_density`, for nodes and weights it returned (or that a record
    kept). Jitted, in the nodes' dtype.

    Args:
      nodes: (R, m) Ritz values θ_rj.
      weights: (R, m) quadrature weights w_rj (each row sums to 1).
      grid_size: number of grid points (≥ 2).
      sigma2: the relative kernel variance (> 0).

    Returns:
      ``(grid (G,), density (G,))``.

    Reference:
      Ghorbani, Krishnan, Xiao (2019), Sec. 2.2 and App. A.

    Example::

        >>> g, d = smoothed_density(jnp.array([[0.0, 1.0]]), jnp.array([[0.5, 0.5]]), grid_size=5)
        >>> float(jnp.trapezoid(d, g))
        1.0
    """
    grid_size, sigma2 = _check_grid(grid_size, sigma2)
    return _density(grid_size, sigma2, jnp.asarray(nodes), jnp.asarray(weights))


def spectral_density(loss_fn: LossFn, params: PyTree, batch: PyTree, *, key: jax.Array,
                     num_iters: int, num_runs: int, grid_size: int = 10_000, sigma2: float = 1e-5,
                     strategy: str = "auto", curvature: str | GaussNewton = "hessian",
                     mask: PyTree = None, mesh: Mesh | None = None,
                     preconditioner: PyTree = None) -> SpectralDensity:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ).

        φ(t) = (1/R) Σ_r Σ_j w_rj · N(t; θ_rj, σ²),   σ² = sigma2 · max(1, λ_max − λ_min),

    with nodes θ_rj and weights w_rj = (S_r)_{1j}² from m Lanczos steps of run r (the module
    docstring), on ``grid_size`` points from λ_min − 5σ to λ_max + 5σ, trapezoid integral 1.
    Costs num_runs · num_iters operator products.

    Args:
      loss_fn, params, batch, curvature, mask, strategy: as in :func:`hessian_eigs` (with
        ``"scan"`` the runs are a ``lax.map``, one after the other).
      preconditioner: as in :func:`hessian_eigs`: the density of P^{-1/2} C P^{-1/2}.
      key: PRNG key; run r uses ``fold_in(key, r)``.
      num_iters: m, Lanczos steps per run (Ghorbani et al. use 90).
      num_runs: R, independent start vectors (≥ 1).
      grid_size: number of grid points (≥ 2).
      sigma2: the relative kernel variance above (> 0).
      mesh: spread the R runs over this mesh's devices (⌈R/n⌉ each, on the whole batch, one
        compiled ``"scan"`` Lanczos per device; :func:`landscape.parallel.spread_points`); the
        same start vectors, so the same density, as without it.

    Returns:
      :class:`SpectralDensity` ``(grid (G,), density (G,), nodes (R, m), weights (R, m))``.

    Reference:
      Ghorbani, Krishnan, Xiao (2019), Sec. 2.2 and App. A; Lin, Saad, Yang (2016), Sec. 3.2;
      Golub & Meurant (2010), Ch. 6 (Gauss quadrature from Lanczos).
    """
    num_iters = check_int("num_iters", num_iters)
    num_runs = check_int("num_runs", num_runs)
    grid_size, sigma2 = _check_grid(grid_size, sigma2)
    curvature, mask_leaves, batch = _prepare(curvature, params, batch, mask, preconditioner)
    args = (loss_fn, curvature, mask_leaves, num_iters, num_runs, grid_size, sigma2)
    if _resolve_loop_strategy(strategy, params, batch, key) == "scan" or mesh is not None:
        return _slq_scan(*args, mesh, params, batch, key)
    return _slq_host(*args, params, batch, key)
