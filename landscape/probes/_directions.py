"""Directions in parameter space for loss surfaces: random, curvature, interpolation, PCA.

The directions of Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
Nets" (NeurIPS 2018) and Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural network
optimization problems" (ICLR 2015), each a pytree like ``params`` for
:func:`landscape.probes.loss_surface`:

- :func:`random_direction` — a Gaussian direction, filter-normalized (Li et al. Sec. 4), with
  :func:`default_filter_axes` saying which axes index the filters of each leaf;
- :func:`curvature_directions` — the top (or bottom) Hessian eigenvectors;
- :func:`interpolation_direction` — d = θ₁ − θ₀, so θ(α) = θ₀ + α d (Goodfellow et al.);
- :func:`pca_directions` — the top principal directions of a training trajectory (Li et al. Sec. 7).

**Filters.** A *filter* f of a leaf is one index into its filter axes (one output channel / unit);
θ_{l,f} is the slice at that index, and its norm runs over all the OTHER axes. By default
(:func:`default_filter_axes`):

- Flax conv kernel (H, W, C_in, C_out): axis 3 (C_out); norm over H × W × C_in.
- Flax dense kernel (in, out): axis 1 (out); norm over in.
- attention query/key/value kernel (in, heads, head_dim) — a 3-D leaf under a module named
  ``query``/``key``/``value`` (Flax ``nnx.MultiHeadAttention``) or ``q_proj``/``k_proj``/
  ``v_proj``: axes (1, 2), one filter per (head, dim) pair; norm over in.
- attention output kernel (heads, head_dim, out) (``out``): axis 2; norm over heads × head_dim.
- embedding table (vocab, d) — a 2-D non-``kernel`` leaf with a path component containing
  ``"embed"`` (``nnx.Embed``'s ``embedding``): axis 0, one filter per token row; norm over d.
- Equinox weights are (out, in), output units on axis 0, which the default rule cannot tell from
  a Flax (in, out) kernel: pass ``filter_axes=0`` (every ≥2-D leaf) or a callable. (PyTorch also
  stores output filters on axis 0; Li et al.'s code iterates over that one.)

A zero filter of θ gives a zero filter of d. Leaves with ndim ≤ 1 (biases, BatchNorm
scale/offset, scalars) have no filters and ignore ``filter_axes``: they are set to zero when
``ignore_1d`` (Li et al.'s ``--xignore biasbn``) or copied from θ otherwise (their default
``d.copy_(w)``), whatever ``norm`` is. Non-floating leaves get zeros.

**One draw.** The entries of all drawn leaves come from ONE ``jax.random.normal(key, (total,))``
call (in the widest float dtype of those leaves, at least float32), split in leaf order: one PRNG
instance compiles in well under a second, one per leaf took ~0.6 s each on CPU. So a leaf's
entries depend on the key and on the sizes of the kernels before it, not on ``filter_axes``.
:func:`random_direction` is jitted internally, compiled once per parameter structure,
``norm``/``ignore_1d`` and resolved per-leaf axes (a callable ``filter_axes`` is called on the
host, outside the jit).

**PCA.** :func:`pca_directions` works in float64 NumPy without ever forming the (T, P) matrix M of
θ_t − θ_final: the T × T Gram matrix M Mᵀ is summed leaf by leaf, its eigenvectors give U and S,
and each leaf of v_k is u_kᵀ M_leaf / s_k. Memory is one leaf × T at a time; T (the number of
checkpoints) should be small (tens to hundreds). ``center=True`` subtracts the mean over
checkpoints of θ_t − θ_final first (what Li et al.'s code does through
``sklearn.decomposition.PCA``); the coordinates are still those of θ_t − θ_final. The default (no
centring) keeps θ_final at the origin of the principal plane. Sign convention: each direction is
flipped so that its largest-magnitude entry is positive.

Example::

    key1, key2 = jax.random.split(jax.random.key(0))
    d1 = probes.random_direction(key1, params)           # filter-normalized, biases/BN zeroed
    d2 = probes.random_direction(key2, params)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape.choices import check_int
from landscape.probes._checks import _check_direction
from landscape.probes._lanczos import hessian_eigs
from landscape.probes._paths import param_paths
from landscape.probes._precision import _is_float
from landscape.probes._types import LossFn, PyTree

__all__ = [
    "DIRECTION_NORMS",
    "PCADirections",
    "curvature_directions",
    "default_filter_axes",
    "interpolation_direction",
    "pca_directions",
    "random_direction",
]


#: Accepted values of ``norm`` in :func:`random_direction` (``None`` means ``"none"``).
DIRECTION_NORMS = ("filter", "layer", "none")

#: Relative guard against dividing by a zero filter of the direction (Li et al. use 1e-10).
_EPS = 1e-10


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
# random, filter-normalized


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


def _check_norm(norm: str | None) -> str:
    if norm is None:
        norm = "none"
    if norm not in DIRECTION_NORMS:
        raise ValueError(
            f"norm must be one of {', '.join(repr(n) for n in DIRECTION_NORMS)} or None; "
            f"got {norm!r}."
        )
    return norm


def _draw(key: jax.Array, leaves: list) -> jax.Array:
    """The flat N(0, 1) entries of every drawn (≥2-D floating) leaf, in leaf order."""
    drawn = [leaf for leaf in leaves if _is_drawn(leaf)]
    total = sum(int(np.size(leaf)) for leaf in drawn)
    dtype = jnp.result_type(*[_draw_dtype(leaf) for leaf in drawn]) if drawn else jnp.float32
    return _standard_normal(key, total, jnp.dtype(dtype)) if total else jnp.zeros((0,), dtype)


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

    with the filters f of each leaf given by ``filter_axes``; leaves with ndim ≤ 1 are zeroed or
    copied (``ignore_1d``). Filters by layout and the one PRNG draw: the module docstring.

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
      Li et al. (2018), Sec. 4 ("Filter-wise normalization"); their
      ``net_plotter.normalize_directions_for_weights``.

    Example::

        >>> d = random_direction(jax.random.key(0), {"w": jnp.ones((3, 3, 2, 4)), "b": jnp.ones(4)})
        >>> jnp.linalg.norm(d["w"][..., 0]), d["b"]          # ‖θ_{w,0}‖ = sqrt(18)
        (Array(4.2426..., dtype=float32), Array([0., 0., 0., 0.], dtype=float32))
        >>> d = random_direction(jax.random.key(0), {"w": jnp.ones((4, 9))}, filter_axes=0)
        >>> jnp.linalg.norm(d["w"], axis=1).round(4)         # (out, in): ‖θ_{w,f}‖ = sqrt(9)
        Array([3., 3., 3., 3.], dtype=float32)
    """
    norm = _check_norm(norm)
    leaves = jax.tree.leaves(params)
    norm_axes = tuple(_norm_axes(path, leaf, filter_axes) if _is_drawn(leaf) else None
                      for path, leaf in zip(param_paths(params), leaves))
    if norm != "filter":   # the axes are unused: one compiled program whatever filter_axes is
        norm_axes = (None,) * len(leaves)
    return _normalize_direction(_draw(key, leaves), params, norm=norm, ignore_1d=bool(ignore_1d),
                                norm_axes=norm_axes)


