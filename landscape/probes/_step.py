"""Loss-landscape probes along a direction: loss variation, gradient predictiveness, effective β.

These are the measurements behind Figure 4 of Santurkar et al., "How Does Batch Normalization Help
Optimization?" (NeurIPS 2018, Sec. 3.2 and App. A.2.2). At parameters θ with gradient
g = ∇L(θ) on a minibatch, the probe looks at the points θ − η·d for a range of step sizes η
(by default d = g) and records

- loss variation          L(θ − η d)                                  (Fig. 4a, a band over η),
- gradient predictiveness ‖∇L(θ − η d) − g‖₂                          (Fig. 4b, a band over η),
- effective β-smoothness  max_η ‖∇L(θ − η d) − g‖₂ / ‖η d‖₂           (Fig. 4c, one number).

The best-known public notebook reproducing Fig. 4c forgets to divide by the distance ‖η d‖₂
(it plots max_η ‖∇L(θ − η d) − g‖₂); this module divides.

Every function takes the toolkit's one loss signature, ``loss_fn(params, batch) -> scalar``, with
``params`` and ``batch`` arbitrary pytrees. The probe functions are pure and jit-compatible (except
:func:`noise_floor`, which must see two separate dispatches) and never print.

Example::

    import jax.numpy as jnp
    from landscape import probes

    def loss_fn(params, batch):
        return 0.5 * jnp.sum((batch["x"] @ params["w"] - batch["y"]) ** 2)

    r = probes.step_probe(loss_fn, params, batch, probes.lr_multiples(0.1))
    r.effective_beta        # scalar
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import Mesh

from landscape.choices import PROBE_STRATEGIES, check_number
from landscape.parallel import spread_points
from landscape.probes._types import LossFn, PyTree

__all__ = [
    "DEFAULT_FLOOR_FACTOR",
    "STRATEGIES",
    "GradNorms",
    "StepProbe",
    "grad_norms",
    "lr_multiples",
    "make_step_probe",
    "noise_floor",
    "step_probe",
    "summarize",
]


#: Accepted values of the ``strategy`` argument of :func:`step_probe` / :func:`make_step_probe`.
STRATEGIES = PROBE_STRATEGIES


class StepProbe(NamedTuple):
    """Result of :func:`step_probe` (shapes: ``K`` = number of step sizes).

    Attributes:
      step_sizes: (K,) the absolute step sizes η_k, in the order given.
      loss0: () L(θ).
      grad_norm: () ‖g‖₂ with g = ∇L(θ) — always the gradient, even for a custom direction.
      loss: (K,) L(θ − η_k d)  (Fig. 4a, "loss variation").
      grad_change: (K,) ‖∇L(θ − η_k d) − g‖₂  (Fig. 4b, "gradient predictiveness").
      effective_beta: () max_k grad_change_k / (|η_k|·‖d‖₂)  (Fig. 4c), over the *included* k
        (``beta_included``); NaN when no k is included, and NaN when an included point's loss or
        gradient change is not finite (a diverged point has no finite smoothness).
      grad_change_floor: () the rounding floor of ``grad_change``, the larger of two bounds: the
        *sensitivity* ‖∇L(θ ⊕ δ) − g‖₂ for a perturbation δ of one unit in the last place of each
        parameter, computed in the same precision, and the *evaluation* floor ε·‖g‖₂ — one unit
        of the arithmetic's resolution ε in every entry of g, the rounding of evaluating a
        gradient at all (it dominates when much of g does not move with θ: a strong linear
        term, a large bias gradient, a loss summed over many samples). NaN when the floor was not
        measured (``floor_factor=0``). A gradient change not clearly above it is mostly rounding.
      beta_included: (K,) bool, the k entering ``effective_beta``: |η_k|·‖d‖₂ > 0 and
        grad_change_k > floor_factor · grad_change_floor.
    """

    step_sizes: jax.Array
    loss0: jax.Array
    grad_norm: jax.Array
    loss: jax.Array
    grad_change: jax.Array
    effective_beta: jax.Array
    grad_change_floor: jax.Array
    beta_included: jax.Array


class GradNorms(NamedTuple):
    """Result of :func:`grad_norms`.

    Attributes:
      total: () ‖∇L(θ)‖₂ over all parameters.
      per_leaf: pytree like ``params``; each leaf is the () norm ‖∇_leaf L(θ)‖₂ of that leaf's
        gradient block. ``total == sqrt(sum(per_leaf**2))``.
    """

    total: jax.Array
    per_leaf: PyTree


# ----------------------------------------------------------------------------------------------
# dtype and validation helpers


def _result_dtype(params: PyTree) -> jnp.dtype:
    """The dtype results are reported in: the params' float dtype, at least float32.

    float32 params → float32, float64 params → float64; bfloat16/float16 params are accumulated and
    reported in float32. Mixed float dtypes use their promotion (e.g. float32 + float64 → float64).
    """
    dtypes = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(params)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    if not dtypes:
        raise ValueError("params must contain at least one floating-point leaf to differentiate.")
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def _tree_norm(tree: PyTree, dtype) -> jax.Array:
    """‖tree‖₂, accumulated in ``dtype`` (at least float32)."""
    return optax.tree.norm(optax.tree.cast(tree, dtype)).astype(dtype)


def _resolve_strategy(strategy: str, chunk_size: int | None) -> str:
    """Validates ``strategy``/``chunk_size`` and maps ``"auto"`` to a concrete strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(repr(s) for s in STRATEGIES)}; got {strategy!r}."
        )
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
            raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}.")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}.")
        if strategy == "unroll":
            raise ValueError(
                "chunk_size applies to strategy 'vmap' or 'map' (it bounds how many points are "
                "evaluated at once); 'unroll' always writes out all K evaluations."
            )
    if strategy == "auto":
        # A chunk size asks for bounded memory, which only the mapped strategies give.
        if chunk_size is not None or jax.default_backend() != "cpu":
            return "vmap"
        return "unroll"
    return strategy


