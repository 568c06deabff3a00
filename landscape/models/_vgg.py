"""Santurkar et al.'s VGG-like CNN on CIFAR-10 (plans "A" = VGG-11 … "D" = VGG-16, the 13 conv
layers their figures index), any width multiplier, 32×32×3 or 28×28×1 input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flax import nnx

from landscape.models._blocks import Block, Projection, _Sequential

__all__ = ["VGG", "VGG_PLANS"]

VGG_PLANS: dict[str, tuple[int | str, ...]] = {
    "S": (64, "M", 128, "M", 256, 256, "M"),  # a short VGG-style net (4 conv) for CPU defaults
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}
_PLAN_ALIASES = {"vgg5": "S", "vgg11": "A", "vgg13": "B", "vgg16": "D"}


class VGG(_Sequential):
    """VGG-style CNN (Simonyan & Zisserman 2015) as used by Santurkar et al. (2018, App. A.1).

    ``plan`` is a VGG letter ("A" = VGG-11, "B" = VGG-13, "D" = VGG-16; "S" = a 4-conv "VGG-5" for
    quick CPU runs) or an explicit tuple of
    widths and "M" (max-pool). Widths are scaled by ``width`` (0.25 gives the narrow 16…128 net),
    every conv is 3×3 "SAME" followed by the normalization and a ReLU, then a linear classifier.
    A max-pool is skipped once the feature map is 1×1, so 28×28 inputs work too. Glorot init.

    Example:
        >>> model = VGG("A", width=0.25, norm="batch", rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 32, 32, 3))).shape
        (2, 10)
    """

    def __init__(self, plan: str | Sequence[int | str] = "A", *, width: float = 1.0,
                 num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), norm: str = "batch",
                 norm_options: Mapping[str, Any] | None = None, rngs: nnx.Rngs):
        if isinstance(plan, str):
            key = _PLAN_ALIASES.get(plan.lower(), plan.upper())
            if key not in VGG_PLANS:
                raise ValueError(f"unknown VGG plan {plan!r}; expected one of S, A, B, D, "
                                 "vgg5, vgg11, vgg13, vgg16")
            plan = VGG_PLANS[key]
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if len(input_shape) != 3:
            raise ValueError(f"VGG needs an (H, W, C) input shape, got {tuple(input_shape)}")
        size, cin = min(input_shape[:2]), input_shape[2]
        blocks, pools = [], []
        for item in plan:
            if item == "M":
                if not pools:
                    raise ValueError("a VGG plan cannot start with a max-pool")
                if size >= 2:
                    pools[-1] = True
                    size //= 2
                continue
            cout = max(1, round(int(item) * width))
            blocks.append(Block(cin, cout, norm=norm, norm_options=norm_options, activation="relu",
                                kernel_size=(3, 3), rngs=rngs))
            pools.append(False)
            cin = cout
        self.blocks = nnx.List(blocks)
        self.pool_after = tuple(pools)
        self.head = Projection(cin * size * size, num_classes, kernel_size=None, use_bias=True, rngs=rngs)
        self.loss_kind = "cross_entropy"
        self.norm_name = norm
