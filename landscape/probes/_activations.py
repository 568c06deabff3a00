"""Activation statistics: the distribution of one layer's pre-activations (Santurkar Fig. 1/2,
Ioffe & Szegedy Fig. 1). Pure and jit-compatible; the layer's output itself comes from the model
(:func:`landscape.bridge.make_block_output_fn` for NNX models)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ActivationStats", "activation_statistics"]


class ActivationStats(NamedTuple):
    """Summary of n activation values (all scalars, float32 or the input's float dtype)."""

    p15: jax.Array
    p50: jax.Array
    p85: jax.Array
    mean: jax.Array
    std: jax.Array   # population standard deviation (ddof = 0)


def activation_statistics(activations: jax.Array, *, unit: int | None = None) -> ActivationStats:
    """15th/50th/85th percentiles, mean and std of a layer's activations.

    ``activations`` has the batch first and the features last (``(B, H, W, C)`` or ``(B, C)``); all
    values (examples × positions × features) are pooled, or only feature ``unit`` (the last axis)
    when given — Ioffe & Szegedy's "one typical sigmoid". Percentiles interpolate linearly between
    order statistics (``numpy.percentile``'s default).

    Reference:
        Ioffe & Szegedy (2015), Fig. 1 (b, c); Santurkar et al. (2018), Fig. 1 and 2.

    Example:
        >>> s = activation_statistics(jnp.arange(101.0).reshape(101, 1))
        >>> float(s.p15), float(s.p50), float(s.p85)
        (15.0, 50.0, 85.0)
    """
    values = activations if unit is None else activations[..., unit]
    values = jnp.ravel(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.float32)
    p15, p50, p85 = jnp.percentile(values, jnp.array([15.0, 50.0, 85.0], values.dtype))
    return ActivationStats(p15, p50, p85, jnp.mean(values), jnp.std(values))