def map_with_strategy(at: Callable[[jax.Array], Any], points: jax.Array, strategy: str,
                      chunk_size: int | None = None) -> Any:
    """``at`` over the rows of ``points``, stacked, laid out by a resolved ``strategy``:
    ``"unroll"`` (one call per row, written out), ``"vmap"``, or ``"map"`` (``lax.map``; with
    ``chunk_size``, vmapped chunks of that many rows — also how ``"vmap"`` with a chunk runs)."""
    if strategy == "unroll":
        return jax.tree.map(lambda *rows: jnp.stack(rows),
                            *[at(points[k]) for k in range(points.shape[0])])
    if strategy == "vmap" and chunk_size is None:
        return jax.vmap(at)(points)
    return jax.lax.map(at, points, batch_size=chunk_size)


def _check_direction(params: PyTree, direction: PyTree, what: str = "direction") -> None:
    p_struct, d_struct = jax.tree.structure(params), jax.tree.structure(direction)
    if p_struct != d_struct:
        raise ValueError(
            f"{what} must have the same pytree structure as params; got {d_struct} "
            f"for params {p_struct}."
        )
    for p, d in zip(jax.tree.leaves(params), jax.tree.leaves(direction)):
        if jnp.shape(p) != jnp.shape(d):
            raise ValueError(
                f"{what} leaf shapes must match params; got {jnp.shape(d)} for a params leaf "
                f"of shape {jnp.shape(p)}."
            )


# ----------------------------------------------------------------------------------------------
# step probe


# Explicit significand bits of the operand rounding behind a 32-bit matmul/convolution, by
# ``jax_default_matmul_precision`` level (rows) and platform (columns; TF32 needs an Ampere+ GPU).
_LEVELS = {"default": "default", "fastest": "default", "bfloat16": "default",
           "high": "high", "tensorfloat32": "high", "bfloat16_3x": "high",
           "highest": "highest", "float32": "highest"}
_LEVEL_BITS = {"cpu": {"default": 23, "high": 23, "highest": 23},
               "gpu": {"default": 10, "high": 10, "highest": 23},
               "tpu": {"default": 7, "high": 16, "highest": 23}}
# dot-algorithm presets (``jax.lax.DotAlgorithmPreset`` names) fix the operand rounding themselves
_ALGORITHM_BITS = {"F32_F32_F32": 23, "TF32_TF32_F32": 10, "TF32_TF32_F32_X3": 21,
                   "BF16_BF16_F32": 7, "BF16_BF16_F32_X3": 16, "BF16_BF16_F32_X6": 23,
                   "BF16_BF16_F32_X9": 23, "BF16_BF16_BF16": 7, "F16_F16_F16": 10,
                   "F16_F16_F32": 10, "F64_F64_F64": 52, "ANY_F8_ANY_F8_F32": 3,
                   "ANY_F8_ANY_F8_F32_FAST_ACCUM": 3, "ANY_F8_ANY_F8_ANY": 3}