# ----------------------------------------------------------------------------------------------
# curvature, interpolation, PCA


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


def _trajectory_rows(per_leaf, final_leaves, center: bool):
    """Per leaf, the (T, size) block of M (rows θ_t − θ_final), and the blocks the SVD sees
    (column-centred with ``center``)."""
    deltas = [np.stack([p.reshape(-1) for p in points]) - np.asarray(f, np.float64).reshape(1, -1)
              for points, f in zip(per_leaf, final_leaves)]
    rows = [b - b.mean(axis=0, keepdims=True) for b in deltas] if center else deltas
    return deltas, rows


def _gram_eigen(rows, num_points: int, num: int):
    """``(s², U, Σ s²)`` from the T × T Gram matrix Σ_leaf M_leaf M_leafᵀ, largest first."""
    gram = np.zeros((num_points, num_points), np.float64)
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
    return evals, evecs, total


def _principal_leaves(rows, evals, evecs, num: int) -> list[list[np.ndarray]]:
    """Per direction k, the flat leaves of v_k = u_kᵀ M / s_k, signed (largest entry positive)."""
    sing = np.sqrt(evals[:num])
    out = []
    for k in range(num):
        leaves = [evecs[:, k] @ b / sing[k] for b in rows]
        flat = np.concatenate(leaves) if leaves else np.zeros(0)
        if flat.size and flat[np.argmax(np.abs(flat))] < 0:
            leaves = [-x for x in leaves]
        out.append(leaves)
    return out


def pca_directions(trajectory: Sequence[PyTree] | PyTree, final: PyTree, *, num: int = 2,
                   center: bool = False) -> PCADirections:
    """The top ``num`` principal directions of a training trajectory around its end point.

    With M the (T, P) matrix whose rows are θ_t − θ_final (flattened over all leaves) and its
    singular value decomposition M = U S Vᵀ, the directions are the first ``num`` rows of Vᵀ
    (unit norm, orthogonal), ``explained_variance_ratio_k = s_k² / Σ_j s_j²`` and
    ``projected[t] = argmin_c ‖(θ_t − θ_final) − Σ_k c_k v_k‖ = (⟨θ_t − θ_final, v_k⟩)_k`` (the
    least-squares coordinates, dot products since the v_k are orthonormal). Float64 NumPy, M never
    formed; centring and signs: the module docstring.

    Args:
      trajectory: T checkpoints: a list of pytrees like ``final``, or one pytree like ``final``
        with a leading axis of length T on every leaf. May include θ_final itself.
      final: pytree θ_final (the trained weights; the surface is drawn around it).
      num: number of directions, 1 ≤ num ≤ T (2 for a contour plot).
      center: centre the rows before the SVD.

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
    num = check_int("num", num)
    per_leaf = _stack_trajectory(trajectory, final)
    final_leaves, treedef = jax.tree.flatten(final)
    num_points = len(per_leaf[0]) if per_leaf else 0
    if num > num_points:
        raise ValueError(f"num must be at most the number of checkpoints T={num_points}; got {num}.")
    deltas, rows = _trajectory_rows(per_leaf, final_leaves, center)
    evals, evecs, total = _gram_eigen(rows, num_points, num)
    directions, projected = [], np.zeros((num_points, num), np.float64)
    for k, leaves in enumerate(_principal_leaves(rows, evals, evecs, num)):
        for v, b in zip(leaves, deltas):
            projected[:, k] += b @ v
        directions.append(jax.tree.unflatten(treedef, [
            jnp.asarray(v.reshape(np.shape(f)), dtype=jnp.result_type(f))
            for v, f in zip(leaves, final_leaves)]))
    return PCADirections(tuple(directions), evals[:num] / total, projected)
