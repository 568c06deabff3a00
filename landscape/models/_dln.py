"""The 25-layer, 10×10 deep linear network of Santurkar et al. (2018, Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from landscape.models._blocks import Block, _Sequential

__all__ = ["DeepLinear"]


class DeepLinear(_Sequential):
    """Deep linear network ``x ↦ W_k ⋯ W_1 x`` (Santurkar et al. 2018, Sec. 3.2; k = 25, 10×10).

    Trained on ``‖W_k⋯W_1 x − A x‖²`` (see :func:`landscape.data.make_dln_regression`), summed over
    the full batch with ``loss_reduction="sum"`` (the paper's printed objective; then its lr 1e-6
    sits 2–3× below vanilla GD's blow-up, like its VGG lr) or averaged with ``"mean"`` (then lr 1e-6
    is ~1000× below it and BN ends *rougher* than vanilla; see README, "The deep linear network").
    The paper does not say where BN sits: ``norm_position="after_but_last"`` (default) normalizes
    the output of every layer but the last, ``"after_all"`` every layer. No layer has a bias.

    Example:
        >>> model = DeepLinear(depth=25, dim=10, rngs=nnx.Rngs(0))
        >>> model(jnp.ones((3, 10))).shape
        (3, 10)
    """

    def __init__(self, *, depth: int = 25, dim: int = 10, norm: str = "none",
                 norm_options: Mapping[str, Any] | None = None,
                 loss_reduction: str = "mean", norm_position: str = "after_but_last",
                 rngs: nnx.Rngs):
        if depth < 1 or dim < 1:
            raise ValueError(f"depth and dim must be >= 1, got depth={depth}, dim={dim}")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        if norm_position not in ("after_but_last", "after_all"):
            raise ValueError("norm_position must be 'after_but_last' or 'after_all', got "
                             f"{norm_position!r}")
        # never a bias: x ↦ W_k ⋯ W_1 x stays linear (only a normalization's own shift, e.g. BN's β,
        # adds an offset); weight and RMS normalization have none
        norms = [norm] * (depth - 1) + [norm if norm_position == "after_all" else "none"]
        self.blocks = nnx.List([Block(dim, dim, norm=n, norm_options=norm_options,
                                      activation="identity", use_bias=False, rngs=rngs)
                                for n in norms])
        self.pool_after = (False,) * depth
        self.head = None
        self.loss_kind = "mse_sum" if loss_reduction == "sum" else "mse"
        self.norm_name = norm
