"""Loss surfaces: 1-D and 2-D slices of the loss along chosen directions in parameter space.

The measurements behind Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of
Neural Nets" (NeurIPS 2018) and Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural
network optimization problems" (ICLR 2015):

- :func:`random_direction` — a Gaussian direction, filter-normalized (Li et al. Sec. 4), with
  :func:`default_filter_axes` saying which axes index the filters of each leaf;
- :func:`curvature_directions` — the top (or bottom) Hessian eigenvectors;
- :func:`interpolation_direction` — d = θ₁ − θ₀, so θ(α) = θ₀ + α d (Goodfellow et al.);
- :func:`pca_directions` — the top principal directions of a training trajectory (Li et al. Sec. 7);
- :func:`loss_surface` — L(θ + a_i d₁ + b_j d₂) on a grid, evaluated in jitted chunks;
- :func:`save_surface` / :func:`load_surface` — ``.npz`` + ``.json`` so figures can be redrawn
  (:mod:`landscape.surface_plots`) without recomputing.

Every function takes the toolkit's one loss signature ``loss_fn(params, batch) -> scalar``; no Flax.

**BatchNorm mode.** Which function of the weights is sliced is the loss function's business: with
:func:`landscape.bridge.make_loss_fn` the slice is of the batch-statistics loss (``mode=
"batch_stats"``, train mode) or of the running-average loss (``mode="running_average"``, eval
mode). The two differ by orders of magnitude away from θ (see ``shared/STACK.md``, "BN mode matters
for probes"), so record the mode with every surface: ``save_surface(path, s, mode="batch_stats")``.

Example::

    from landscape import probes
    key1, key2 = jax.random.split(jax.random.key(0))
    d1 = probes.random_direction(key1, params)           # filter-normalized, biases/BN zeroed
    d2 = probes.random_direction(key2, params)
    grid = jnp.linspace(-1.0, 1.0, 51)
    s = probes.loss_surface(loss_fn, params, batch, (d1, d2), (grid, grid))
    s.loss.shape                                         # (51, 51)
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from landscape.choices import check_int
from landscape.parallel import mesh_size, spread_points
from landscape.probes._paths import param_paths
from landscape.probes._step import (STRATEGIES, _check_direction, _result_dtype,
                                    map_with_strategy)
from landscape.probes._types import LossFn, PyTree
from landscape.records import to_jsonable

__all__ = [
    "DIRECTION_NORMS",
    "LossSurface",
    "curvature_directions",
    "PCADirections",
    "default_chunk_size",
    "default_filter_axes",
    "interpolation_direction",
    "load_surface",
    "loss_surface",
    "pca_directions",
    "random_direction",
    "resolve_surface_strategy",
    "save_surface",
]


#: Accepted values of ``norm`` in :func:`random_direction` (``None`` means ``"none"``).
DIRECTION_NORMS = ("filter", "layer", "none")

#: Grid points per compiled chunk when ``chunk_size`` is None, per backend and resolved strategy.
#: Measured on this project's shared 2-core CPUs (benchmarks/bench_surface.py, BN batch stats,
#: batch 128, 4×4 grid; time per point ÷ one jitted loss; two runs, load 6–8 on 2 cores):
#:   narrow VGG-11 (32×32×3): unroll 1 0.95–0.99, unroll 4 1.03–1.04, vmap 2 0.72–0.75,
#:                            vmap 4 0.77–0.85, vmap 16 1.30;
#:   vgg5 width 0.25 (28×28×1): unroll 1 0.81–1.21, unroll 4 1.39–1.76, vmap 1 0.92,
#:                              vmap 2 1.54–3.06, vmap 4 2.06–4.29.
#: vmap's gain on CPU is model-dependent (a win on VGG-11, a loss on vgg5), so "auto" on CPU is a
#: host loop of one jitted single-point loss (unroll, 1 point per chunk): ≈ 1.0 on both.
#: Accelerators: vmap, 64 points at once (not measured here: no GPU in this session).
_DEFAULT_CHUNK = {
    "cpu": {"vmap": 2, "unroll": 1, "map": 4},
    "other": {"vmap": 64, "unroll": 8, "map": 64},
}

#: Relative guard against dividing by a zero filter of the direction (Li et al. use 1e-10).
_EPS = 1e-10


class LossSurface(NamedTuple):
    """Result of :func:`loss_surface`.

    Attributes:
      coords: tuple of 1 or 2 arrays, (A,) and optionally (B,): the coordinates a_i (and b_j)
        along each direction, in the params' float dtype.
      loss: (A,) or (A, B): ``loss[i, j] = L(θ + a_i d₁ + b_j d₂)``.
      metric: like ``loss``: ``metrics_fn`` at the same points, or None when no ``metrics_fn``.
    """

    coords: tuple[jax.Array, ...]
    loss: jax.Array
    metric: jax.Array | None = None


class PCADirections(NamedTuple):
    """Result of :func:`pca_directions` (T checkpoints, ``num`` components).

    Attributes:
      directions: tuple of ``num`` pytrees like ``final``: orthonormal principal directions
        (unit norm over all leaves together), in the params' dtypes.
      explained_variance_ratio: (num,) float64: s_k² / Σ_all s² of the (T, P) matrix of
        θ_t − θ_final (or of its column-centred version with ``center=True``).
      projected: (T, num) float64: the least-squares coordinates of θ_t − θ_final in the span of
        the directions (the trajectory to draw over the surface; the final point is the origin).
    """

    directions: tuple[PyTree, ...]
    explained_variance_ratio: np.ndarray
    projected: np.ndarray


# ----------------------------------------------------------------------------------------------
# directions


def _is_float(leaf) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _draw_dtype(leaf) -> jnp.dtype:
    # Drawn in float32 at least (float16 normals are coarse), returned in the leaf's dtype.
    return jnp.promote_types(jnp.result_type(leaf), jnp.float32)


def _is_drawn(leaf) -> bool:
    return _is_float(leaf) and jnp.ndim(leaf) >= 2


@functools.partial(jax.jit, static_argnums=(1, 2))
def _standard_normal(key, size: int, dtype):
    """One flat N(0, 1) draw for all kernels: one threefry instance, compiled once per size."""
    return jax.random.normal(key, (size,), dtype)


#: Module names of attention query/key/value projections whose kernels are (in, heads, head_dim):
#: Flax ``nnx.MultiHeadAttention`` / linen ``MultiHeadDotProductAttention`` (query, key, value)
#: and the q_proj/k_proj/v_proj spelling.
_ATTENTION_QKV = frozenset({"query", "key", "value", "q_proj", "k_proj", "v_proj"})


def default_filter_axes(path: str, leaf) -> tuple[int, ...]:
    """The axes of ``leaf`` that index its filters, by layout, for :func:`random_direction`.

    ``path`` is the leaf's ``"/"``-joined key path (:func:`landscape.probes.param_paths`); a
    trailing ``"value"`` component (a non-pure ``nnx.State``: ``".../kernel/value"``) is ignored.

    - a 2-D leaf with a path component containing ``"embed"`` (any case) whose own name is not
      ``"kernel"`` — an embedding table (vocab, d) such as ``nnx.Embed``'s ``embedding``: (0,),
      one filter per token row. (A Dense/Conv ``kernel`` under a module named ``*embed*``, e.g. a
      ViT patch embedding, keeps the kernel rule.)
    - a 3-D leaf under a module named ``query``, ``key``, ``value``, ``q_proj``, ``k_proj`` or
      ``v_proj`` — an attention projection kernel (in, heads, head_dim): (1, 2), every
      (head, dim) output unit is a filter whose norm runs over the input axis.
    - anything else: (ndim − 1,), the last axis: a Flax conv kernel (H, W, C_in, C_out), a dense
      kernel (in, out), and the attention output kernel (heads, head_dim, out) of ``out``.
      (ndim ≤ 1 gives (0,) or (); :func:`random_direction` never normalizes such leaves.)

    Example::

        >>> default_filter_axes("attn/query/kernel", jnp.ones((8, 2, 4)))
        (1, 2)
        >>> default_filter_axes("tok_embed/embedding", jnp.ones((100, 8)))
        (0,)
    """
    ndim = jnp.ndim(leaf)
    parts = path.split("/")
    if len(parts) > 1 and parts[-1] == "value":
        parts = parts[:-1]
    if ndim == 2 and parts[-1] != "kernel" and any("embed" in p.lower() for p in parts):
        return (0,)
    if ndim == 3 and _ATTENTION_QKV.intersection(parts[:-1]):
        return (1, 2)
    return tuple(range(ndim))[-1:]


def _norm_axes(path: str, leaf, filter_axes) -> tuple[int, ...]:
    """The axes the filter norm of ``leaf`` runs over: all but its filter axes (checked)."""
    ndim = jnp.ndim(leaf)
    axes = filter_axes(path, leaf) if callable(filter_axes) else filter_axes
    if axes is None:
        axes = default_filter_axes(path, leaf)
    axes = tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)
    ok = all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and -ndim <= a < ndim
             for a in axes)
    if not ok or len({int(a) % ndim for a in axes}) != len(axes):
        raise ValueError(f"filter_axes {axes!r} for leaf {path!r} of shape {jnp.shape(leaf)}: "
                         f"expected distinct int axes in [-{ndim}, {ndim}).")
    filters = {int(a) % ndim for a in axes}
    return tuple(a for a in range(ndim) if a not in filters)


@functools.partial(jax.jit, static_argnames=("norm", "ignore_1d", "norm_axes"))
def _normalize_direction(flat, params, *, norm: str, ignore_1d: bool,
                         norm_axes: tuple[tuple[int, ...] | None, ...]):
    leaves, treedef = jax.tree.flatten(params)
    out, start = [], 0
    for p, axes in zip(leaves, norm_axes):
        p = jnp.asarray(p)
        if not _is_float(p):
            out.append(jnp.zeros_like(p))
            continue
        if p.ndim <= 1:
            out.append(jnp.zeros_like(p) if ignore_1d else p)
            continue
        dtype = _draw_dtype(p)
        d = flat[start:start + p.size].reshape(p.shape).astype(dtype)
        start += p.size
        if norm == "filter":
            # One filter per index of the filter axes; its norm runs over ``axes``, the others.
            p_norm = jnp.sqrt(jnp.sum(jnp.square(p.astype(dtype)), axis=axes, keepdims=True))
            d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
            d = d * (p_norm / (d_norm + _EPS))
        elif norm == "layer":
            d = d * (jnp.linalg.norm(p.astype(dtype)) / (jnp.linalg.norm(d) + _EPS))
        out.append(d.astype(p.dtype))
    return jax.tree.unflatten(treedef, out)


def random_direction(
    key: jax.Array, params: PyTree, *, norm: str | None = "filter", ignore_1d: bool = True,
    filter_axes: int | tuple[int, ...] | Callable[[str, Any], int | tuple[int, ...] | None]
    | None = None,
) -> PyTree:
    """A Gaussian direction in parameter space, normalized filter by filter (Li et al. 2018).

    For every floating leaf θ_l with ndim ≥ 2, draw d_l with i.i.d. N(0, 1) entries, then

        norm="filter":  d_{l,f} ← d_{l,f} · ‖θ_{l,f}‖_F / (‖d_{l,f}‖_F + 1e-10)   for each filter f
        norm="layer":   d_l     ← d_l     · ‖θ_l‖_F     / (‖d_l‖_F     + 1e-10)
        norm="none":    d_l unchanged (raw Gaussian; ``None`` means the same)

    A *filter* f of a leaf is one index into its **filter axes** (one output channel / unit);
    θ_{l,f} is the slice at that index, and its norm runs over all the OTHER axes. The filter
    axes of each leaf come from ``filter_axes``; by default (:func:`default_filter_axes`):

    - Flax conv kernel (H, W, C_in, C_out): axis 3 (C_out); norm over H × W × C_in.
    - Flax dense kernel (in, out): axis 1 (out); norm over in.
    - attention query/key/value kernel (in, heads, head_dim) — a 3-D leaf under a module named
      ``query``/``key``/``value`` (Flax ``nnx.MultiHeadAttention``) or ``q_proj``/``k_proj``/
      ``v_proj``: axes (1, 2), one filter per (head, dim) pair; norm over in.
    - attention output kernel (heads, head_dim, out) (``out``): axis 2; norm over heads × head_dim.
    - embedding table (vocab, d) — a 2-D non-``kernel`` leaf with a path component containing
      ``"embed"`` (``nnx.Embed``'s ``embedding``): axis 0, one filter per token row; norm over d.
    - Equinox weights are (out, in), output units on axis 0, which the default rule cannot tell
      from a Flax (in, out) kernel: pass ``filter_axes=0`` (every ≥2-D leaf) or a callable.
      (PyTorch also stores output filters on axis 0; Li et al.'s code iterates over that one.)

    A zero filter of θ gives a zero filter of d. Leaves with ndim ≤ 1 (biases, BatchNorm
    scale/offset, scalars) have no filters and ignore ``filter_axes``: they are set to zero when
    ``ignore_1d`` (Li et al.'s ``--xignore biasbn``) or copied from θ otherwise (their default
    ``d.copy_(w)``), whatever ``norm`` is. Non-floating leaves get zeros.

    The entries of all drawn leaves come from ONE ``jax.random.normal(key, (total,))`` call (in
    the widest float dtype of those leaves, at least float32), split in leaf order: one PRNG
    instance compiles in well under a second, one per leaf took ~0.6 s each on CPU. So a leaf's
    entries depend on the key and on the sizes of the kernels before it, not on ``filter_axes``.
    Jitted internally, compiled once per parameter structure, ``norm``/``ignore_1d`` and resolved
    per-leaf axes (a callable ``filter_axes`` is called on the host, outside the jit).

    Args:
      key: a JAX PRNG key.
      params: pytree θ (e.g. ``split(model)[1]``).
      norm: ``"filter"`` (default), ``"layer"``, or ``"none"``/``None``.
      ignore_1d: zero (True, default) or copy (False) the ≤1-D leaves.
      filter_axes: which axes index the filters of each ≥2-D floating leaf: ``None`` (default)
        for :func:`default_filter_axes`; an int or tuple of ints (negative allowed) for every
        such leaf; or a callable ``(path, leaf) -> int | tuple[int, ...] | None``, ``path`` as
        :func:`landscape.probes.param_paths` writes it, ``None`` for the default rule on that leaf.

    Returns:
      A pytree like ``params``, every leaf in its own dtype.

    Raises:
      ValueError: unknown ``norm``; a filter axis out of range, repeated or not an int (the
        message names the leaf's path).

    Reference:
      Li, Xu, Taylor, Studer, Goldstein (2018), Sec. 4 ("Filter-wise normalization") and their
      ``net_plotter.normalize_directions_for_weights``.

    Example::

        >>> d = random_direction(jax.random.key(0), {"w": jnp.ones((3, 3, 2, 4)), "b": jnp.ones(4)})
        >>> jnp.linalg.norm(d["w"][..., 0]), d["b"]          # ‖θ_{w,0}‖ = sqrt(18)
        (Array(4.2426..., dtype=float32), Array([0., 0., 0., 0.], dtype=float32))
        >>> d = random_direction(jax.random.key(0), {"w": jnp.ones((4, 9))}, filter_axes=0)
        >>> jnp.linalg.norm(d["w"], axis=1).round(4)         # (out, in): ‖θ_{w,f}‖ = sqrt(9)
        Array([3., 3., 3., 3.], dtype=float32)
    """
    if norm is None:
        norm = "none"
    if norm not in DIRECTION_NORMS:
        raise ValueError(
            f"norm must be one of {', '.join(repr(n) for n in DIRECTION_NORMS)} or None; "
            f"got {norm!r}."
        )
    leaves = jax.tree.leaves(params)
    norm_axes = tuple(_norm_axes(path, leaf, filter_axes) if _is_drawn(leaf) else None
                      for path, leaf in zip(param_paths(params), leaves))
    if norm != "filter":   # the axes are unused: one compiled program whatever filter_axes is
        norm_axes = (None,) * len(leaves)
    drawn = [leaf for leaf in leaves if _is_drawn(leaf)]
    total = sum(int(np.size(leaf)) for leaf in drawn)
    dtype = jnp.result_type(*[_draw_dtype(leaf) for leaf in drawn]) if drawn else jnp.float32
    flat = _standard_normal(key, total, jnp.dtype(dtype)) if total else jnp.zeros((0,), dtype)
    return _normalize_direction(flat, params, norm=norm, ignore_1d=bool(ignore_1d),
                                norm_axes=norm_axes)


def curvature_directions(loss_fn: LossFn, params: PyTree, batch: PyTree, k: int = 2, *,
                         key: jax.Array, num_iters: int = 20, which: str = "largest",
                         scale: str = "unit") -> tuple[PyTree, ...]:
    """The top (or bottom) ``k`` Hessian eigenvectors at θ as directions for :func:`loss_surface`.

    v₁ … v_k from :func:`landscape.probes.hessian_eigs` (Lanczos, ``num_iters`` Hessian-vector
    products, full reorthogonalisation), so that the slice L(θ + a v₁ + b v₂) runs along the
    sharpest (``which="largest"``) or flattest / most negative (``"smallest"``) curvature: along
    v₁ the loss is ≈ L(θ) + a gᵀv₁ + ½ λ₁ a² near a = 0. ``scale="unit"`` keeps ‖v_i‖ = 1 (the
    a-axis in parameter-space units; use a span ~ 1/√λ₁); ``"params"`` rescales each to ‖θ‖, as
    comparable to a filter-normalized random direction's overall size. An eigenvector's sign is
    arbitrary: the slice is symmetric only in its quadratic term.

    Example::

        d1, d2 = curvature_directions(loss_fn, params, batch, key=jax.random.key(0))
        s = loss_surface(loss_fn, params, batch, (d1, d2), (jnp.linspace(-0.2, 0.2, 21),) * 2)
    """
    from landscape.probes._curvature import hessian_eigs

    if scale not in ("unit", "params"):
        raise ValueError(f"scale={scale!r}; expected 'unit' or 'params'")
    eigs = hessian_eigs(loss_fn, params, batch, k, key=key, num_iters=num_iters, which=which)
    vectors = tuple(jax.tree.map(lambda v, i=i: v[i], eigs.eigenvectors) for i in range(k))
    if scale == "params":
        size = optax.tree.norm(params)
        vectors = tuple(optax.tree.scale(size / optax.tree.norm(v), v) for v in vectors)
    return tuple(jax.tree.map(lambda v, p: v.astype(jnp.result_type(p)), v, params)
                 for v in vectors)


def interpolation_direction(params_from: PyTree, params_to: PyTree) -> PyTree:
    """d = θ₁ − θ₀, so that θ(α) = θ₀ + α d runs from θ₀ (α = 0) to θ₁ (α = 1).

    Goodfellow et al.'s line θ(α) = (1 − α)θ₀ + αθ₁ is exactly θ₀ + α d: pass ``params_from`` as
    the ``params`` of :func:`loss_surface` with ``directions=(d,)``. Leaves keep ``params_from``'s
    dtypes.

    Args:
      params_from: pytree θ₀ (e.g. the initialisation).
      params_to: pytree θ₁ of the same structure and shapes (e.g. the trained weights).

    Returns:
      The pytree θ₁ − θ₀.

    Raises:
      ValueError: structures or shapes differ.

    Reference:
      Goodfellow, Vinyals, Saxe (2015), Sec. 2; Li et al. (2018), Sec. 3 (1-D interpolation).

    Example::

        d = interpolation_direction(theta0, theta1)
        s = loss_surface(loss_fn, theta0, batch, (d,), (jnp.linspace(-0.5, 1.5, 401),))
    """
    _check_direction(params_from, params_to)
    return jax.tree.map(
        lambda a, b: (jnp.asarray(b) - jnp.asarray(a)).astype(jnp.result_type(a)),
        params_from, params_to,
    )


def _stack_trajectory(trajectory, final) -> list[list[np.ndarray]]:
    """Per leaf, a list of T float64 arrays θ_t (leaf order of ``final``)."""
    final_struct = jax.tree.structure(final)
    if isinstance(trajectory, (list, tuple)) and trajectory and all(
            jax.tree.structure(t) == final_struct for t in trajectory):
        for t in trajectory:
            _check_direction(final, t)
        per_point = [jax.tree.leaves(t) for t in trajectory]
        return [[np.asarray(pt[i], np.float64) for pt in per_point]
                for i in range(final_struct.num_leaves)]
    if jax.tree.structure(trajectory) == final_struct:  # stacked: leading axis T on every leaf
        leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(trajectory)]
        sizes = {x.shape[0] if x.ndim else None for x in leaves}
        for x, f in zip(leaves, jax.tree.leaves(final)):
            if x.shape[1:] != np.shape(f):
                raise ValueError(
                    f"a stacked trajectory needs leaves of shape (T, *leaf.shape); got {x.shape} "
                    f"for a final leaf of shape {np.shape(f)}.")
        if len(sizes) != 1:
            raise ValueError(f"stacked trajectory leaves disagree on T: {sorted(map(str, sizes))}")
        return [list(x) for x in leaves]
    raise ValueError(
        "trajectory must be a non-empty list of pytrees shaped like final, or one pytree like "
        "final with a leading checkpoint axis on every leaf.")


def pca_directions(trajectory: Sequence[PyTree] | PyTree, final: PyTree, *, num: int = 2,
                   center: bool = False) -> PCADirections:
    """The top ``num`` principal directions of a training trajectory around its end point.

    With M the (T, P) matrix whose rows are θ_t − θ_final (flattened over all leaves) and its
    singular value decomposition M = U S Vᵀ, the directions are the first ``num`` rows of Vᵀ
    (unit norm, orthogonal), ``explained_variance_ratio_k = s_k² / Σ_j s_j²`` and
    ``projected[t] = argmin_c ‖(θ_t − θ_final) − Σ_k c_k v_k‖ = (⟨θ_t − θ_final, v_k⟩)_k`` (the
    least-squares coordinates, dot products since the v_k are orthonormal).

    Computed in float64 NumPy without ever forming M: the T × T Gram matrix M Mᵀ is summed leaf by
    leaf, its eigenvectors give U and S, and each leaf of v_k is u_kᵀ M_leaf / s_k. Memory is one
    leaf × T at a time; T (the number of checkpoints) should be small (tens to hundreds).

    ``center=True`` subtracts the mean over checkpoints of θ_t − θ_final first (what Li et al.'s
    code does through ``sklearn.decomposition.PCA``); the coordinates are still those of
    θ_t − θ_final. The default (no centring) keeps θ_final at the origin of the principal plane.

    Sign convention: each direction is flipped so that its largest-magnitude entry is positive.

    Args:
      trajectory: T checkpoints: a list of pytrees like ``final``, or one pytree like ``final``
        with a leading axis of length T on every leaf. May include θ_final itself.
      final: pytree θ_final (the trained weights; the surface is drawn around it).
      num: number of directions, 1 ≤ num ≤ T (2 for a contour plot).
      center: centre the rows before the SVD (see above).

    Returns:
      :class:`PCADirections` ``(directions, explained_variance_ratio, projected)``.

    Raises:
      ValueError: bad ``trajectory`` shape or ``num``, or a trajectory with fewer than ``num``
        nonzero singular values (e.g. every checkpoint equals θ_final).

    Reference:
      Li et al. (2018), Sec. 7 ("Visualizing optimization paths"), Fig. 9.

    Example::

        pca = pca_directions(checkpoints, params_final)
        s = loss_surface(loss_fn, params_final, batch, pca.directions, (a, b))
        plot_surface_contour(*s.coords, s.loss, trajectory=pca.projected)
    """
    check_int("num", num)
    per_leaf = _stack_trajectory(trajectory, final)
    final_leaves, treedef = jax.tree.flatten(final)
    num_points = len(per_leaf[0]) if per_leaf else 0
    if num > num_points:
        raise ValueError(f"num must be at most the number of checkpoints T={num_points}; got {num}.")
    rows = []  # per leaf, the (T, size) block of M
    gram = np.zeros((num_points, num_points), np.float64)
    for points, f in zip(per_leaf, final_leaves):
        block = np.stack([p.reshape(-1) for p in points]) - np.asarray(f, np.float64).reshape(1, -1)
        rows.append(block)
    deltas = rows
    if center:
        rows = [b - b.mean(axis=0, keepdims=True) for b in rows]
    for b in rows:
        gram += b @ b.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    total = float(np.sum(evals))
    if not total > 0 or not evals[num - 1] > total * 1e-24:
        raise ValueError(
            f"the trajectory spans fewer than num={num} directions around final (singular values² "
            f"{evals[:num].tolist()}); are all checkpoints equal to final?")
    sing = np.sqrt(evals[:num])
    directions, flat_dirs = [], []
    for k in range(num):
        leaves = [evecs[:, k] @ b / sing[k] for b in rows]
        flat = np.concatenate(leaves) if leaves else np.zeros(0)
        if flat.size and flat[np.argmax(np.abs(flat))] < 0:
            leaves = [-x for x in leaves]
        flat_dirs.append(leaves)
    projected = np.zeros((num_points, num), np.float64)
    for k, leaves in enumerate(flat_dirs):
        for v, b in zip(leaves, deltas):
            projected[:, k] += b @ v
        directions.append(jax.tree.unflatten(treedef, [
            jnp.asarray(v.reshape(np.shape(f)), dtype=jnp.result_type(f))
            for v, f in zip(leaves, final_leaves)]))
    return PCADirections(tuple(directions), evals[:num] / total, projected)


# ----------------------------------------------------------------------------------------------
# grid evaluation


def resolve_surface_strategy(strategy: str, chunk_size: int | None = None) -> str:
    """Validates ``strategy``/``chunk_size`` of :func:`loss_surface`; maps ``"auto"`` by backend.

    ``"auto"`` → ``"unroll"`` on CPU (with 1 point per chunk by default: a host loop of one jitted
    loss; see :func:`loss_surface` for the measurements) and ``"vmap"`` on GPU/TPU. Unlike :func:`landscape.probes.step_probe`, a chunk size is accepted by every
    strategy: here it is the number of grid points per compiled chunk.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(repr(s) for s in STRATEGIES)}; got {strategy!r}.")
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}.")
    if strategy == "auto":
        return "unroll" if jax.default_backend() == "cpu" else "vmap"
    return strategy


def default_chunk_size(strategy: str, num_points: int) -> int:
    """Points per chunk when ``chunk_size`` is None: min(num_points, the backend's default).

    CPU: 1 for ``"unroll"``, 2 for ``"vmap"``, 4 for ``"map"``; GPU/TPU: 64 (8 for ``"unroll"``).
    """
    table = _DEFAULT_CHUNK["cpu" if jax.default_backend() == "cpu" else "other"]
    return max(1, min(int(num_points), table[resolve_surface_strategy(strategy)]))


def _moved(params: PyTree, directions: tuple[PyTree, ...], offset: jax.Array) -> PyTree:
    """θ + Σ_k offset_k d_k, each floating leaf kept in its own dtype."""

    def leaf(p, *ds):
        if not _is_float(p):
            return p
        out = p
        for k, d in enumerate(ds):
            out = out + offset[k].astype(jnp.result_type(p)) * d.astype(jnp.result_type(p))
        return out.astype(jnp.result_type(p))

    return jax.tree.map(leaf, params, *directions)


def _chunk_impl(loss_fn: LossFn, metrics_fn: LossFn | None, strategy: str, mesh: Mesh | None,
                params: PyTree, batch: PyTree, directions: tuple[PyTree, ...], offsets: jax.Array):
    """(C,) losses (and metrics) at the C grid points ``offsets`` (C, num_directions), spread
    over ``mesh``'s devices when given (C/n points per device, whole batch each)."""
    dtype = offsets.dtype

    def evaluate(offsets, params, batch, directions):
        def at(offset):
            moved = _moved(params, directions, offset)
            loss = jnp.asarray(loss_fn(moved, batch), dtype)
            if metrics_fn is None:
                return loss, jnp.zeros((), dtype)
            return loss, jnp.asarray(metrics_fn(moved, batch), dtype)

        return map_with_strategy(at, offsets, strategy)

    return spread_points(evaluate, offsets, params, batch, directions, mesh=mesh)


# One compiled chunk function per (loss_fn, metrics_fn, strategy, mesh) and argument shapes: the
# host loop below calls it for every chunk, and a second surface of the same shapes reuses it.
_chunk_jit = jax.jit(_chunk_impl, static_argnums=(0, 1, 2, 3))


def loss_surface(loss_fn: LossFn, params: PyTree, batch: PyTree,
                 directions: Sequence[PyTree], coords: Sequence[jax.Array], *,
                 strategy: str = "auto", chunk_size: int | None = None,
                 metrics_fn: LossFn | None = None, mesh: Mesh | None = None) -> LossSurface:
    """The loss on a 1-D or 2-D grid through θ: L(θ + a_i d₁ [+ b_j d₂]).

    One direction:  ``loss[i]    = L(θ + a_i d₁)``,        shape (A,).
    Two directions: ``loss[i, j] = L(θ + a_i d₁ + b_j d₂)``, shape (A, B) (i along the first
    direction — the x axis of the plots — and j along the second).

    Each grid point costs one evaluation of ``loss_fn`` (and of ``metrics_fn`` when given; XLA may
    share a forward pass the two have in common, but need not); no gradients. The grid is
    flattened to N = A·B points and evaluated in chunks of C = ``chunk_size`` points by ONE
    jitted chunk function, driven by a host loop (the last chunk is padded with copies of the last
    point and the padding discarded). Chunks are dispatched asynchronously; a second call with new
    values (params, batch, directions, coords) of the same shapes and the same C does not
    recompile. Must be called outside ``jax.jit`` (the loop is on the host).

    Strategies (how the C points of a chunk are laid out in the compiled function):
    ``"unroll"`` — C loss calls written out (compile time ∝ C; C = 1 is a host loop of one jitted
    loss); ``"vmap"`` — ``jax.vmap`` over the C points (C× the activation memory of one
    evaluation; convolutions with per-point kernels become batched/grouped ones); ``"map"`` —
    ``jax.lax.map`` over the C points (one at a time inside the chunk; convolutions inside
    XLA:CPU loops run ~10× slower); ``"auto"`` — ``"unroll"`` on CPU, ``"vmap"`` on GPU/TPU.
    ``chunk_size`` defaults to min(N, C₀) with C₀ = 1 (unroll), 2 (vmap), 4 (map) on CPU and 64
    (8 for unroll) on GPU/TPU.

    Measured on this project's shared 2-core CPUs (``benchmarks/bench_surface.py``, BN with
    batch statistics, batch 128, time per point ÷ one jitted loss, two noisy runs): narrow
    VGG-11 — unroll C=1 0.95–0.99, C=4 1.03–1.04; vmap C=2 0.72–0.75, C=4 0.77–0.85; vgg5
    (28×28×1, width 0.25) — unroll C=1 0.81–1.21, C=4 1.39–1.76; vmap C=2 1.54–3.06, C=4
    2.06–4.29. vmap with small chunks can win on CPU but not for every model, so ``"auto"``
    takes the robust host loop there; try ``strategy="vmap", chunk_size=2`` for wider-input
    convnets. The GPU default (vmap, 64) was not measured.

    BatchNorm: the slice is of whatever function ``loss_fn`` computes — batch statistics or
    running averages (:func:`landscape.bridge.make_loss_fn`'s ``mode``). Record the mode with the
    result (``save_surface(..., mode=...)``): the two surfaces differ greatly.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, hashable (pass the same object each call).
      params: pytree θ, the centre of the grid (coordinates 0).
      batch: pytree passed unchanged to ``loss_fn``.
      directions: tuple of 1 or 2 pytrees shaped like ``params`` (e.g. :func:`random_direction`,
        :func:`interpolation_direction`, :func:`pca_directions`).
      coords: tuple of as many 1-D arrays (A,) [(B,)], each non-empty, e.g.
        ``jnp.linspace(-1, 1, 51)``.
      strategy: ``"auto"``, ``"unroll"``, ``"vmap"`` or ``"map"`` (see above).
      chunk_size: points per compiled chunk, a positive int, or None for the default.
      metrics_fn: optional ``metrics_fn(params, batch) -> scalar`` (e.g. accuracy), hashable,
        evaluated at the same points.
      mesh: spread each chunk's points over this mesh's n devices (each evaluates C/n points on
        the whole batch, :func:`landscape.parallel.spread_points`); the default chunk is rounded
        up to a multiple of n, a given ``chunk_size`` must be one.

    Returns:
      :class:`LossSurface` ``(coords, loss, metric)``: coords cast to the params' float dtype
      (float32 → float32, float64 → float64), ``loss`` and ``metric`` (None without
      ``metrics_fn``) of shape (A,) or (A, B) in that dtype.

    Raises:
      ValueError: bad ``strategy``/``chunk_size``, 0 or more than 2 directions, directions not
        shaped like ``params``, ``coords`` not matching, or a call under a JAX transformation.

    Reference:
      Li et al. (2018), Sec. 3–4, Figs. 1–5 (2-D: 51×51 on [−1, 1]²; 1-D: 401 points on
      [−0.5, 1.5]); Goodfellow et al. (2015), Sec. 2.

    Example::

        >>> loss_fn = lambda p, b: jnp.sum(b * p["w"] ** 2)
        >>> s = loss_surface(loss_fn, {"w": jnp.zeros(2)}, jnp.array([1.0, 3.0]),
        ...                  ({"w": jnp.array([1.0, 0.0])}, {"w": jnp.array([0.0, 1.0])}),
        ...                  (jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0, 2.0])))
        >>> s.loss                          # a_i² + 3 b_j²
        Array([[ 0.,  3., 12.],
               [ 1.,  4., 13.]], dtype=float32)
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((params, batch))):
        raise ValueError("loss_surface drives its chunks from a host loop: call it outside jax.jit.")
    resolved = resolve_surface_strategy(strategy, chunk_size)
    if not isinstance(directions, (tuple, list)) or not 1 <= len(directions) <= 2:
        raise ValueError("directions must be a tuple of 1 or 2 pytrees shaped like params; got "
                         f"{type(directions).__name__} of length {len(directions) if isinstance(directions, (tuple, list)) else '?'}.")
    if not isinstance(coords, (tuple, list)) or len(coords) != len(directions):
        raise ValueError(f"coords must be a tuple of {len(directions)} 1-D arrays, one per "
                         f"direction; got {type(coords).__name__}"
                         f"{' of length ' + str(len(coords)) if isinstance(coords, (tuple, list)) else ''}.")
    directions = tuple(directions)
    for d in directions:
        _check_direction(params, d)
    dtype = _result_dtype(params)
    axes = []
    for k, c in enumerate(coords):
        c = np.asarray(c)
        if c.ndim != 1 or c.shape[0] < 1:
            raise ValueError(f"coords[{k}] must be a non-empty 1-D array; got shape {c.shape}.")
        axes.append(c.astype(np.float64))
    shape = tuple(a.shape[0] for a in axes)
    grid = np.meshgrid(*axes, indexing="ij")
    offsets = np.stack([m.reshape(-1) for m in grid], axis=1)  # (N, num_directions), C order
    num_points = offsets.shape[0]
    size = default_chunk_size(resolved, num_points) if chunk_size is None else int(chunk_size)
    if mesh is not None:  # every device gets the same number of points per chunk
        size = mesh_size(mesh) * math.ceil(size / mesh_size(mesh)) if chunk_size is None else size
        if size % mesh_size(mesh):
            raise ValueError(f"chunk_size {size} does not split over the mesh's "
                             f"{mesh_size(mesh)} devices; pass a multiple of {mesh_size(mesh)}.")
    num_chunks = math.ceil(num_points / size)
    pad = num_chunks * size - num_points
    if pad:
        offsets = np.concatenate([offsets, np.repeat(offsets[-1:], pad, axis=0)])
    # Sliced on the host: a device-side slice per chunk would compile one tiny op per start index.
    offsets = offsets.astype(np.dtype(dtype))

    losses, metrics = [], []
    for c in range(num_chunks):
        loss, metric = _chunk_jit(loss_fn, metrics_fn, resolved, mesh, params, batch, directions,
                                  offsets[c * size:(c + 1) * size])
        losses.append(loss)
        metrics.append(metric)
    loss = jnp.concatenate(losses)[:num_points].reshape(shape)
    metric = None
    if metrics_fn is not None:
        metric = jnp.concatenate(metrics)[:num_points].reshape(shape)
    return LossSurface(tuple(jnp.asarray(a, dtype) for a in axes), loss, metric)


# ----------------------------------------------------------------------------------------------
# save / load


def save_surface(path_stem: str | os.PathLike, surface: LossSurface, **meta: Any) -> list[Path]:
    """Writes ``<stem>.npz`` (arrays) and ``<stem>.json`` (metadata) for redrawing a figure.

    The ``.npz`` holds ``coords_0`` [, ``coords_1``], ``loss`` [, ``metric``] in float64 (NaN/Inf
    kept). The ``.json`` holds ``meta`` (JSON-safe; e.g. ``mode="batch_stats"``,
    ``norm="filter"``, ``ignore_1d=True``, ``model="vgg11"``, a step or seed), plus what is read
    off the surface: ``shape``, ``dims``, ``coords_ranges`` ([min, max, n] per axis),
    ``has_metric``, ``loss_min``/``loss_max`` over the finite values. Always pass ``mode`` — the
    BatchNorm mode of the loss (``"batch_stats"`` or ``"running_average"``): without it a figure
    cannot say which function it shows (stored as null when missing). Extensions are appended,
    so stems with dots are kept whole; parent folders are created.

    Args:
      path_stem: path without extension.
      surface: a :class:`LossSurface`.
      **meta: JSON-serialisable metadata (arrays become lists, non-finite floats null).

    Returns:
      The two written paths ``[<stem>.npz, <stem>.json]``.

    Example::

        save_surface("runs/vgg/surface_bn", s, mode="batch_stats", norm="filter", ignore_1d=True)
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    coords = [np.asarray(c, np.float64) for c in surface.coords]
    loss = np.asarray(surface.loss, np.float64)
    arrays = {f"coords_{k}": c for k, c in enumerate(coords)}
    arrays["loss"] = loss
    if surface.metric is not None:
        arrays["metric"] = np.asarray(surface.metric, np.float64)
    npz, js = Path(f"{stem}.npz"), Path(f"{stem}.json")
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    finite = loss[np.isfinite(loss)]
    record = {
        "meta": to_jsonable({"mode": None, **meta}, default=str),
        "shape": list(loss.shape),
        "dims": len(coords),
        "coords_ranges": [[float(c.min()), float(c.max()), int(c.size)] for c in coords],
        "has_metric": surface.metric is not None,
        "loss_min": float(finite.min()) if finite.size else None,
        "loss_max": float(finite.max()) if finite.size else None,
    }
    js.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return [npz, js]


def load_surface(path_stem: str | os.PathLike) -> tuple[LossSurface, dict[str, Any]]:
    """Reads what :func:`save_surface` wrote: ``(LossSurface of float64 NumPy arrays, record)``.

    ``record`` is the parsed ``.json`` (``record["meta"]`` holds the keyword metadata).

    Example::

        surface, record = load_surface("runs/vgg/surface_bn")
        record["meta"]["mode"]            # 'batch_stats'
    """
    stem = Path(path_stem)
    record = json.loads(Path(f"{stem}.json").read_text())
    with np.load(Path(f"{stem}.npz")) as z:
        coords = tuple(z[f"coords_{k}"] for k in range(record["dims"]))
        loss = z["loss"]
        metric = z["metric"] if "metric" in z.files else None
    return LossSurface(coords, loss, metric), record
