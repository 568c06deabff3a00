"""Coarse matmul arithmetic emulated on CPU, to check the rounding floor without a GPU or TPU.

Tensor cores round a float32 matmul's operands to m significand bits (TF32: 10, bfloat16: 7) and
accumulate in float32. XLA:CPU ignores JAX's precision settings and always computes float32, so a
test of what a GPU's default arithmetic does to the probe needs that rounding written out. Used by
``tests/test_arithmetic.py`` and ``benchmarks/emulated_precision.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

TF32_BITS = 10
BF16_BITS = 7


def round_significand(x: jax.Array, bits: int) -> jax.Array:
    """float32 ``x`` rounded to ``bits`` explicit significand bits (to nearest, ties to even).

    Example::

        >>> float(round_significand(jnp.float32(1 + 2 ** -9), 7))   # 1.00195 → 1 in bfloat16
        1.0
    """
    if bits >= 23:
        return x
    drop = 23 - bits
    i = jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)
    i = i + jnp.uint32((1 << (drop - 1)) - 1) + ((i >> drop) & 1)
    return jax.lax.bitcast_convert_type(i & jnp.uint32(0xFFFFFFFF << drop & 0xFFFFFFFF), jnp.float32)


def coarse_bilinear(op: Callable[[jax.Array, jax.Array], jax.Array], bits: int):
    """``op`` (a matmul or convolution, bilinear in its two operands) as tensor cores compute it.

    The forward product and both backward products (∂/∂a from the rounded cotangent and rounded b,
    ∂/∂b from rounded a and the rounded cotangent) see operands rounded to ``bits`` significand
    bits; accumulation stays float32.

    Example::

        >>> matmul = coarse_bilinear(jnp.matmul, TF32_BITS)
        >>> y = matmul(jnp.ones((2, 3)), jnp.ones((3, 4)))
    """
    r = lambda z: round_significand(z, bits)  # noqa: E731

    @jax.custom_vjp
    def apply(a, b):
        return op(r(a), r(b))

    def fwd(a, b):
        return apply(a, b), (r(a), r(b))

    def bwd(res, g):
        _, vjp = jax.vjp(op, *res)
        return vjp(r(g))

    apply.defvjp(fwd, bwd)
    return apply
