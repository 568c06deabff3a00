"""Ioffe & Szegedy's MNIST net: 3 hidden layers of 100 sigmoid units, the normalization before the
sigmoid, bias dropped when normalized (and Cohen et al.'s tanh MLP trained by squared error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from landscape.models._blocks import Block, Projection, _Sequential

__all__ = ["MLP"]

Array = jax.Array


class MLP(_Sequential):
    """Fully connected classifier: ``hidden`` blocks (Ioffe & Szegedy 2015, Fig. 1: 3 × 100 sigmoid).

    Inputs of any shape are flattened. The normalization sits before the activation; the bias is
    dropped when the normalization has its own shift. ``activation`` is one of relu, sigmoid, tanh,
    identity; ``loss_kind="mse_onehot"`` trains by squared error on one-hot targets (Cohen et al.
    2021: tanh, two hidden layers of 200, MSE) instead of cross-entropy.

    Example:
        >>> model = MLP(784, norm="batch", rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((4, 28, 28, 1))).shape
        (4, 10)
    """

    def __init__(self, in_features: int, *, hidden: Sequence[int] = (100, 100, 100),
                 num_classes: int = 10, activation: str = "sigmoid", norm: str = "batch",
                 norm_options: Mapping[str, Any] | None = None, init: str = "glorot",
                 init_std: float = 0.1, loss_kind: str = "cross_entropy", rngs: nnx.Rngs):
        if loss_kind not in ("cross_entropy", "mse_onehot"):
            raise ValueError(f"unknown loss_kind {loss_kind!r}; expected 'cross_entropy' or "
                             "'mse_onehot'")
        dims = (in_features, *hidden)
        self.blocks = nnx.List([
            Block(a, b, norm=norm, norm_options=norm_options, activation=activation, init=init,
                  init_std=init_std, rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])
        ])
        self.pool_after = (False,) * len(hidden)
        self.head = Projection(dims[-1], num_classes, kernel_size=None, use_bias=True, init=init,
                               init_std=init_std, rngs=rngs)
        self.loss_kind = loss_kind
        self.norm_name = norm

    def _prepare(self, x: Array) -> Array:
        return x.reshape(x.shape[0], -1)
