"""The one building block of every model here: projection → normalization → activation.

:class:`Projection` (a convolution or dense layer, optionally weight-normalized), :class:`Block`
(``activation(norm(projection(x)))``, with the ``taps`` / ``collect`` protocol of
:mod:`landscape.models`) and ``_Sequential``, the runner of the VGG, MLP and deep linear network.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from landscape.normalization import make_normalization, uses_weight_norm

__all__ = ["Block", "Projection", "conv3x3", "conv_strided"]

Array = jax.Array

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


def _reject_taps(taps: Mapping[str, Any] | None, model: str) -> None:
    if taps:
        raise ValueError(f"{model} does not take taps (only VGG, MLP and DeepLinear blocks do)")