def arithmetic_eps(dtype: Any = jnp.float32, *, platform: str | None = None,
                   precision: Any = None, compute_capability: str | None = None) -> float:
    """Relative resolution ε of the arithmetic that ``dtype`` matmuls and convolutions run in.

    ε = 2^−m for m explicit significand bits of the operands the hardware multiplies: the dtype's own
    ``finfo(dtype).eps`` (float64 2^−52, float32 2^−23, bfloat16 2^−7) unless JAX computes 32-bit
    matmuls more coarsely. By default it does on accelerators: TF32 (m = 10, ε ≈ 9.8e-4) on NVIDIA
    Ampere and newer GPUs and one bfloat16 pass (m = 7) on TPUs; ``"highest"`` means true float32,
    and XLA:CPU always computes float32. Passed as the step probe's ``floor_eps``, it makes the
    rounding floor measure the noise of the arithmetic actually used: a float32 ulp is below TF32's
    resolution, and its floor misses most of TF32's rounding. Platforms other than CPU, GPU and TPU
    are taken to compute like the CPU.

    Args:
      dtype: the parameters' float dtype.
      platform: ``"cpu"``, ``"gpu"`` (also ``"cuda"``/``"rocm"``) or ``"tpu"``; default
        ``jax.default_backend()``.
      precision: a ``jax_default_matmul_precision`` value (``"default"``, ``"high"``,
        ``"highest"``, ``"bfloat16"``, ``"tensorfloat32"``, ``"float32"``, ``"fastest"``), a
        ``jax.lax.Precision``, or a ``DotAlgorithmPreset`` (or its name); default: the current
        ``jax.config.jax_default_matmul_precision``. A model that passes its own ``precision=`` to
        its layers is not seen here: give the step probe ``floor_eps`` yourself.
      compute_capability: a CUDA GPU's ``"major.minor"`` (TF32 needs ≥ 8.0); default: read from
        the first device when ``platform`` is the default backend, and TF32 assumed when unknown.

    Returns:
      ε as a Python float, never below ``finfo(dtype).eps``.

    Raises:
      ValueError: an unknown precision name.

    Example::

        >>> arithmetic_eps(jnp.float32, platform="gpu", precision="default") == 2.0 ** -10
        True
        >>> arithmetic_eps(jnp.float32, platform="cpu") == 2.0 ** -23
        True
    """
    dtype = jnp.dtype(dtype)
    own = float(jnp.finfo(dtype).eps)
    if dtype.itemsize != 4:  # the precision setting governs 32-bit inputs only
        return own
    platform = (platform or jax.default_backend()).lower()
    platform = "gpu" if platform in ("cuda", "rocm") else platform
    if precision is None:
        precision = jax.config.jax_default_matmul_precision
    name = getattr(precision, "name", precision)
    name = "default" if name is None else str(name)
    if name.upper() in _ALGORITHM_BITS:
        bits = _ALGORITHM_BITS[name.upper()]
    elif name.lower() in _LEVELS:
        bits = _LEVEL_BITS.get(platform, _LEVEL_BITS["cpu"])[_LEVELS[name.lower()]]
        if platform == "gpu" and bits == 10 and not _has_tf32(platform, compute_capability):
            bits = 23
    else:
        raise ValueError(f"precision={precision!r} is not a matmul precision JAX knows; use one of "
                         f"{', '.join(_LEVELS)} or a DotAlgorithmPreset name")
    if platform == "cpu":
        bits = 23  # XLA:CPU multiplies float32 in float32 whatever is asked (measured, jax 0.10)
    return max(own, 2.0 ** -bits)


def _has_tf32(platform: str, compute_capability: str | None) -> bool:
    """Whether a GPU multiplies float32 in TF32 by default (CUDA compute capability ≥ 8.0)."""
    if compute_capability is None and platform == jax.default_backend():
        compute_capability = getattr(jax.devices()[0], "compute_capability", None)
    try:
        return compute_capability is None or float(compute_capability) >= 8.0
    except (TypeError, ValueError):
        return True  # unknown: assume the coarser arithmetic (a larger, safe floor)


def _rounding_perturbation(params: PyTree, ulps: float, eps: float | None = None) -> PyTree:
    """δ with δ_i = ±ulps·ε·|θ_i| (a fixed sign pattern): a few units of the arithmetic's resolution.

    ε is ``max(finfo(leaf).eps, eps)``; ``eps=None`` takes each leaf's own ``finfo(leaf).eps``
    (one ulp of the storage dtype).
    """
    leaves, treedef = jax.tree.flatten(params)
    out = []
    for i, leaf in enumerate(leaves):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            out.append(leaf)
            continue
        leaf_eps = max(float(jnp.finfo(dtype).eps), eps or 0.0)
        signs = jax.random.rademacher(jax.random.fold_in(jax.random.key(0x5EED), i),
                                      jnp.shape(leaf), dtype=dtype)
        out.append(leaf + signs * (ulps * leaf_eps) * jnp.abs(leaf))
    return jax.tree.unflatten(treedef, out)


