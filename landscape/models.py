"""Flax NNX models of the papers, built from one block: projection → normalization → activation.

- :class:`VGG` — Santurkar et al.'s VGG-like CNN on CIFAR-10 (plans "A" = VGG-11 … "D" = VGG-16,
  the 13 conv layers their figures index), any width multiplier, 32×32×3 or 28×28×1 input.
- :class:`MLP` — Ioffe & Szegedy's MNIST net: 3 hidden layers of 100 sigmoid units, the
  normalization before the sigmoid, bias dropped when normalized.
- :class:`DeepLinear` — the 25-layer, 10×10 deep linear network of Santurkar et al. (Sec. 3.2).
- :class:`ResNet` — He et al.'s CIFAR residual nets ``resnet{6n+2}`` (2016, Sec. 4.2), with or
  without shortcuts (Li et al. 2018's "noshort"), any normalization.
- :class:`TransformerLM` — a decoder-only transformer language model, Pre-LN or Post-LN (Xiong et
  al. 2020), normalization layer / rms / dyt / none, optional QK-norm.

Every model is called as ``model(x, *, use_running_average=None, rng=None, taps=None,
collect=None)``: ``use_running_average`` picks the normalization mode for this call (``None``: the
module attribute set by ``model.train()`` / ``model.eval()``), ``rng`` feeds noisy normalizations
(folded with the block index), ``taps`` adds given arrays at a block's normalization input and
output (gradients with respect to them are ∂L/∂y and ∂L/∂z, used by :mod:`landscape.theory`), and
``collect`` (a dict) receives each block's normalization input ``name/pre_norm`` and output
``name`` (the input to the nonlinearity). :class:`ResNet` and :class:`TransformerLM` record per
residual block instead (see their docstrings) and reject ``taps``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from landscape.config import is_factory_name
from landscape.factories import load_callable

from landscape.normalization import (
    make_normalization,
    uses_batch_statistics,
    uses_weight_norm,
)

__all__ = ["VGG", "VGG_PLANS", "MLP", "DeepLinear", "ResNet", "TransformerLM", "TransformerBlock",
           "CausalSelfAttention", "Projection", "Block", "build_model", "model_names", "is_model_name",
           "resnet_blocks_per_stage", "sinusoidal_positions"]

Array = jax.Array

VGG_PLANS: dict[str, tuple[int | str, ...]] = {
    "S": (64, "M", 128, "M", 256, 256, "M"),  # a short VGG-style net (4 conv) for CPU defaults
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}
_PLAN_ALIASES = {"vgg5": "S", "vgg11": "A", "vgg13": "B", "vgg16": "D"}

_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}


def _initializer(init: str, std: float):
    if init == "glorot":
        return nnx.initializers.glorot_uniform()
    if init == "gaussian":
        return nnx.initializers.normal(std)
    if init == "he":  # He et al. 2015: variance 2/fan_in (JAX's he_normal: a truncated normal)
        return nnx.initializers.he_normal()
    raise ValueError(f"unknown init {init!r}; expected 'glorot', 'gaussian' or 'he'")


def _bias_before(norm: str) -> bool:
    """Whether a projection followed by ``norm`` keeps its bias: not when the normalization
    subtracts a mean and adds its own shift (batch, lp, layer, group), else yes (none, weight, rms,
    and dyt, whose tanh makes a bias before it differ from its β after)."""
    return norm in ("none", "weight", "rms", "dyt")


def conv3x3(x: Array, w: Array) -> Array:
    """A stride-1 "SAME" convolution of NHWC ``x`` with an HWIO kernel ``w``."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_strided(x: Array, w: Array, stride: int) -> Array:
    """A convolution of NHWC ``x`` with an odd-sized HWIO kernel ``w``, padded by ``k // 2`` on
    each side (PyTorch's ``padding=k//2``): output size ⌈size / stride⌉, and a 3×3 and a 1×1 kernel
    of the same stride sample the same centres (a ResNet block and its projection shortcut align)."""
    pad = [(k // 2, k // 2) for k in w.shape[:2]]
    return jax.lax.conv_general_dilated(x, w, (stride, stride), pad,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Projection(nnx.Module):
    r"""A convolution (``kernel_size`` given; "SAME", or padded by k//2 with ``stride`` > 1) or a dense
    layer (on the last axis of inputs of any rank), optionally weight-normalized.

    Weight normalization (Salimans & Kingma 2016): ``W_{·k} = g_k · V_{·k} / ‖V_{·k}‖₂`` per output
    unit k, with ``g`` initialised to ``‖V_{·k}‖`` so that the initial function is unchanged.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: tuple[int, int] | None,
                 use_bias: bool, weight_norm: bool = False, init: str = "glorot",
                 init_std: float = 0.1, stride: int = 1, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        shape = (*kernel_size, in_features, out_features) if kernel_size else (in_features, out_features)
        kernel = _initializer(init, init_std)(rngs.params(), shape, dtype)
        self.is_conv = kernel_size is not None
        self.stride = int(stride)
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(jnp.zeros((out_features,), dtype)) if use_bias else None
        self.gain = nnx.Param(self._norm(kernel)) if weight_norm else None

    @staticmethod
    def _norm(v: Array) -> Array:
        return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))))

    def weight(self) -> Array:
        """The effective kernel (after weight normalization, when used)."""
        w = self.kernel[...]
        if self.gain is not None:
            scale = self.gain[...] / self._norm(w)  # (out,) against (…, in, out): explicit rank
            w = w * jnp.reshape(scale, (1,) * (w.ndim - 1) + scale.shape)
        return w

    def product(self, x: Array, w: Array) -> Array:
        """The layer's bilinear product: ``conv3x3(x, w)`` (``conv_strided`` when ``stride`` > 1) or
        ``x @ w`` (the one place that multiplies; ``benchmarks/emulated_precision.py`` swaps it for
        coarser arithmetic)."""
        if not self.is_conv:
            return x @ w
        return conv3x3(x, w) if self.stride == 1 else conv_strided(x, w, self.stride)

    def __call__(self, x: Array) -> Array:
        y = self.product(x, self.weight())
        if self.bias is None:
            return y
        return y + jnp.reshape(self.bias[...], (1,) * (y.ndim - 1) + self.bias[...].shape)


class Block(nnx.Module):
    """``activation(norm(projection(x)))`` — the one building block of every model here."""

    def __init__(self, in_features: int, out_features: int, *, norm: str,
                 norm_options: Mapping[str, Any] | None = None, activation: str = "relu",
                 kernel_size: tuple[int, int] | None = None, init: str = "glorot",
                 init_std: float = 0.1, use_bias: bool | None = None, stride: int = 1,
                 rngs: nnx.Rngs):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(_ACTIVATIONS)}")
        if use_bias is None:  # a normalization with a shift makes the bias redundant
            use_bias = _bias_before(norm)
        self.proj = Projection(in_features, out_features, kernel_size=kernel_size, use_bias=use_bias,
                               weight_norm=uses_weight_norm(norm), init=init, init_std=init_std,
                               stride=stride, rngs=rngs)
        self.norm = make_normalization(norm, out_features, rngs=rngs, **dict(norm_options or {}))
        self.activation = activation

    def __call__(self, x: Array, *, name: str, use_running_average: bool | None, rng: Array | None,
                 taps: Mapping[str, Any] | None, collect: MutableMapping[str, Array] | None) -> Array:
        y = self.proj(x)
        tap = taps.get(name) if taps else None
        if tap is not None:
            y = y + tap["pre_norm"]
        z = self.norm(y, use_running_average=use_running_average, rng=rng)
        if tap is not None:
            z = z + tap["post_norm"]
        if collect is not None:
            collect[f"{name}/pre_norm"] = y
            collect[name] = z
        return _ACTIVATIONS[self.activation](z)


class _Sequential(nnx.Module):
    """Runs ``self.blocks`` (with optional 2×2 max-pools after some) and then ``self.head``."""

    blocks: nnx.List
    pool_after: tuple[bool, ...]
    head: Projection | None
    loss_kind: str

    def block_names(self) -> tuple[str, ...]:
        """Names of the blocks, in order (keys of ``taps`` / ``collect``)."""
        return tuple(f"block{i}" for i in range(len(self.blocks)))

    def _prepare(self, x: Array) -> Array:
        return x

    def __call__(self, x: Array, *, use_running_average: bool | None = None, rng: Array | None = None,
                 taps: Mapping[str, Any] | None = None,
                 collect: MutableMapping[str, Array] | None = None) -> Array:
        x = self._prepare(x)
        for i, (name, block) in enumerate(zip(self.block_names(), self.blocks)):
            key = None if rng is None else jax.random.fold_in(rng, i)
            x = block(x, name=name, use_running_average=use_running_average, rng=key, taps=taps,
                      collect=collect)
            if self.pool_after[i]:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        if self.head is None:
            return x
        return self.head(x.reshape(x.shape[0], -1))


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


def _reject_taps(taps: Mapping[str, Any] | None, model: str) -> None:
    if taps:
        raise ValueError(f"{model} does not take taps (only VGG, MLP and DeepLinear blocks do)")


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


#: Normalizations a transformer accepts (no batch statistics: they would mix tokens and examples).
TRANSFORMER_NORMS = ("layer", "rms", "dyt", "none")


def _token_norm(name: str, features: int, options: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    """A per-token normalization of the last axis: layer / rms with ``axes="last"``."""
    if name not in TRANSFORMER_NORMS:
        raise ValueError(f"transformer normalization must be one of {', '.join(TRANSFORMER_NORMS)}, "
                         f"got {name!r}")
    options = dict(options)
    if name in ("layer", "rms"):
        if options.setdefault("axes", "last") != "last":
            raise ValueError(f"a transformer normalizes each token over its features: {name} needs "
                             f"axes='last', got {options['axes']!r}")
    return make_normalization(name, features, rngs=rngs, **options)


def sinusoidal_positions(length: int, d: int, dtype: Any = jnp.float32) -> Array:
    """Vaswani et al. (2017): ``P[p, 2i] = sin(p / 10000^{2i/d})``, ``P[p, 2i+1] = cos(…)``; shape
    (length, d)."""
    angle = (jnp.arange(length, dtype=jnp.float32)[:, None]
             / jnp.power(10000.0, jnp.arange(0, d, 2, dtype=jnp.float32) / d)[None, :])
    pe = jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(length, -1)[:, :d]
    return pe.astype(dtype)


class CausalSelfAttention(nnx.Module):
    r"""Multi-head causal self-attention, written out (h heads, head size k = d / h).

    ``q_{bthk} = Σ_d x_{btd} Wq_{dhk} + bq_{hk}`` (likewise k, v); with QK-norm q and k are then
    normalized per head over k (separate layers ``q_norm``, ``k_norm``, γ/β shared by the heads;
    Henry et al. 2020, Dehghani et al. 2023). ``a_{bhts} = softmax_{s ≤ t}(q_{bth}·k_{bsh} / √k)``
    (entries s > t set to the dtype's lowest value, so their weights are exactly 0),
    ``o_{btd} = Σ_{h,k} (Σ_s a_{bhts} v_{bshk}) Wo_{hkd} + bo_d``.

    Layouts: ``wq``, ``wk``, ``wv`` (d_model, heads, head_dim); ``wo`` (heads, head_dim, d_model);
    ``bq``, ``bk``, ``bv`` (heads, head_dim); ``bo`` (d_model,). Kernels N(0, ``init_std``²),
    biases 0. No dropout.
    """

    def __init__(self, d_model: int, heads: int, *, qk_norm: str | None = None,
                 qk_norm_options: Mapping[str, Any] | None = None, init_std: float = 0.02,
                 rngs: nnx.Rngs):
        k = d_model // heads
        init = nnx.initializers.normal(init_std)
        self.wq, self.wk, self.wv = (nnx.Param(init(rngs.params(), (d_model, heads, k)))
                                     for _ in range(3))
        self.wo = nnx.Param(init(rngs.params(), (heads, k, d_model)))
        self.bq, self.bk, self.bv = (nnx.Param(jnp.zeros((heads, k))) for _ in range(3))
        self.bo = nnx.Param(jnp.zeros((d_model,)))
        options = dict(qk_norm_options or {})
        self.q_norm = _token_norm(qk_norm, k, options, rngs) if qk_norm else None
        self.k_norm = _token_norm(qk_norm, k, options, rngs) if qk_norm else None

    def __call__(self, x: Array, *, use_running_average: bool | None = None) -> Array:
        def heads(w, b):
            return jnp.einsum("btd,dhk->bthk", x, w[...]) + b[...][None, None]

        q, k, v = heads(self.wq, self.bq), heads(self.wk, self.bk), heads(self.wv, self.bv)
        if self.q_norm is not None:
            q = self.q_norm(q, use_running_average=use_running_average)
            k = self.k_norm(k, use_running_average=use_running_average)
        logits = jnp.einsum("bthk,bshk->bhts", q, k) / math.sqrt(q.shape[-1])
        t = x.shape[1]
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))[None, None]
        logits = jnp.where(causal, logits, jnp.finfo(logits.dtype).min)
        a = jax.nn.softmax(logits, axis=-1)
        o = jnp.einsum("bhts,bshk->bthk", a, v)
        return jnp.einsum("bthk,hkd->btd", o, self.wo[...]) + self.bo[...][None, None]


class TransformerBlock(nnx.Module):
    r"""One decoder layer, F₁ = attention, F₂ = MLP (``d → mlp_ratio·d → d``, GELU, tanh form).

    Pre-LN: ``x ← x + F₁(N₁(x))``, ``x ← x + F₂(N₂(x))``; Post-LN: ``x ← N₁(x + F₁(x))``,
    ``x ← N₂(x + F₂(x))`` (Xiong et al. 2020, "On Layer Normalization in the Transformer
    Architecture"). N is the per-token normalization (layer / rms / dyt / none).
    """

    def __init__(self, d_model: int, heads: int, *, mlp_ratio: int = 4, norm: str = "layer",
                 norm_options: Mapping[str, Any] | None = None, norm_position: str = "pre",
                 qk_norm: str | None = None, qk_norm_options: Mapping[str, Any] | None = None,
                 init_std: float = 0.02, rngs: nnx.Rngs):
        options = dict(norm_options or {})
        dense = dict(kernel_size=None, use_bias=True, init="gaussian", init_std=init_std, rngs=rngs)
        self.norm1 = _token_norm(norm, d_model, options, rngs)
        self.attn = CausalSelfAttention(d_model, heads, qk_norm=qk_norm, qk_norm_options=qk_norm_options,
                                        init_std=init_std, rngs=rngs)
        self.norm2 = _token_norm(norm, d_model, options, rngs)
        self.mlp_in = Projection(d_model, mlp_ratio * d_model, **dense)
        self.mlp_out = Projection(mlp_ratio * d_model, d_model, **dense)
        self.pre = norm_position == "pre"

    def __call__(self, x: Array, *, use_running_average: bool | None = None) -> Array:
        def n1(y):
            return self.norm1(y, use_running_average=use_running_average)

        def n2(y):
            return self.norm2(y, use_running_average=use_running_average)

        def attn(y):
            return self.attn(y, use_running_average=use_running_average)

        def mlp(y):
            return self.mlp_out(jax.nn.gelu(self.mlp_in(y)))

        if self.pre:
            x = x + attn(n1(x))
            return x + mlp(n2(x))
        x = n1(x + attn(x))
        return n2(x + mlp(x))


class TransformerLM(nnx.Module):
    r"""Decoder-only transformer language model: int tokens (B, T) → logits (B, T, vocab).

    ``x⁰_t = E[token_t] + P[t]`` (E: ``embed``, (vocab, d_model); P learned, ``pos`` (context,
    d_model), or sinusoidal, not a parameter), then ``layers`` :class:`TransformerBlock`\ s, then —
    Pre-LN only — a final normalization ``final_norm`` (Xiong et al. 2020; ``None`` for Post-LN),
    then logits ``x Eᵀ`` (``tie_embeddings=True``: the one ``embed`` array, ``head`` is ``None``)
    or ``x W`` with ``head`` (d_model, vocab). No biases in the output, no dropout; embeddings and
    kernels N(0, ``init_std``²) (GPT-2's 0.02). T may be anything from 1 to ``context``; each
    position sees only positions ≤ itself (causal attention, per-token normalization).

    ``norm`` ∈ layer, rms (built with ``axes="last"``: statistics per token over d_model), dyt,
    none; ``norm_options`` go to every such layer. ``qk_norm=True`` normalizes queries and keys per
    head with ``qk_norm_kind`` (default: ``norm``, or ``"layer"`` when ``norm="none"``); it gets
    ``norm_options`` only when it is the same kind as ``norm``. ``loss_kind = "cross_entropy"``:
    :func:`landscape.bridge.loss_value` takes (B, T, V) logits and (B, T) int targets and averages
    over all B·T positions. ``collect`` receives the residual stream after layer I as ``blockI``;
    ``taps`` is not supported.

    Example:
        >>> model = TransformerLM(vocab=11, context=8, layers=1, d_model=16, heads=2, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 8), jnp.int32)).shape
        (2, 8, 11)
    """

    def __init__(self, *, vocab: int, context: int, layers: int = 2, d_model: int = 64, heads: int = 4,
                 mlp_ratio: int = 4, norm: str = "layer", norm_options: Mapping[str, Any] | None = None,
                 norm_position: str = "pre", qk_norm: bool = False, qk_norm_kind: str | None = None,
                 positions: str = "learned", tie_embeddings: bool = False, init_std: float = 0.02,
                 rngs: nnx.Rngs):
        for field, value in (("vocab", vocab), ("context", context), ("layers", layers),
                             ("d_model", d_model), ("heads", heads), ("mlp_ratio", mlp_ratio)):
            if int(value) < 1:
                raise ValueError(f"transformer {field} must be >= 1, got {value}")
        if d_model % heads:
            raise ValueError(f"transformer heads={heads} must divide d_model={d_model}")
        if norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {norm_position!r}")
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        options = dict(norm_options or {})
        qk_kind = (qk_norm_kind or (norm if norm != "none" else "layer")) if qk_norm else None
        init = nnx.initializers.normal(init_std)
        self.embed = nnx.Param(init(rngs.params(), (vocab, d_model)))
        self.pos = nnx.Param(init(rngs.params(), (context, d_model))) if positions == "learned" else None
        self.blocks = nnx.List([
            TransformerBlock(d_model, heads, mlp_ratio=mlp_ratio, norm=norm, norm_options=options,
                             norm_position=norm_position, qk_norm=qk_kind,
                             qk_norm_options=options if qk_kind == norm else {}, init_std=init_std,
                             rngs=rngs)
            for _ in range(layers)])
        self.final_norm = _token_norm(norm, d_model, options, rngs) if norm_position == "pre" else None
        self.head = None if tie_embeddings else nnx.Param(init(rngs.params(), (d_model, vocab)))
        self.vocab, self.context, self.d_model, self.heads = vocab, context, d_model, heads
        self.norm_position, self.positions = norm_position, positions
        self.loss_kind = "cross_entropy"
        self.norm_name = norm

    def block_names(self) -> tuple[str, ...]:
        """Names of the layers, in order (keys of ``collect``)."""
        return tuple(f"block{i}" for i in range(len(self.blocks)))

    def __call__(self, tokens: Array, *, use_running_average: bool | None = None,
                 rng: Array | None = None, taps: Mapping[str, Any] | None = None,
                 collect: MutableMapping[str, Array] | None = None) -> Array:
        del rng  # deterministic: no dropout, no noisy normalization
        _reject_taps(taps, "TransformerLM")
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.context:
            raise ValueError(f"TransformerLM takes int tokens (B, T) with 1 <= T <= context="
                             f"{self.context}, got shape {tokens.shape}")
        embed = self.embed[...]
        x = jnp.take(embed, tokens, axis=0)
        t = tokens.shape[1]
        if self.pos is not None:
            x = x + self.pos[...][:t][None]
        else:
            x = x + sinusoidal_positions(t, self.d_model, x.dtype)[None]
        for name, block in zip(self.block_names(), self.blocks):
            x = block(x, use_running_average=use_running_average)
            if collect is not None:
                collect[name] = x
        if self.final_norm is not None:
            x = self.final_norm(x, use_running_average=use_running_average)
        if self.head is None:
            return jnp.einsum("btd,vd->btv", x, embed)
        return jnp.einsum("btd,dv->btv", x, self.head[...])


_RESNET_NAME = re.compile(r"resnet(\d+)")


def model_names() -> tuple[str, ...]:
    """Names :func:`build_model` accepts (every ``resnetN`` with N = 6n + 2 too, not only the
    depths of He et al.'s Table 6 listed here; :func:`is_model_name` tells)."""
    return ("vgg5", "vgg11", "vgg13", "vgg16", "mlp", "dln", "resnet20", "resnet32", "resnet44",
            "resnet56", "resnet110", "transformer")


def is_model_name(name: str) -> bool:
    """True for a name :func:`build_model` builds itself (not a factory): :func:`model_names` and
    any ``resnetN`` with N = 6n + 2, n ≥ 1."""
    match = _RESNET_NAME.fullmatch(name)
    if match:
        n = int(match[1])
        return n >= 8 and (n - 2) % 6 == 0
    return name in model_names()


def _build_transformer(*, input_shape: Sequence[int], num_classes: int, width: float, norm: str,
                       norm_options: Mapping[str, Any] | None, rngs: nnx.Rngs,
                       options: dict[str, Any]) -> TransformerLM:
    """:func:`build_model`'s ``"transformer"``: context from ``input_shape = (context,)`` (or the
    ``context`` option), vocab = ``num_classes`` (or the ``vocab`` option), d_model × ``width``."""
    shape = tuple(int(d) for d in input_shape)
    context = options.pop("context", None)
    if context is None:
        if len(shape) != 1:
            raise ValueError(f"transformer needs input_shape=(context,) or context=, got {shape}")
        context = shape[0]
    elif len(shape) == 1 and shape[0] != int(context):
        raise ValueError(f"transformer context={context} disagrees with input_shape={shape}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    d_model = max(1, round(int(options.pop("d_model", 64)) * width))
    vocab = options.pop("vocab", num_classes)
    return TransformerLM(vocab=int(vocab), context=int(context), d_model=d_model, norm=norm,
                         norm_options=norm_options, rngs=rngs, **options)


def build_model(name: str, *, norm: str = "batch", input_shape: Sequence[int] = (32, 32, 3),
                num_classes: int = 10, width: float = 1.0, seed: int = 0,
                norm_options: Mapping[str, Any] | None = None, **options: Any) -> nnx.Module:
    """Build a model by name (``vgg5``, ``vgg11``, ``vgg13``, ``vgg16``, ``mlp``, ``dln``,
    ``resnetN`` with N = 6n + 2, ``transformer``), or a user's NNX model factory named
    ``"package.module:function"`` / ``"file.py:function"``,
    called with these same keyword arguments (``norm``, ``input_shape``, ``num_classes``,
    ``width``, ``seed``, ``norm_options`` and the options). Its ``__call__(x, *,
    use_running_average=None)`` forwards the flag to its normalization layers (see
    ``examples/custom_model.py``); ``loss_kind`` (default ``"cross_entropy"``) names its loss.

    ``resnetN``: :class:`ResNet` of depth N, channels 16/32/64 × ``width``; options ``shortcut``
    (False: Li et al.'s noshort net), ``init``. ``transformer``: :class:`TransformerLM` with
    ``input_shape = (context,)`` and ``num_classes`` = the vocabulary; options ``layers`` (2),
    ``d_model`` (64, **multiplied by** ``width`` like the other models' channels; ``heads`` must
    divide the result), ``heads`` (4), ``mlp_ratio`` (4), ``norm_position`` ("pre"/"post"),
    ``qk_norm``, ``qk_norm_kind``, ``positions`` ("learned"/"sinusoidal"), ``tie_embeddings``,
    ``init_std``, and ``context`` / ``vocab`` (override ``input_shape`` / ``num_classes``).
    ``norm`` must then be layer, rms, dyt or none.

    Example:
        >>> build_model("vgg11", width=0.25, norm="none").loss_kind
        'cross_entropy'
    """
    if is_factory_name(name):
        factory = load_callable(name, "model")
        model = factory(norm=norm, input_shape=tuple(input_shape), num_classes=num_classes,
                        width=width, seed=seed, norm_options=dict(norm_options or {}), **options)
        if not isinstance(model, nnx.Module):
            raise ValueError(f"{name} returned {type(model).__name__}, not an nnx.Module")
        return model
    rngs = nnx.Rngs(seed)
    if name in _PLAN_ALIASES:
        return VGG(name, width=width, num_classes=num_classes, input_shape=input_shape, norm=norm,
                   norm_options=norm_options, rngs=rngs, **options)
    if name == "mlp":
        in_features = 1
        for d in input_shape:
            in_features *= int(d)
        hidden = options.pop("hidden", (100, 100, 100))
        hidden = tuple(max(1, round(h * width)) for h in hidden)
        return MLP(in_features, hidden=hidden, num_classes=num_classes, norm=norm,
                   norm_options=norm_options, rngs=rngs, **options)
    if name == "dln":
        return DeepLinear(norm=norm, norm_options=norm_options, rngs=rngs, **options)
    match = _RESNET_NAME.fullmatch(name)
    if match:
        return ResNet(int(match[1]), width=width, num_classes=num_classes, input_shape=input_shape,
                      norm=norm, norm_options=norm_options, rngs=rngs, **options)
    if name == "transformer":
        return _build_transformer(input_shape=input_shape, num_classes=num_classes, width=width,
                                  norm=norm, norm_options=norm_options, rngs=rngs, options=options)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(model_names())} "
                     "(or resnetN with N = 6n+2)")


def has_batch_statistics(model: nnx.Module) -> bool:
    """True when some block of ``model`` normalizes with batch statistics."""
    return uses_batch_statistics(getattr(model, "norm_name", "none"))
