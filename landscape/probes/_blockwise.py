"""Blockwise Hessian spectra and their heterogeneity (Zhang et al. 2024).

Zhang, Chen, Ding, Li, Sun, Luo ("Why Transformers Need Adam: A Hessian Perspective", NeurIPS
2024) split the parameters into blocks (embedding, Q/K, V/O, MLP, norms, … of each layer),
estimate the eigenvalue density of each *diagonal block* H_bb of the Hessian by stochastic Lanczos
quadrature (SLQ), and call a network "block heterogeneous" when the blocks' densities differ: much
for transformers, little for CNNs, at initialisation. They measure the difference by the
Jensen–Shannon (JS) distance between every pair of block densities and summarise a network by the
average over the pairs, JS⁰ (their Fig. 4 and Table 1).

- :func:`named_blocks` — ``{name: mask}`` from the parameter paths: ``rule="transformer"``
  (Q/K, V/O, MLP, norm per layer, embedding, head), ``"per_layer"``, or a callable.
- :func:`blockwise_spectra` — per block, :func:`landscape.probes.spectral_density` with ``mask=``
  (the block H_bb), re-smoothed on ONE grid common to all blocks, the top Ritz values and the size.
- :func:`js_distance` / :func:`js_distance_matrix` — JS distances (base 2, in [0, 1]), their
  mean over pairs (the "block heterogeneity") and each block's SLQ noise floor.

**The loss must be deterministic.** Every Lanczos step evaluates a Hessian-vector product of the
same function; dropout, stochastic depth, data augmentation or noisy normalization inside
``loss_fn`` would make each product one of a different Hessian and the spectra meaningless. Zhang
et al.'s code (github.com/zyushun/hessian-spectrum, README) removes all randomness before the
HVPs; do the same (the models of :mod:`landscape.models` have no dropout; pass no ``rng``).

**Per block** (:func:`blockwise_spectra`): a block smaller than ``num_iters`` is solved exactly
(m_b = n_b steps). The top eigenvalues come from the same Lanczos runs (no extra products): by
Cauchy interlacing the j-th largest Ritz value of every run is ≤ λ_j(H_bb), so the best over the
runs is kept — the run r value equals ``hessian_eigs(..., mask=S_b, key=fold_in(fold_in(key, b),
r), num_iters=m_b)``. Costs Σ_b num_runs · m_b operator products (each a full-network HVP, masked),
and one compile of the Lanczos step per distinct mask.

What is theirs and what is ours: the blocks' SLQ (Rademacher starts, full reorthogonalisation,
nodes θ, weights w) is :func:`~landscape.probes.spectral_density`'s, with the Gaussian smoothing of
Ghorbani et al. (σ² = 1e-5 scaled by the spectrum's range; Zhang et al.'s code uses σ² = 1e-5).
The JS distance is the textbook one, base 2, bounded by 1. The material we could read does not
give Zhang et al.'s normalisation or logarithm base for JS⁰, so our numbers compare networks with
each other, not with their Table 1. Cost: each block compiles its own masked Lanczos step (the mask
is static), so a network with B blocks compiles B Hessian-vector products.

Example::

    blocks = probes.named_blocks(params, "transformer")
    spectra = probes.blockwise_spectra(loss_fn, params, batch, blocks, key=jax.random.key(0))
    js = probes.js_distance_matrix(spectra)
    js.heterogeneity                      # mean JS distance over the pairs of blocks
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from landscape.choices import check_int
from landscape.probes._density import _grid, _kernel_variance, _smoothed, spectral_density
from landscape.probes._operators import GaussNewton
from landscape.probes._paths import param_mask, param_paths
from landscape.probes._types import LossFn, PyTree

__all__ = ["BLOCK_RULES", "BlockwiseSpectra", "JSDistances", "blockwise_spectra", "js_distance",
           "js_distance_matrix", "named_blocks"]

#: Names :func:`named_blocks` accepts as ``rule`` (besides a callable).
BLOCK_RULES = ("transformer", "per_layer")
#: The block that collects blocks smaller than ``min_size`` in :func:`named_blocks`.
SMALL_BLOCKS = "small"


class BlockwiseSpectra(NamedTuple):
    """Result of :func:`blockwise_spectra` (B blocks, G grid points, R runs, m = num_iters, k top).

    Attributes:
      names: (B,) block names, in the order of ``blocks``.
      sizes: (B,) the blocks' parameter counts n_b (Python ints).
      grid: (G,) the grid common to all blocks.
      densities: (B, G) each block's smoothed SLQ density on ``grid`` (trapezoid integral 1).
      top_eigenvalues: (B, k) the k largest Ritz values of H_bb, largest first: for each j the best
        (largest) j-th Ritz value over the R runs, a lower bound of λ_j(H_bb); NaN where k > n_b.
      nodes: (B, R, m) Ritz values θ_rj (a block with n_b < m ran n_b steps; its row is padded
        with its largest node at weight 0).
      weights: (B, R, m) quadrature weights w_rj (each run's row sums to 1).
      variance: () σ², the kernel variance shared by all blocks.
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    grid: jax.Array
    densities: jax.Array
    top_eigenvalues: jax.Array
    nodes: jax.Array
    weights: jax.Array
    variance: jax.Array


class JSDistances(NamedTuple):
    """Result of :func:`js_distance_matrix`.

    Attributes:
      distances: (B, B) symmetric JS distances (base 2) between the blocks' densities, 0 on the
        diagonal, each in [0, 1].
      heterogeneity: () their mean over the B(B−1)/2 pairs b < c (Zhang et al.'s JS⁰); NaN when
        B < 2.
      self_distances: (B,) the SLQ noise floor: for each block, the JS distance between its density
        from the first ⌊R/2⌋ runs and from the next ⌊R/2⌋ (same grid and kernel); NaN for R < 2.
        Distances between blocks not clearly above it are not resolved by the estimate.
    """

    distances: jax.Array
    heterogeneity: jax.Array
    self_distances: jax.Array


# ----------------------------------------------------------------------------------------------
# blocks by name


def _layer_name(path: str) -> str:
    """``"blocks/3/…"`` → ``"layer3"``, ``"stages/1/…"`` → ``"stages1"``, ``"head/…"`` → ``"head"``.
    """
    parts = path.split("/")
    if len(parts) > 1 and parts[1].isdigit():
        return ("layer" if parts[0] == "blocks" else parts[0]) + parts[1]
    return parts[0]


_TRANSFORMER_KINDS = ("qk", "vo", "mlp", "norm")
_ATTENTION_KIND = {"wq": "qk", "wk": "qk", "bq": "qk", "bk": "qk", "wv": "vo", "wo": "vo",
                   "bv": "vo", "bo": "vo", "q_norm": "norm", "k_norm": "norm"}
_TOP_LEVEL = {"embed": "embedding", "pos": "embedding", "head": "head", "final_norm": "final_norm"}


def _transformer_name(path: str) -> str:
    """The block of a :class:`landscape.models.TransformerLM` parameter (:func:`named_blocks`)."""
    parts = path.split("/")
    if parts[0] in _TOP_LEVEL:
        return _TOP_LEVEL[parts[0]]
    if parts[0] == "blocks" and len(parts) > 3 and parts[1].isdigit():
        module, leaf = parts[2], parts[3]
        kind = (_ATTENTION_KIND.get(leaf) if module == "attn" else "mlp"
                if module.startswith("mlp") else "norm" if module.startswith("norm") else None)
        if kind is not None:
            return f"layer{parts[1]}/{kind}"
    raise ValueError(f"rule='transformer' does not know the parameter {path!r} (it names the "
                     "leaves of landscape.models.TransformerLM); pass rule='per_layer' or a "
                     "callable")


def _transformer_order(name: str) -> tuple:
    """Sort key: embedding, then each layer's qk, vo, mlp, norm, then final_norm, head, the rest."""
    if name == "embedding":
        return (0,)
    layer, _, kind = name.partition("/")
    if layer.startswith("layer") and layer[5:].isdigit() and kind in _TRANSFORMER_KINDS:
        return (1, int(layer[5:]), _TRANSFORMER_KINDS.index(kind))
    return (2, ("final_norm", "head").index(name) if name in ("final_norm", "head") else 2)


def named_blocks(params: PyTree, rule: str | Callable[[str], str | None] = "transformer", *,
                 min_size: int = 2) -> dict[str, PyTree]:
    """Group the leaves of ``params`` into named blocks: ``{name: mask}``, masks as in ``mask=``.

    Rules (``path`` is the leaf's ``"/"``-joined path, :func:`landscape.probes.param_paths`):

    - ``"transformer"`` (Zhang et al.'s blocks for :class:`landscape.models.TransformerLM`):
      ``layerI/qk`` (wq, wk, bq, bk), ``layerI/vo`` (wv, wo, bv, bo), ``layerI/mlp`` (both
      projections, kernels and biases), ``layerI/norm`` (norm1, norm2 and the QK-norms' γ, β, α),
      ``embedding`` (token table and learned positions), ``final_norm``, ``head``. An unknown
      parameter is a ValueError naming it.
    - ``"per_layer"``: one block per layer, ``blocks/I/…`` → ``layerI`` (another ``name/I/…`` →
      ``nameI``), anything else by its first path component (``head``, ``embed``, ``stem``).
    - a callable ``rule(path) -> name``, or ``None`` to leave the leaf out.

    Order: ``"transformer"`` lists ``embedding``, then each layer's qk, vo, mlp, norm, then
    ``final_norm``, ``head``; the other rules keep the order of each block's first leaf.

    Small blocks: a block with no parameter (zero-size leaves only) is dropped; blocks with fewer
    than ``min_size`` parameters are merged into one block ``"small"`` (a single eigenvalue is a
    delta whose distance to any spread density is ≈ 1, which says nothing about heterogeneity),
    itself dropped — its leaves then in no block — when it still has fewer than ``min_size``.

    Reference:
      Zhang et al. (2024), Fig. 3–4 (the parameter blocks of BERT, GPT-2, ViT, VGG16, ResNet18).

    Example:
        >>> p = {"blocks": {0: {"w": jnp.ones(3)}, 1: {"w": jnp.ones(3)}}, "head": jnp.ones(2)}
        >>> {k: jax.tree.leaves(m) for k, m in named_blocks(p, "per_layer").items()}
        {'layer0': [True, False, False], 'layer1': [False, True, False],
         'head': [False, False, True]}
    """
    if callable(rule):
        namer = rule
    elif rule in BLOCK_RULES:
        namer = _transformer_name if rule == "transformer" else _layer_name
    else:
        raise ValueError(f"rule must be one of {BLOCK_RULES} or a callable; got {rule!r}.")
    min_size = int(min_size)
    sizes: dict[str, int] = {}
    owner: dict[str, str | None] = {}
    for path, leaf in zip(param_paths(params), jax.tree.leaves(params)):
        owner[path] = name = namer(path)
        if name is not None:
            sizes[str(name)] = sizes.get(str(name), 0) + math.prod(jnp.shape(leaf))
    group = {n: None if s == 0 else n if s >= min_size else SMALL_BLOCKS for n, s in sizes.items()}
    totals: dict[str, int] = {}
    for n, g in group.items():
        if g is not None:
            totals[g] = totals.get(g, 0) + sizes[n]
    kept = [g for g, total in totals.items() if total >= min_size or g != SMALL_BLOCKS]
    if rule == "transformer":
        kept.sort(key=_transformer_order)
    final = {path: group.get(None if n is None else str(n)) for path, n in owner.items()}
    return {g: param_mask(params, lambda p, g=g: final[p] == g) for g in kept}


# ----------------------------------------------------------------------------------------------
# spectra


def _block_size(params: PyTree, mask: PyTree, name: str) -> int:
    """n_b, the number of parameters the mask selects."""
    leaves = jax.tree.leaves(params)
    try:
        flags = jax.tree.structure(params).flatten_up_to(mask)
    except (ValueError, TypeError) as err:
        raise ValueError(f"the mask of block {name!r} must have the structure of params: {err}"
                         ) from None
    return sum(math.prod(jnp.shape(x)) for x, m in zip(leaves, flags) if m)


def _top_ritz(nodes: jax.Array, k: int) -> jax.Array:
    """(k,) the best j-th largest Ritz value over the runs (NaN beyond the block's m nodes)."""
    descending = -jnp.sort(-nodes, axis=1)[:, :k]  # (R, min(k, m))
    best = jnp.max(descending, axis=0)
    return jnp.pad(best, (0, k - best.shape[0]), constant_values=jnp.nan)


def _pad_runs(nodes: jax.Array, weights: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    extra = ((0, 0), (0, m - nodes.shape[1]))
    return jnp.pad(nodes, extra, mode="edge"), jnp.pad(weights, extra)


def _check_blocks(blocks: Mapping[str, PyTree], num_iters: int, top_k: int) -> tuple[int, int]:
    num_iters = check_int("num_iters", num_iters)
    top_k = check_int("top_k", top_k)
    if top_k > num_iters:
        raise ValueError(f"top_k ({top_k}) must not exceed num_iters ({num_iters}).")
    if not isinstance(blocks, Mapping) or not blocks:
        raise ValueError("blocks must be a non-empty mapping {name: mask}; see named_blocks.")
    return num_iters, top_k


def _block_runs(loss_fn, params, batch, blocks, names, sizes, *, key, num_iters, num_runs,
                sigma2, strategy, curvature) -> list[tuple[jax.Array, jax.Array]]:
    """Per block b, the (nodes, weights) of its SLQ runs (m_b = min(num_iters, n_b) steps)."""
    runs = []
    for b, mask in enumerate(blocks.values()):
        m = min(num_iters, sizes[b])
        if m < 1:
            raise ValueError(f"block {names[b]!r} selects no parameter.")
        d = spectral_density(loss_fn, params, batch, key=jax.random.fold_in(key, b), num_iters=m,
                             num_runs=num_runs, grid_size=2, sigma2=sigma2, strategy=strategy,
                             curvature=curvature, mask=mask)
        runs.append((d.nodes, d.weights))
    return runs


def blockwise_spectra(loss_fn: LossFn, params: PyTree, batch: PyTree,
                      blocks: Mapping[str, PyTree], *, key: jax.Array, num_iters: int = 30,
                      num_runs: int = 2, top_k: int = 1, grid: jax.Array | None = None,
                      grid_size: int = 2000, sigma2: float = 1e-5, strategy: str = "auto",
                      curvature: str | GaussNewton = "hessian") -> BlockwiseSpectra:
    """SLQ eigenvalue densities of the diagonal Hessian blocks H_bb, on one common grid.

    Block b (mask S_b, n_b parameters) runs :func:`landscape.probes.spectral_density` with
    ``mask=S_b`` (key ``fold_in(key, b)``, m_b = min(num_iters, n_b) Lanczos steps), giving nodes
    θ_rj and weights w_rj; all blocks are smoothed with ONE kernel on ONE grid:

        φ_b(t) = (1/R) Σ_r Σ_j w_rj N(t; θ_rj, σ²),   σ² = sigma2 · max(1, θ_max − θ_min),

    θ_max/θ_min over all blocks' nodes, the grid ``grid_size`` points from θ_min − 5σ to
    θ_max + 5σ (or ``grid``), each φ_b of trapezoid integral 1. Top eigenvalues, cost and the
    deterministic ``loss_fn`` this needs: the module docstring.

    Args:
      loss_fn, params, batch, strategy, curvature: as in :func:`landscape.probes.spectral_density`.
      blocks: ``{name: mask}`` (masks of Python bools like ``params``, e.g. :func:`named_blocks`),
        at least one, each selecting at least one parameter.
      key: PRNG key.
      num_iters: m, Lanczos steps per run (Zhang et al. use 100).
      num_runs: R, random start vectors per block (Zhang et al. use 10).
      top_k: k, Ritz values reported per block (1 ≤ k ≤ num_iters).
      grid: optional (G,) increasing grid to use instead of the automatic one.
      grid_size: G of the automatic grid (≥ 2).
      sigma2: the relative kernel variance (> 0).

    Returns:
      :class:`BlockwiseSpectra`.

    Reference:
      Zhang et al. (2024), "Why Transformers Need Adam: A Hessian Perspective", NeurIPS, Fig. 3
      (blockwise spectra by SLQ at initialisation); Ghorbani, Krishnan, Xiao (2019), Sec. 2.2 (SLQ
      and the smoothing); Golub & Van Loan (4th ed.), Sec. 10.1 (interlacing of Ritz values).

    Example::

        >>> loss_fn = lambda p, b: 0.5 * (jnp.sum(b * p["a"] ** 2) + jnp.sum(p["b"] ** 2))
        >>> params = {"a": jnp.ones(3), "b": jnp.ones(2)}
        >>> blocks = {"a": {"a": True, "b": False}, "b": {"a": False, "b": True}}
        >>> s = blockwise_spectra(loss_fn, params, jnp.array([1.0, 2.0, 5.0]), blocks,
        ...                       key=jax.random.key(0), num_iters=3)
        >>> s.top_eigenvalues[:, 0].round(4).tolist(), s.sizes
        ([5.0, 1.0], (3, 2))
    """
    num_iters, top_k = _check_blocks(blocks, num_iters, top_k)
    names = tuple(str(n) for n in blocks)
    sizes = tuple(_block_size(params, mask, name) for name, mask in zip(names, blocks.values()))
    runs = _block_runs(loss_fn, params, batch, blocks, names, sizes, key=key, num_iters=num_iters,
                       num_runs=num_runs, sigma2=sigma2, strategy=strategy, curvature=curvature)
    top = jnp.stack([_top_ritz(nodes, top_k) for nodes, _ in runs])
    nodes, weights = (jnp.stack(x) for x in zip(*(_pad_runs(*r, num_iters) for r in runs)))
    lo, hi, variance = _kernel_variance(sigma2, nodes)
    if grid is None:
        grid = _grid(lo, hi, variance, check_int("grid_size", grid_size), nodes.dtype)
    grid = jnp.asarray(grid, nodes.dtype)
    densities = jax.lax.map(lambda nw: _smoothed(grid, variance, *nw), (nodes, weights))
    return BlockwiseSpectra(names, sizes, grid, densities, top, nodes, weights, variance)


# ----------------------------------------------------------------------------------------------
# Jensen–Shannon


def js_distance(grid: jax.Array, p: jax.Array, q: jax.Array) -> jax.Array:
    """Jensen–Shannon distance (base 2) between two densities on ``grid``: a number in [0, 1].

    With p, q first normalised to trapezoid integral 1 on ``grid`` and M = (p + q)/2:

        JSD(p, q) = ½ ∫ p log₂(p/M) dt + ½ ∫ q log₂(q/M) dt,   d_JS = √JSD,

    integrals by the trapezoid rule (0·log 0 = 0). The integrand ½[p log₂(p/M) + q log₂(q/M)]
    lies in [0, M] at every point, so the discretised JSD lies in [0, 1] exactly: 0 for p = q,
    1 for densities with disjoint supports. d_JS is a metric (Endres & Schindelin 2003). In nats
    (natural log) JSD would be at most ln 2 and d_JS at most √ln 2 ≈ 0.833.

    Reference:
      Lin (1991), "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory;
      Endres & Schindelin (2003), "A new metric for probability distributions".

    Example:
        >>> t = jnp.linspace(0.0, 1.0, 101)
        >>> float(js_distance(t, jnp.ones(101), jnp.ones(101)))
        0.0
        >>> round(float(js_distance(t, (t < 0.5) * 1.0, (t > 0.5) * 1.0)), 6)
        1.0
    """
    p = p / jnp.trapezoid(p, grid)
    q = q / jnp.trapezoid(q, grid)

    def part(x, other):
        # x log₂(x/M) with x/M = 2x/(x + other), exactly 1 where x = other. XLA:CPU flushes
        # subnormals to 0 and log₂ 0 = −∞, so x below the smallest normal t counts as 0 and x/M is
        # floored at t: the terms changed are below ≈ 1100 · t · max(p, q) in size.
        tiny = jnp.finfo(x.dtype).tiny
        kept = x > tiny
        ratio = 2 * x / jnp.where(kept, x + other, 1.0)
        return jnp.where(kept, x * jnp.log2(jnp.maximum(ratio, tiny)), 0.0)

    divergence = jnp.trapezoid(0.5 * (part(p, q) + part(q, p)), grid)
    return jnp.sqrt(jnp.clip(divergence, 0.0, 1.0))


def _pairwise(grid, left, right):
    """(B, B') JS distances between the rows of ``left`` (B, G) and ``right`` (B', G)."""
    return jax.lax.map(lambda p: jax.vmap(lambda q: js_distance(grid, p, q))(right), left)


@jax.jit
def _js_matrix(grid, densities, nodes, weights, variance):
    distances = _pairwise(grid, densities, densities)
    num, runs = densities.shape[0], nodes.shape[1]
    nan = jnp.full((), jnp.nan, distances.dtype)
    heterogeneity = jnp.mean(distances[np.triu_indices(num, 1)]) if num > 1 else nan
    half = runs // 2
    if half == 0:
        return JSDistances(distances, heterogeneity, jnp.full((num,), nan))

    def smooth(part):
        return jax.lax.map(lambda nw: _smoothed(grid, variance, *nw), part)

    first = smooth((nodes[:, :half], weights[:, :half]))
    second = smooth((nodes[:, half:2 * half], weights[:, half:2 * half]))
    self_distances = jax.vmap(lambda p, q: js_distance(grid, p, q))(first, second)
    return JSDistances(distances, heterogeneity, self_distances)


def js_distance_matrix(spectra: BlockwiseSpectra) -> JSDistances:
    """JS distances between every pair of block densities and their mean, the block heterogeneity.

        D_bc = d_JS(φ_b, φ_c)  (:func:`js_distance`, base 2, on the common grid),
        heterogeneity = (2 / (B(B−1))) Σ_{b<c} D_bc,

    Zhang et al.'s JS⁰: "the average JS distance between all pairs of blockwise Hessian spectra at
    initialisation" — large for transformers, small for CNNs, and larger JS⁰ goes with a larger gap
    between SGD and Adam (their Table 1). Also each block's SLQ noise floor (``self_distances``:
    two independent halves of its runs compared), from the stored nodes, no operator products.

    Resolution: the densities are sums of Gaussians of width σ at the Ritz values; with the default
    σ² = 1e-5·range they are spiky, and two SLQ estimates of the SAME block can be far apart
    (measured on the quick transformer's V/O block, 1 run vs 1 run of 20 steps: 0.41; on a vgg5
    layer: 0.03). Blocks whose spectra both lie within σ of the same point are not told apart.
    A wider kernel (``sigma2`` of :func:`blockwise_spectra`) lowers the floor and the distances.

    Args:
      spectra: :class:`BlockwiseSpectra` (``grid``, ``densities``, ``nodes``, ``weights`` and
        ``variance`` are read).

    Returns:
      :class:`JSDistances` ``(distances (B, B), heterogeneity (), self_distances (B,))``.

    Reference:
      Zhang et al. (2024), Fig. 4 (the JS-distance heatmaps) and Table 1 (JS⁰).

    Example::

        js = js_distance_matrix(blockwise_spectra(loss_fn, params, batch, blocks, key=key))
        js.distances[0, 1], js.heterogeneity, js.self_distances
    """
    return _js_matrix(*(jnp.asarray(x) for x in (spectra.grid, spectra.densities, spectra.nodes,
                                                  spectra.weights, spectra.variance)))
