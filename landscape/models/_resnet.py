"""He et al.'s CIFAR residual nets ``resnet{6n+2}`` (2016, Sec. 4.2), with or without shortcuts
(Li et al. 2018's "noshort"), any normalization."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from landscape.models._blocks import Block, Projection, _bias_before, _reject_taps
from landscape.normalization import make_normalization, uses_weight_norm

__all__ = ["ResNet", "resnet_blocks_per_stage"]

Array = jax.Array


def resnet_blocks_per_stage(depth: int) -> int:
    """n of a CIFAR ResNet of ``depth`` = 6n + 2 layers (He et al. 2016, Sec. 4.2); ValueError else."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), "
                         f"got {depth!r}")
    return (depth - 2) // 6


class _BasicBlock(nnx.Module):
    r"""He et al. (2016) basic block: ``relu(norm2(conv2(h)) + s(x))`` with
    ``h = relu(norm1(conv1(x)))`` (``conv1``, a :class:`Block`: 3×3 conv with ``stride``, norm,
    ReLU; ``conv2``: 3×3 conv, stride 1). The shortcut ``s`` is the identity when the shape is kept,
    a 1×1 conv with ``stride`` followed by the normalization when it changes (option B), and absent
    (``s(x) = 0``) with ``shortcut=False`` (Li et al. 2018's "noshort" nets)."""

    def __init__(self, cin: int, cout: int, *, stride: int, norm: str, norm_options: Mapping[str, Any],
                 shortcut: bool, init: str, rngs: nnx.Rngs, shortcut_rngs: nnx.Rngs):
        proj = dict(use_bias=_bias_before(norm), weight_norm=uses_weight_norm(norm), init=init)
        self.conv1 = Block(cin, cout, norm=norm, norm_options=norm_options, activation="relu",
                           kernel_size=(3, 3), init=init, stride=stride, rngs=rngs)
        self.conv2 = Projection(cout, cout, kernel_size=(3, 3), rngs=rngs, **proj)
        self.norm2 = make_normalization(norm, cout, rngs=rngs, **norm_options)
        project = shortcut and (stride != 1 or cin != cout)
        self.identity = shortcut and not project
        self.shortcut = (Projection(cin, cout, kernel_size=(1, 1), stride=stride, rngs=shortcut_rngs,
                                    **proj) if project else None)
        self.shortcut_norm = (make_normalization(norm, cout, rngs=shortcut_rngs, **norm_options)
                              if project else None)

    def __call__(self, x: Array, *, name: str, use_running_average: bool | None, rng: Array | None,
                 collect: MutableMapping[str, Array] | None) -> Array:
        keys = (None,) * 3 if rng is None else tuple(jax.random.split(rng, 3))
        h = self.conv1(x, name=f"{name}/conv1", use_running_average=use_running_average, rng=keys[0],
                       taps=None, collect=collect)
        y = self.conv2(h)
        z = self.norm2(y, use_running_average=use_running_average, rng=keys[1])
        if self.shortcut is not None:
            z = z + self.shortcut_norm(self.shortcut(x), use_running_average=use_running_average,
                                       rng=keys[2])
        elif self.identity:
            z = z + x
        if collect is not None:
            collect[f"{name}/pre_norm"] = y
            collect[name] = z
        return jax.nn.relu(z)


class ResNet(nnx.Module):
    r"""CIFAR residual network ``resnet{6n+2}`` (He et al. 2016, "Deep Residual Learning", Sec. 4.2).

    A 3×3 conv with 16·``width`` channels (+ norm, ReLU), then 3 stages of n basic blocks
    (:class:`_BasicBlock`, ``x ↦ relu(F(x) + x)``, F = conv–norm–relu–conv–norm) with 16, 32, 64
    (×``width``) channels, stride 2 in the first conv of stages 2 and 3, global average pooling and
    a dense head: 6n + 2 weighted layers. Downsampling shortcuts are **option B** (a 1×1 stride-2
    conv + the normalization; the paper's CIFAR nets use option A, zero-padding, so the parameter
    count is slightly above the paper's 0.27 M for ResNet-20: 0.272 M with BN). ``shortcut=False``
    drops every shortcut (Li et al. 2018, "Visualizing the Loss Landscape", the "noshort" nets).
    Convs are padded like PyTorch's (k//2), He-normal initialised (``init="he"``); a conv keeps its
    bias only when the normalization has no mean-subtracting shift (none, weight, rms, dyt). The
    shortcut convs draw their kernels from a separate key stream, so ``shortcut=True`` and
    ``shortcut=False`` models of one seed share every other parameter.

    ``collect`` receives ``stem`` / ``stem/pre_norm``, and for each block ``blockI`` (I = 0 … 3n−1,
    :meth:`block_names`) the input of its final ReLU (``F(x) + s(x)``) under ``blockI``, the input
    of its second normalization under ``blockI/pre_norm`` and its first conv's pair under
    ``blockI/conv1`` and ``blockI/conv1/pre_norm``. ``taps`` is not supported (ValueError).

    Example:
        >>> model = ResNet(20, width=0.25, norm="batch", rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 32, 32, 3))).shape
        (2, 10)
    """

    def __init__(self, depth: int = 20, *, width: float = 1.0, num_classes: int = 10,
                 input_shape: Sequence[int] = (32, 32, 3), norm: str = "batch",
                 norm_options: Mapping[str, Any] | None = None, shortcut: bool = True,
                 init: str = "he", rngs: nnx.Rngs):
        n = resnet_blocks_per_stage(depth)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if len(input_shape) != 3:
            raise ValueError(f"ResNet needs an (H, W, C) input shape, got {tuple(input_shape)}")
        options = dict(norm_options or {})
        shortcut_rngs = nnx.Rngs(rngs.params())  # drawn either way: same other parameters
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.stem = Block(int(input_shape[2]), widths[0], norm=norm, norm_options=options,
                          activation="relu", kernel_size=(3, 3), init=init, rngs=rngs)
        blocks, cin = [], widths[0]
        for stage, cout in enumerate(widths):
            for j in range(n):
                blocks.append(_BasicBlock(cin, cout, stride=2 if stage and not j else 1, norm=norm,
                                          norm_options=options, shortcut=bool(shortcut), init=init,
                                          rngs=rngs, shortcut_rngs=shortcut_rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = Projection(cin, num_classes, kernel_size=None, use_bias=True, rngs=rngs)
        self.depth = depth
        self.has_shortcuts = bool(shortcut)
        self.loss_kind = "cross_entropy"
        self.norm_name = norm

    def block_names(self) -> tuple[str, ...]:
        """Names of the residual blocks, in order (keys of ``collect``)."""
        return tuple(f"block{i}" for i in range(len(self.blocks)))

    def __call__(self, x: Array, *, use_running_average: bool | None = None, rng: Array | None = None,
                 taps: Mapping[str, Any] | None = None,
                 collect: MutableMapping[str, Array] | None = None) -> Array:
        _reject_taps(taps, "ResNet")
        key = (lambda i: None) if rng is None else (lambda i: jax.random.fold_in(rng, i))
        x = self.stem(x, name="stem", use_running_average=use_running_average, rng=key(0), taps=None,
                      collect=collect)
        for i, (name, block) in enumerate(zip(self.block_names(), self.blocks)):
            x = block(x, name=name, use_running_average=use_running_average, rng=key(i + 1),
                      collect=collect)
        return self.head(jnp.mean(x, axis=(1, 2)))
