"""Argument checks shared by the probes: counts, pytrees shaped like the parameters, tracers."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from landscape.probes._types import PyTree


def _check_direction(params: PyTree, direction: PyTree, what: str = "direction") -> None:
    """A ValueError unless ``direction`` has the pytree structure and leaf shapes of ``params``."""
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


def _is_traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a tracer (the call runs under ``jax.jit``/``vmap``)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))