def _widen(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(jnp.result_type(x), jnp.floating)
                        and jnp.dtype(jnp.result_type(x)).itemsize < 4 else x, tree)


def _widen_low_precision(params: PyTree, direction: PyTree, value_and_grad):
    """bfloat16/float16 parameters are probed in float32 copies (see :func:`step_probe`)."""
    narrow = any(jnp.issubdtype(jnp.result_type(x), jnp.floating)
                 and jnp.dtype(jnp.result_type(x)).itemsize < 4 for x in jax.tree.leaves(params))
    if not narrow:
        return params, direction, value_and_grad
    if value_and_grad is not None:
        value_and_grad = (value_and_grad[0], _widen(value_and_grad[1]))
    return _widen(params), None if direction is None else _widen(direction), value_and_grad


def _evaluation_floor(grad: PyTree, params: PyTree, floor_eps: float | None, dtype) -> jax.Array:
    """ε·‖g‖₂: one unit of the arithmetic's resolution in every entry of g.

    A gradient is only known to ≈ ε|g_i| per entry (its own rounding, whatever θ does), so two
    gradients that differ by less than that are equal within their evaluation. ε is the coarsest
    of the parameters' own resolution (for a float32 leaf: the arithmetic its matmuls run in,
    :func:`arithmetic_eps`, e.g. TF32 on Ampere GPUs) and ``floor_eps``.
    """
    eps = max([arithmetic_eps(jnp.result_type(p)) for p in jax.tree.leaves(params)
               if jnp.issubdtype(jnp.result_type(p), jnp.floating)] + [floor_eps or 0.0])
    return (eps * optax.tree.norm(grad)).astype(dtype)


def _effective_beta(loss, grad_change, distance, floor, floor_factor: float):
    """``(β, included)``: max over the included η of grad_change / distance (see :class:`StepProbe`)."""
    included = distance > 0
    if floor_factor > 0:
        # NaN changes stay included so that a diverged point yields a NaN β
        included = included & ~(grad_change <= floor_factor * floor)
    ratio = grad_change / jnp.where(included, distance, 1)
    ratio = jnp.where(jnp.isfinite(loss), ratio, jnp.nan)  # a NaN loss has no finite smoothness
    ratio = jnp.where(included, ratio, -jnp.inf)
    beta = jnp.where(jnp.any(included), jnp.max(ratio), jnp.nan).astype(distance.dtype)
    return beta, included


def _step_probe_impl(
    loss_fn: LossFn,
    strategy: str,
    chunk_size: int | None,
    floor_factor: float,
    mesh: Mesh | None,
    floor_eps: float | None,
    params: PyTree,
    batch: PyTree,
    step_sizes: jax.Array,
    direction: PyTree = None,
    value_and_grad: tuple[jax.Array, PyTree] | None = None,
) -> StepProbe:
    """The traced body shared by :func:`step_probe` and :func:`make_step_probe`."""
    params, direction, value_and_grad = _widen_low_precision(params, direction, value_and_grad)
    dtype = _result_dtype(params)
    step_sizes = jnp.asarray(step_sizes)
    if step_sizes.ndim != 1 or step_sizes.shape[0] < 1:
        raise ValueError(
            f"step_sizes must be a 1-D array with at least one entry; got shape {step_sizes.shape}."
        )
    step_sizes = step_sizes.astype(dtype)

    loss_and_grad = jax.value_and_grad(loss_fn)
    if value_and_grad is None:
        loss0, grad = loss_and_grad(params, batch)
    else:  # fused with a training step that already computed L(θ) and g on this batch
        loss0, grad = value_and_grad
        _check_direction(params, grad, what="value_and_grad's gradient")
    if direction is None:
        direction = grad
    else:
        _check_direction(params, direction)
    grad_acc = optax.tree.cast(grad, dtype)

    def change_from(grad_moved: PyTree, grad_acc: PyTree) -> jax.Array:
        return optax.tree.norm(optax.tree.sub(optax.tree.cast(grad_moved, dtype), grad_acc))

    def evaluate(etas: jax.Array, params, batch, direction, grad_acc):
        """(loss, grad_change) at θ − η d for every η of ``etas`` (this device's share)."""
        def at(eta: jax.Array) -> tuple[jax.Array, jax.Array]:
            # θ − η d, each leaf kept in its own dtype.
            moved = optax.tree.cast_like(optax.tree.add_scale(params, -eta, direction), params)
            loss, grad_moved = loss_and_grad(moved, batch)
            return jnp.asarray(loss, dtype), change_from(grad_moved, grad_acc).astype(dtype)

        return map_with_strategy(at, etas, strategy, chunk_size)

    # points layout (a mesh): each device evaluates K/n step sizes on the whole minibatch
    loss, grad_change = spread_points(evaluate, step_sizes, params, batch, direction, grad_acc,
                                      mesh=mesh)

    if floor_factor > 0:
        perturbed = _rounding_perturbation(params, _FLOOR_ULPS, floor_eps)
        sensitivity = change_from(jax.grad(loss_fn)(perturbed, batch), grad_acc).astype(dtype)
        floor = jnp.maximum(sensitivity, _evaluation_floor(grad_acc, params, floor_eps, dtype))
    else:
        floor = jnp.full((), jnp.nan, dtype)
    distance = jnp.abs(step_sizes) * _tree_norm(direction, dtype)
    effective_beta, included = _effective_beta(loss, grad_change, distance, floor, floor_factor)

    return StepProbe(
        step_sizes=step_sizes,
        loss0=jnp.asarray(loss0, dtype),
        grad_norm=optax.tree.norm(grad_acc).astype(dtype),
        loss=loss,
        grad_change=grad_change,
        effective_beta=effective_beta,
        grad_change_floor=floor,
        beta_included=included,
    )


