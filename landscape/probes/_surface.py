"""Loss surfaces: 1-D and 2-D slices of the loss along chosen directions in parameter space.

The measurements behind Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of
Neural Nets" (NeurIPS 2018) and Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural
network optimization problems" (ICLR 2015):

- :func:`loss_surface` — L(θ + a_i d₁ + b_j d₂) on a grid, evaluated in jitted chunks, along
  directions from :mod:`landscape.probes._directions` (random filter-normalized, curvature,
  interpolation, PCA);
- :func:`save_surface` / :func:`load_surface` — ``.npz`` + ``.json`` so figures can be redrawn
  (:mod:`landscape.figures`) without recomputing.

Every function takes the toolkit's one loss signature ``loss_fn(params, batch) -> scalar``; no Flax.

**Chunks.** The grid is flattened to N = A·B points and evaluated in chunks of C = ``chunk_size``
points by ONE jitted chunk function, driven by a host loop (the last chunk is padded with copies
of the last point and the padding discarded). Chunks are dispatched asynchronously; a second call
with new values (params, batch, directions, coords) of the same shapes and the same C does not
recompile. Each grid point costs one evaluation of ``loss_fn`` (and of ``metrics_fn`` when given;
XLA may share a forward pass the two have in common, but need not); no gradients.

**Strategies** (how the C points of a chunk are laid out in the compiled function):
``"unroll"`` — C loss calls written out (compile time ∝ C; C = 1 is a host loop of one jitted
loss); ``"vmap"`` — ``jax.vmap`` over the C points (C× the activation memory of one evaluation;
convolutions with per-point kernels become batched/grouped ones); ``"map"`` — ``jax.lax.map`` over
the C points (one at a time inside the chunk; convolutions inside XLA:CPU loops run ~10× slower);
``"auto"`` — ``"unroll"`` on CPU, ``"vmap"`` on GPU/TPU. ``chunk_size`` defaults to min(N, C₀)
with C₀ = 1 (unroll), 2 (vmap), 4 (map) on CPU and 64 (8 for unroll) on GPU/TPU. vmap with small
chunks can win on CPU but not for every model (the measurements below), so ``"auto"`` takes the
robust host loop there; try ``strategy="vmap", chunk_size=2`` for wider-input convnets.

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

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from landscape.parallel import mesh_size, spread_points
from landscape.probes._checks import _check_direction, _is_traced
from landscape.probes._precision import _is_float, _result_dtype
from landscape.probes._strategy import (_SURFACE_STRATEGIES, _check_chunk_size, _check_strategy,
                                        _compiled, map_with_strategy)
from landscape.probes._types import LossFn, PyTree
from landscape.records import to_jsonable

__all__ = [
    "LossSurface",
    "default_chunk_size",
    "load_surface",
    "loss_surface",
    "resolve_surface_strategy",
    "save_surface",
]


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


# ----------------------------------------------------------------------------------------------
# grid evaluation


def resolve_surface_strategy(strategy: str, chunk_size: int | None = None) -> str:
    """Validates ``strategy``/``chunk_size`` of :func:`loss_surface`; maps ``"auto"`` by backend.

    ``"auto"`` → ``"unroll"`` on CPU (with 1 point per chunk by default: a host loop of one jitted
    loss; see the module docstring) and ``"vmap"`` on GPU/TPU. Unlike
    :func:`landscape.probes.step_probe`, a chunk size is accepted by every strategy: here it is
    the number of grid points per compiled chunk.
    """
    _check_strategy(strategy, _SURFACE_STRATEGIES)
    _check_chunk_size(chunk_size)
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
_chunk_jit = _compiled(_chunk_impl, 4)


def _check_directions(params: PyTree, directions, coords) -> tuple[PyTree, ...]:
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
    return directions


def _check_coords(coords) -> list[np.ndarray]:
    axes = []
    for k, c in enumerate(coords):
        c = np.asarray(c)
        if c.ndim != 1 or c.shape[0] < 1:
            raise ValueError(f"coords[{k}] must be a non-empty 1-D array; got shape {c.shape}.")
        axes.append(c.astype(np.float64))
    return axes


def _points_per_chunk(strategy: str, chunk_size: int | None, num_points: int,
                      mesh: Mesh | None) -> int:
    """C: the default (rounded up to a multiple of the mesh's devices) or the given one."""
    size = default_chunk_size(strategy, num_points) if chunk_size is None else int(chunk_size)
    if mesh is not None:  # every device gets the same number of points per chunk
        size = mesh_size(mesh) * math.ceil(size / mesh_size(mesh)) if chunk_size is None else size
        if size % mesh_size(mesh):
            raise ValueError(f"chunk_size {size} does not split over the mesh's "
                             f"{mesh_size(mesh)} devices; pass a multiple of {mesh_size(mesh)}.")
    return size


def _grid_offsets(axes: list[np.ndarray], size: int, dtype) -> np.ndarray:
    """(⌈N/C⌉·C, num_directions) grid offsets in C order, padded with copies of the last one."""
    grid = np.meshgrid(*axes, indexing="ij")
    offsets = np.stack([m.reshape(-1) for m in grid], axis=1)  # (N, num_directions), C order
    num_points = offsets.shape[0]
    pad = math.ceil(num_points / size) * size - num_points
    if pad:
        offsets = np.concatenate([offsets, np.repeat(offsets[-1:], pad, axis=0)])
    # Sliced on the host: a device-side slice per chunk would compile one tiny op per start index.
    return offsets.astype(np.dtype(dtype))


def _evaluate_chunks(loss_fn: LossFn, metrics_fn: LossFn | None, strategy: str,
                     mesh: Mesh | None, params: PyTree, batch: PyTree,
                     directions: tuple[PyTree, ...], offsets: np.ndarray, size: int,
                     shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array | None]:
    """The host loop: one compiled chunk per C offsets; the padding dropped, reshaped to ``shape``."""
    num_points = math.prod(shape)
    losses, metrics = [], []
    for c in range(offsets.shape[0] // size):
        loss, metric = _chunk_jit(loss_fn, metrics_fn, strategy, mesh, params, batch, directions,
                                  offsets[c * size:(c + 1) * size])
        losses.append(loss)
        metrics.append(metric)
    loss = jnp.concatenate(losses)[:num_points].reshape(shape)
    metric = None
    if metrics_fn is not None:
        metric = jnp.concatenate(metrics)[:num_points].reshape(shape)
    return loss, metric


def loss_surface(loss_fn: LossFn, params: PyTree, batch: PyTree,
                 directions: Sequence[PyTree], coords: Sequence[jax.Array], *,
                 strategy: str = "auto", chunk_size: int | None = None,
                 metrics_fn: LossFn | None = None, mesh: Mesh | None = None) -> LossSurface:
    """The loss on a 1-D or 2-D grid through θ: L(θ + a_i d₁ [+ b_j d₂]).

    One direction:  ``loss[i]    = L(θ + a_i d₁)``,        shape (A,).
    Two directions: ``loss[i, j] = L(θ + a_i d₁ + b_j d₂)``, shape (A, B) (i along the first
    direction — the x axis of the plots — and j along the second). Evaluated in jitted chunks
    from a host loop, so it must be called outside ``jax.jit`` (chunks, strategies, BatchNorm
    mode: the module docstring).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, hashable (pass the same object each call).
      params: pytree θ, the centre of the grid (coordinates 0).
      batch: pytree passed unchanged to ``loss_fn``.
      directions: tuple of 1 or 2 pytrees shaped like ``params`` (e.g. :func:`random_direction`).
      coords: tuple of as many non-empty 1-D arrays (A,) [(B,)], e.g. ``jnp.linspace(-1, 1, 51)``.
      strategy: ``"auto"``, ``"unroll"``, ``"vmap"`` or ``"map"``.
      chunk_size: points per compiled chunk, a positive int, or None for the default.
      metrics_fn: optional hashable ``metrics_fn(params, batch) -> scalar`` (e.g. accuracy),
        evaluated at the same points.
      mesh: spread each chunk's points over this mesh's n devices (C/n each, on the whole batch);
        the default chunk is rounded up to a multiple of n, a given ``chunk_size`` must be one.

    Returns:
      :class:`LossSurface` ``(coords, loss, metric)`` in the params' float dtype (``metric`` None
      without ``metrics_fn``), ``loss`` and ``metric`` of shape (A,) or (A, B).

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
    if _is_traced(params, batch):
        raise ValueError("loss_surface drives its chunks from a host loop: call it outside jax.jit.")
    resolved = resolve_surface_strategy(strategy, chunk_size)
    directions = _check_directions(params, directions, coords)
    dtype = _result_dtype(params)
    axes = _check_coords(coords)
    shape = tuple(a.shape[0] for a in axes)
    size = _points_per_chunk(resolved, chunk_size, math.prod(shape), mesh)
    loss, metric = _evaluate_chunks(loss_fn, metrics_fn, resolved, mesh, params, batch, directions,
                                    _grid_offsets(axes, size, dtype), size, shape)
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
