"""Parameter paths and masks: select leaves of a parameter pytree by their "/"-joined key path.

Used by the per-layer probes (internal covariate shift, per-layer gradient norms, block-restricted
curvature). Pure Python over pytree structure; no Flax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from landscape.probes._types import PyTree

__all__ = ["block_masks", "param_mask", "param_paths", "path_str", "per_leaf_dict"]



def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_str(path: Sequence[Any]) -> str:
    return "/".join(_key_name(k) for k in path)


def param_paths(params: PyTree) -> list[str]:
    """The ``"/"``-joined key path of every leaf of ``params``, in leaf order.

    Example:
        >>> param_paths({"blocks": {0: {"proj": {"kernel": jnp.ones(2)}}}})
        ['blocks/0/proj/kernel']
    """
    return [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def param_mask(params: PyTree, predicate: Callable[[str], bool]) -> PyTree:
    """A pytree like ``params`` holding the Python bool ``predicate(path)`` at every leaf.

    ``path`` is the leaf's ``"/"``-joined key path, e.g. ``"blocks/4/proj/kernel"`` for the NNX
    models of :mod:`landscape.models`.

    Example:
        >>> param_mask({"a": jnp.ones(1), "b": jnp.ones(1)}, lambda p: p == "a")
        {'a': True, 'b': False}
    """
    return jax.tree_util.tree_map_with_path(lambda p, _: bool(predicate(path_str(p))), params)


def block_masks(params: PyTree, index: int, *, container: str = "blocks",
                weight: str = "proj/kernel") -> tuple[PyTree, PyTree]:
    """``(layer, earlier)`` masks for layer ``index`` (0-based) of a sequential model.

    ``layer`` selects W_i, the leaf ``f"{container}/{index}/{weight}"`` (the block's projection
    kernel by default); ``earlier`` selects *every* parameter of the blocks with a smaller index
    (kernels, biases, normalization γ/β) — the layers that take their step-t update in
    Definition 2.1. Anything outside ``container`` (e.g. the classifier head) is in neither.

    Raises:
        ValueError: when no leaf has the layer's path.

    Example:
        >>> w = {"proj": {"kernel": jnp.ones(1)}}
        >>> layer, earlier = block_masks({"blocks": {0: w, 1: w}, "head": w}, 1)
        >>> jax.tree.leaves(layer), jax.tree.leaves(earlier)
        ([False, True, False], [True, False, False])
    """
    target = f"{container}/{index}/{weight}"

    def earlier(path: str) -> bool:
        parts = path.split("/")
        return (len(parts) > 1 and parts[0] == container and parts[1].isdigit()
                and int(parts[1]) < index)

    layer = param_mask(params, lambda p: p == target)
    if not any(jax.tree.leaves(layer)):
        raise ValueError(f"no parameter {target!r}; parameters are {param_paths(params)}")
    return layer, param_mask(params, earlier)




def per_leaf_dict(tree: PyTree) -> dict[str, float]:
    """``{"blocks/0/proj/kernel": value, ...}``: a pytree of scalars as a flat dict of floats.

    Example:
        >>> per_leaf_dict({"a": {"b": 1.0}})
        {'a/b': 1.0}
    """
    return {path_str(p): float(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}