#: Size of the parameter perturbation behind ``grad_change_floor``, in units in the last place.
_FLOOR_ULPS = 1.0
#: Default ``floor_factor``: an η enters the effective β only when its gradient change exceeds this
#: many rounding floors (then rounding moves the ratio by ≲ 1/floor_factor, and typically by its square).
DEFAULT_FLOOR_FACTOR = 10.0


_step_probe_jit = jax.jit(_step_probe_impl, static_argnums=(0, 1, 2, 3, 4, 5))


def step_probe(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    step_sizes: jax.Array,
    *,
    direction: PyTree = None,
    strategy: str = "auto",
    chunk_size: int | None = None,
    floor_factor: float = DEFAULT_FLOOR_FACTOR,
    floor_eps: float | None = None,
    value_and_grad: tuple[jax.Array, PyTree] | None = None,
    mesh: Mesh | None = None,
) -> StepProbe:
    """Loss and gradient along θ − η·d for K step sizes (Santurkar et al. 2018, Fig. 4).

    With g = ∇L(θ) and d = ``direction`` (default g), for each η_k:

        loss_k        = L(θ − η_k d)
        grad_change_k = ‖∇L(θ − η_k d) − g‖₂
        floor         = ‖∇L(θ ⊕ δ) − g‖₂,  δ_i = ±ε·|θ_i|   (rounding floor, same arithmetic)
        effective_β   = max_k grad_change_k / (|η_k| ‖d‖₂)   over k with grad_change_k > c·floor

    Entries with |η_k|·‖d‖₂ = 0 are 0/0 and left out of the max, and so are entries whose gradient
    change is not clearly above the rounding floor (c = ``floor_factor``): for small η the two
    gradients agree in most of their digits and their difference is rounding, which the max over η
    would otherwise report as β (float32 deep linear net: 1.7× too large). ``beta_included`` marks
    the entries used. If none is, ``effective_beta`` is NaN. A NaN loss or gradient change at an
    included point (a diverged point) gives NaN. Unlike the best-known public notebook, which
    reports max_k grad_change_k, we divide by the distance. The floor costs one more gradient.

    Results are in the params' float dtype (float32 → float32, float64 → float64). Each probed
    point keeps every leaf's own dtype, except that **bfloat16/float16 parameters are probed in
    float32 copies**: θ, d and g are widened to float32 and the points θ − ηd evaluated there (a
    model that casts its parameters back down inside ``loss_fn`` still computes in its own
    precision). In bfloat16 itself (ε = 2⁻⁷) the rounding floor exceeds every gradient change at
    the paper's step sizes and β would be undefined (NaN) at every step; in float32 it is the
    float32 smoothness of the same function. Whenever no η clears the floor, β is NaN and
    ``beta_included`` is all False — the record's ``num_beta_excluded`` says so.

    The computation is jitted internally, keyed on ``loss_fn`` (which must be hashable; pass the
    same function object each time, not a fresh lambda, or build a probe once with
    :func:`make_step_probe`). It also works inside an outer ``jax.jit``, e.g.
    ``jax.jit(step_probe, static_argnums=0, static_argnames=("strategy", "chunk_size"))``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``; for BatchNorm nets, the batch-statistics loss
        (train mode) with no side effects on running averages (REFERENCE, Fig. 4).
      params: pytree θ.
      batch: pytree passed unchanged to ``loss_fn`` (the same minibatch as the step).
      step_sizes: (K,) absolute step sizes η, K ≥ 1, any order (results keep it), may contain 0.
        Negative η move along +d. See :func:`lr_multiples` for the paper's range.
      direction: pytree like ``params``; default g = ∇L(θ). Gradient changes are still measured
        against g.
      strategy: how the K evaluations are laid out: ``"unroll"`` (K value-and-grad calls written
        out in one traced function; fastest on CPU), ``"vmap"`` (``jax.vmap`` over η; fastest on
        accelerators, K× the memory of one gradient), ``"map"`` (``jax.lax.map``: sequential, lowest
        memory, slow on CPU), or ``"auto"`` (``"vmap"`` on GPU/TPU, ``"unroll"`` on CPU, and
        ``"vmap"`` whenever ``chunk_size`` is given).
      chunk_size: for ``"vmap"``/``"map"``: evaluate at most this many points at once, via
        ``jax.lax.map(f, step_sizes, batch_size=chunk_size)``. Not accepted with ``"unroll"``.
      floor_factor: c above; 0 skips the floor (no extra gradient; every η with a positive
        distance enters the max, ``grad_change_floor`` is NaN).
      floor_eps: ε above; default one ulp of the params' dtype (float32: 2^−23). Where the matmuls
        run coarser than the dtype (TF32 on Ampere+ GPUs, bfloat16 on TPUs, by JAX's default),
        ``floor_eps=arithmetic_eps(dtype)`` makes the floor measure that arithmetic's noise: the
        default floor then misses most of it (CPU emulation of TF32: η with 29 % error entered β),
        while the resolution floor is conservative (it bounds the worst case; it can leave out η
        whose norms are within ~2 % of float64). ``--matmul-precision highest`` avoids the question.
        Never below the dtype's own eps.
      value_and_grad: ``(L(θ), g)`` already computed on this ``batch`` with this ``loss_fn`` (a
        training step's own gradient): the probe then costs K (+1 for the floor) gradients, not
        K + 1 (+1).
      mesh: spread the K points over this mesh's n devices (the *points* layout,
        :func:`landscape.parallel.spread_points`): each device evaluates ⌈K/n⌉ step sizes on the
        whole minibatch with ``strategy``. Without it, a minibatch sharded over devices gives the
        *data* layout (every point on every device, each on its share of the batch).

    Returns:
      A :class:`StepProbe` with fields ``step_sizes`` (K,), ``loss0`` (), ``grad_norm`` (),
      ``loss`` (K,), ``grad_change`` (K,), ``effective_beta`` (), ``grad_change_floor`` (),
      ``beta_included`` (K,).

    Raises:
      ValueError: unknown ``strategy``, bad ``chunk_size``, ``step_sizes`` not 1-D with K ≥ 1,
        or ``direction`` not shaped like ``params``.

    Reference:
      Santurkar, Tsipras, Ilyas, Madry (2018), Sec. 3.2, Fig. 4, App. A.2.2.

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p["w"] ** 2)   # β = max(b) = 3
        >>> r = step_probe(loss_fn, {"w": jnp.ones(2)}, jnp.array([1.0, 3.0]),
        ...                jnp.array([0.1, 0.2]))
        >>> float(r.effective_beta)   # ‖A g‖ / ‖g‖ = ‖(1, 9)‖ / ‖(1, 3)‖
        2.863...
    """
    resolved = _resolve_strategy(strategy, chunk_size)
    floor_factor = float(check_number("floor_factor", floor_factor, minimum=0))
    floor_eps = _check_floor_eps(floor_eps)
    # Casting here keeps one jit cache entry whatever dtype the caller's step sizes have.
    step_sizes = jnp.asarray(step_sizes, dtype=_result_dtype(params))
    return _step_probe_jit(loss_fn, resolved, chunk_size, floor_factor, mesh, floor_eps, params,
                           batch, step_sizes, direction, value_and_grad)


