"""The arithmetic behind the probes: result dtypes, the resolution ε, and rounding floors.

**Result dtype.** Probes report in the params' float dtype, at least float32
(:func:`_result_dtype`): float32 → float32, float64 → float64, bfloat16/float16 accumulated and
reported in float32.

**Resolution.** :func:`arithmetic_eps` is the relative resolution ε of the arithmetic a dtype's
matmuls and convolutions actually run in: ``finfo(dtype).eps`` unless JAX computes 32-bit matmuls
more coarsely (TF32 on Ampere+ GPUs, one bfloat16 pass on TPUs, by JAX's default).

**Rounding floor** of a gradient change ‖∇L(θ') − g‖₂ (:func:`landscape.probes.step_probe`'s
``grad_change_floor``), the larger of two bounds: the *sensitivity* ‖∇L(θ ⊕ δ) − g‖₂ for a
perturbation δ_i = ±ε·|θ_i| of one unit in the last place of each parameter
(:func:`_rounding_perturbation`, computed in the same precision), and the *evaluation* floor
ε·‖g‖₂ (:func:`_evaluation_floor`) — one unit of the arithmetic's resolution in every entry of g,
the rounding of evaluating a gradient at all (it dominates when much of g does not move with θ: a
strong linear term, a large bias gradient, a loss summed over many samples). The probe's
``floor_eps`` raises ε: by default the floor uses one ulp of the params' dtype (float32: 2^−23).
Where the matmuls run coarser than the dtype, ``floor_eps=arithmetic_eps(dtype)`` makes the floor
measure that arithmetic's noise: the default floor then misses most of it (CPU emulation of TF32:
η with 29 % error entered β), while the resolution floor is conservative (it bounds the worst
case; it can leave out η whose norms are within ~2 % of float64). ``--matmul-precision highest``
avoids the question.

**Low precision.** bfloat16/float16 parameters are probed in float32 copies
(:func:`_widen_low_precision`): θ, d and g are widened to float32 and the points θ − ηd evaluated
there (a model that casts its parameters back down inside ``loss_fn`` still computes in its own
precision). In bfloat16 itself (ε = 2⁻⁷) the rounding floor exceeds every gradient change at the
paper's step sizes and β would be undefined (NaN) at every step; in float32 it is the float32
smoothness of the same function.

**Nondeterminism floor.** :func:`noise_floor` is ‖g₁ − g₂‖₂ for two separately compiled
computations of the same gradient: the noise of nondeterministic kernels (0 on CPU).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape.choices import check_number
from landscape.probes._checks import _is_traced
from landscape.probes._types import LossFn, PyTree

__all__ = ["arithmetic_eps", "noise_floor"]

#: Size of the parameter perturbation behind ``grad_change_floor``, in units in the last place.
_FLOOR_ULPS = 1.0


def _is_float(leaf) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _result_dtype(params: PyTree) -> jnp.dtype:
    """The dtype results are reported in: the params' float dtype, at least float32.

    float32 params → float32, float64 params → float64; bfloat16/float16 params are accumulated and
    reported in float32. Mixed float dtypes use their promotion (e.g. float32 + float64 → float64).
    """
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree.leaves(params) if _is_float(leaf)]
    if not dtypes:
        raise ValueError("params must contain at least one floating-point leaf to differentiate.")
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def _tree_norm(tree: PyTree, dtype) -> jax.Array:
    """‖tree‖₂, accumulated in ``dtype`` (at least float32)."""
    return optax.tree.norm(optax.tree.cast(tree, dtype)).astype(dtype)


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


def _sign_pattern(shape: tuple[int, ...], index: int, dtype) -> jax.Array:
    """A fixed ±1 array of ``shape``, about half of each sign, different for every leaf ``index``.

    s_j = 1 − 2·bit₃₁(h(j + c_index)) for the flat position j, with h Wellons' ``lowbias32``
    integer hash (two multiply–xorshift rounds on uint32) and c_index = (index + 1)·⌊2³²/φ⌋ mod 2³².
    A few integer operations on ``lax.iota``: they compile in milliseconds and fuse into the
    perturbed parameters, where ``jax.random``'s threefry compiled for seconds per leaf on XLA:CPU
    (22 s of a quick ResNet-14 probe's 35 s).
    """
    offset = np.uint32(((index + 1) * 0x9E3779B9) & 0xFFFFFFFF)
    x = jax.lax.iota(jnp.uint32, math.prod(shape)) + offset
    x = (x ^ (x >> 16)) * np.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * np.uint32(0x846CA68B)
    x = x ^ (x >> 16)
    return (1 - 2 * (x >> 31).astype(jnp.int32)).astype(dtype).reshape(shape)


def _rounding_perturbation(params: PyTree, ulps: float, eps: float | None = None) -> PyTree:
    """δ with δ_i = ±ulps·ε·|θ_i| (a fixed sign pattern, :func:`_sign_pattern`): a few units of
    the arithmetic's resolution.

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
        signs = _sign_pattern(jnp.shape(leaf), i, dtype)
        out.append(leaf + signs * (ulps * leaf_eps) * jnp.abs(leaf))
    return jax.tree.unflatten(treedef, out)


def _check_floor_eps(floor_eps: float | None) -> float | None:
    """``floor_eps`` as a float in (0, 1], or None (the default floor)."""
    if floor_eps is None:
        return None
    return float(check_number("floor_eps", floor_eps, minimum=0, maximum=1, strict=True))


def _is_narrow(x) -> bool:
    """A floating leaf narrower than float32 (bfloat16, float16)."""
    return _is_float(x) and jnp.dtype(jnp.result_type(x)).itemsize < 4


def _widen(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: x.astype(jnp.float32) if _is_narrow(x) else x, tree)


def _widen_low_precision(params: PyTree, direction: PyTree, value_and_grad):
    """bfloat16/float16 parameters are probed in float32 copies (see the module docstring)."""
    if not any(_is_narrow(x) for x in jax.tree.leaves(params)):
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
               if _is_float(p)] + [floor_eps or 0.0])
    return (eps * optax.tree.norm(grad)).astype(dtype)


def noise_floor(loss_fn: LossFn, params: PyTree, batch: PyTree) -> jax.Array:
    """Nondeterminism floor of the gradient: ‖g₁ − g₂‖₂ for two computations of ∇L(θ).

    g₁ and g₂ are the gradient at the same θ and batch, each from its own separately traced and
    jitted function, dispatched one after the other. Any difference comes from nondeterministic
    kernels (e.g. atomics or autotuned algorithms on GPU); on CPU it is exactly 0 for a
    deterministic loss. Gradient-change values of :func:`landscape.probes.step_probe` below this
    floor are noise.

    Must be called outside ``jax.jit``: inside one traced function XLA would merge the two
    identical computations and the floor would be 0 by construction. Compiles the gradient twice.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ (concrete arrays).
      batch: pytree passed to ``loss_fn``.

    Returns:
      () ‖g₁ − g₂‖₂ in the dtype of :func:`landscape.probes.step_probe`'s results.

    Raises:
      ValueError: when called under a JAX transformation (params or batch are tracers).

    Reference:
      Measurement hygiene for Santurkar et al. (2018), Fig. 4b.

    Example::

        >>> float(noise_floor(lambda p, b: jnp.sum(jnp.sin(p * b)), jnp.ones(3), jnp.ones(3)))
        0.0
    """
    if _is_traced(params, batch):
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