def _check_floor_eps(floor_eps: float | None) -> float | None:
    if floor_eps is None:
        return None
    return float(check_number("floor_eps", floor_eps, minimum=0, maximum=1, strict=True))


def make_step_probe(
    loss_fn: LossFn, *, strategy: str = "auto", chunk_size: int | None = None,
    floor_factor: float = DEFAULT_FLOOR_FACTOR, mesh: Mesh | None = None,
    floor_eps: float | None = None,
) -> Callable[..., StepProbe]:
    """Builds a jitted ``probe(params, batch, step_sizes, direction=None) -> StepProbe``.

    Same computation and arguments as :func:`step_probe`, with ``loss_fn``, ``strategy`` (``"auto"``
    resolved now, on the current default backend), ``chunk_size``, ``floor_factor`` and ``floor_eps``
    fixed. Build it once and call it
    every step: it traces again only when shapes, dtypes or the pytree structure of its arguments
    change (e.g. a new K, or ``direction`` switching between ``None`` and a pytree), never when only
    values change.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      strategy: one of :data:`STRATEGIES`; see :func:`step_probe`.
      chunk_size: see :func:`step_probe`.
      floor_factor: see :func:`step_probe`.
      mesh: see :func:`step_probe` (points over devices).
      floor_eps: see :func:`step_probe`.

    Returns:
      The jitted probe function.

    Reference:
      Santurkar et al. (2018), Fig. 4, App. A.2.2.

    Example::

        probe = make_step_probe(loss_fn)
        for step in range(num_steps):
            r = probe(params, batch, lr_multiples(0.1))
    """
    resolved = _resolve_strategy(strategy, chunk_size)
    floor_factor = float(check_number("floor_factor", floor_factor, minimum=0))
    body = functools.partial(_step_probe_impl, loss_fn, resolved, chunk_size, floor_factor, mesh,
                             _check_floor_eps(floor_eps))

    def probe(params: PyTree, batch: PyTree, step_sizes: jax.Array, direction: PyTree = None,
              value_and_grad: tuple[jax.Array, PyTree] | None = None):
        return body(params, batch, step_sizes, direction, value_and_grad)

    probe.__name__ = probe.__qualname__ = f"step_probe[{getattr(loss_fn, '__name__', 'loss_fn')}]"
    probe.__doc__ = (
        f"Jitted step_probe of {getattr(loss_fn, '__name__', 'loss_fn')} (strategy {resolved!r}, "
        f"chunk_size {chunk_size}): probe(params, batch, step_sizes, direction=None, "
        "value_and_grad=None) -> StepProbe."
    )
    return jax.jit(probe)


# ----------------------------------------------------------------------------------------------
# step-size ranges


def lr_multiples(lr: float, lo: float = 0.5, hi: float = 4.0, num: int = 8) -> np.ndarray:
    """``num`` evenly spaced step sizes from ``lo·lr`` to ``hi·lr`` (both included).

    η_k = lr·(lo + k·(hi − lo)/(num − 1)), k = 0…num−1 (just ``lo·lr`` when num = 1). The paper's
    VGG range is [½, 4] × lr (lr 0.1 → [0.05, 0.4]); its deep linear network uses [1/100, 30] × lr.
    The number of points is unstated; reproductions use 8 or 13.

    Args:
      lr: learning rate, finite and > 0.
      lo, hi: multiples of ``lr`` at the ends, finite, 0 < lo ≤ hi.
      num: number of step sizes, an int ≥ 1.

    Returns:
      float64 NumPy array of shape (num,) (cast to the params' dtype by :func:`step_probe`).

    Raises:
      ValueError: naming the bad argument.

    Reference:
      Santurkar et al. (2018), App. A.2.2.

    Example::

        >>> lr_multiples(0.1)
        array([0.05, 0.1 , 0.15, 0.2 , 0.25, 0.3 , 0.35, 0.4 ])
    """

    for name, value in (("lr", lr), ("lo", lo), ("hi", hi)):
        check_number(name, value, minimum=0, strict=True)
    if hi < lo:
        raise ValueError(f"need lo <= hi; got lo={lo!r}, hi={hi!r}.")
    check_number("num", num, minimum=1, integer=True)
    lr, lo, hi = float(lr), float(lo), float(hi)
    return lr * np.linspace(lo, hi, int(num), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# gradient norms and the nondeterminism floor


def _grad_norms_impl(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradNorms:
    dtype = _result_dtype(params)
    grad = optax.tree.cast(jax.grad(loss_fn)(params, batch), dtype)
    per_leaf = jax.tree.map(lambda leaf: optax.tree.norm(leaf).astype(dtype), grad)
    return GradNorms(total=optax.tree.norm(grad).astype(dtype), per_leaf=per_leaf)


_grad_norms_jit = jax.jit(_grad_norms_impl, static_argnums=0)


def grad_norms(loss_fn: LossFn, params: PyTree, batch: PyTree) -> GradNorms:
    """Global and per-leaf gradient norms ‖∇L(θ)‖₂ (the Lipschitzness of the loss).

    total = ‖∇L(θ)‖₂ = sqrt(Σ_leaves ‖∇_leaf L(θ)‖₂²); per_leaf holds each ‖∇_leaf L(θ)‖₂ (a layer's
    norm is the root-sum-square of its leaves, e.g. kernel and bias). Jitted internally (keyed on
    ``loss_fn``); works inside ``jax.jit``. Dtypes as in :func:`step_probe`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ.
      batch: pytree passed to ``loss_fn``.

    Returns:
      :class:`GradNorms` ``(total, per_leaf)``.

    Reference:
      Santurkar et al. (2018), Sec. 3.2 (Lipschitzness of the loss, Fig. 4a) and Sec. 4.

    Example::

        >>> n = grad_norms(lambda p, b: jnp.sum(p["w"] * b), {"w": jnp.ones(2)},
        ...                jnp.array([3.0, 4.0]))
        >>> float(n.total), float(n.per_leaf["w"])
        (5.0, 5.0)
    """
    return _grad_norms_jit(loss_fn, params, batch)


def noise_floor(loss_fn: LossFn, params: PyTree, batch: PyTree) -> jax.Array:
    """Nondeterminism floor of the gradient: ‖g₁ − g₂‖₂ for two computations of ∇L(θ).

    g₁ and g₂ are the gradient at the same θ and batch, each from its own separately traced and
    jitted function, dispatched one after the other. Any difference comes from nondeterministic
    kernels (e.g. atomics or autotuned algorithms on GPU); on CPU it is exactly 0 for a
    deterministic loss. Gradient-change values of :func:`step_probe` below this floor are noise.

    Must be called outside ``jax.jit``: inside one traced function XLA would merge the two
    identical computations and the floor would be 0 by construction. Compiles the gradient twice.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ (concrete arrays).
      batch: pytree passed to ``loss_fn``.

    Returns:
      () ‖g₁ − g₂‖₂ in the dtype of :func:`step_probe`'s results.

    Raises:
      ValueError: when called under a JAX transformation (params or batch are tracers).

    Reference:
      Measurement hygiene for Santurkar et al. (2018), Fig. 4b.

    Example::

        >>> float(noise_floor(lambda p, b: jnp.sum(jnp.sin(p * b)), jnp.ones(3), jnp.ones(3)))
        0.0
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((params, batch))):
        raise ValueError(
            "noise_floor must be called outside jax.jit/vmap: under one trace the two gradient "
            "computations are merged and the floor is 0 by construction."
        )
    dtype = _result_dtype(params)
    # Two distinct function objects → two traces and two compiled executables.
    first = jax.jit(lambda p, b: jax.grad(loss_fn)(p, b))
    second = jax.jit(lambda p, b: jax.grad(loss_fn)(p, b))
    g1 = first(params, batch)
    g1 = jax.block_until_ready(g1)
    g2 = second(params, batch)
    return _tree_norm(optax.tree.sub(optax.tree.cast(g1, dtype), optax.tree.cast(g2, dtype)), dtype)


# ----------------------------------------------------------------------------------------------
# records


def summarize(probe: StepProbe) -> dict[str, float]:
    """Python-float summary of a :class:`StepProbe` for records (call outside ``jax.jit``).

    The Fig. 4 bands are [loss_min, loss_max] and [grad_change_min, grad_change_max] over η; NaNs
    propagate (a NaN anywhere in ``loss`` makes loss_min and loss_max NaN), so a diverged probe is
    visible in the record.

    Args:
      probe: a :class:`StepProbe` (concrete arrays).

    Returns:
      dict with float values: ``loss0``, ``loss_min``, ``loss_max``, ``grad_change_min``,
      ``grad_change_max``, ``effective_beta``, ``grad_norm``, ``step_size_min``, ``step_size_max``
      ``grad_change_floor`` (Python floats, NaN preserved), ``num_steps`` (K) and
      ``num_beta_excluded`` (how many η the effective β left out; Python ints).

    Reference:
      Santurkar et al. (2018), Fig. 4 (bands a, b; curve c).

    Example::

        record = summarize(step_probe(loss_fn, params, batch, lr_multiples(0.1)))
    """
    loss = np.asarray(probe.loss, dtype=np.float64)
    change = np.asarray(probe.grad_change, dtype=np.float64)
    steps = np.asarray(probe.step_sizes, dtype=np.float64)
    return {
        "loss0": float(probe.loss0),
        "loss_min": float(np.min(loss)),
        "loss_max": float(np.max(loss)),
        "grad_change_min": float(np.min(change)),
        "grad_change_max": float(np.max(change)),
        "effective_beta": float(probe.effective_beta),
        "grad_norm": float(probe.grad_norm),
        "step_size_min": float(np.min(steps)),
        "step_size_max": float(np.max(steps)),
        "num_steps": int(steps.shape[0]),
        "grad_change_floor": float(probe.grad_change_floor),
        "num_beta_excluded": int(np.sum(~np.asarray(probe.beta_included, dtype=bool))),
    }
