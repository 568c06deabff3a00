"""Flax NNX models of the papers, built from one block: projection → normalization → activation.

- :class:`VGG` — Santurkar et al.'s VGG-like CNN on CIFAR-10 (plans "A" = VGG-11 … "D" = VGG-16,
  the 13 conv layers their figures index), any width multiplier, 32×32×3 or 28×28×1 input.
- :class:`MLP` — Ioffe & Szegedy's MNIST net: 3 hidden layers of 100 sigmoid units, the
  normalization before the sigmoid, bias dropped when normalized.
- :class:`DeepLinear` — the 25-layer, 10×10 deep linear network of Santurkar et al. (Sec. 3.2).

Every model is called as ``model(x, *, use_running_average=None, rng=None, taps=None,
collect=None)``: ``use_running_average`` picks the normalization mode for this call (``None``: the
module attribute set by ``model.train()`` / ``model.eval()``), ``rng`` feeds noisy normalizations
(folded with the block index), ``taps`` adds given arrays at a block's normalization input and
output (gradients with respect to them are ∂L/∂y and ∂L/∂z, used by :mod:`landscape.theory`), and
``collect`` (a dict) receives each block's normalization input ``name/pre_norm`` and output
``name`` (the input to the nonlinearity).
"""

from __future__ import annotations

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

__all__ = ["VGG", "VGG_PLANS", "MLP", "DeepLinear", "Projection", "Block", "build_model", "model_names"]

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
    raise ValueError(f"unknown init {init!r}; expected 'glorot' or 'gaussian'")


def conv3x3(x: Array, w: Array) -> Array:
    """A stride-1 "SAME" convolution of NHWC ``x`` with an HWIO kernel ``w``."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Projection(nnx.Module):
    r"""A 3×3 "SAME" convolution (``kernel_size`` given) or a dense layer, optionally weight-normalized.

    Weight normalization (Salimans & Kingma 2016): ``W_{·k} = g_k · V_{·k} / ‖V_{·k}‖₂`` per output
    unit k, with ``g`` initialised to ``‖V_{·k}‖`` so that the initial function is unchanged.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: tuple[int, int] | None,
                 use_bias: bool, weight_norm: bool = False, init: str = "glorot",
                 init_std: float = 0.1, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        shape = (*kernel_size, in_features, out_features) if kernel_size else (in_features, out_features)
        kernel = _initializer(init, init_std)(rngs.params(), shape, dtype)
        self.is_conv = kernel_size is not None
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
        """The layer's bilinear product: ``conv3x3(x, w)`` or ``x @ w`` (the one place that
        multiplies; ``benchmarks/emulated_precision.py`` swaps it for coarser arithmetic)."""
        return conv3x3(x, w) if self.is_conv else x @ w

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
                 init_std: float = 0.1, use_bias: bool | None = None, rngs: nnx.Rngs):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(_ACTIVATIONS)}")
        if use_bias is None:  # a normalization with a shift makes the bias redundant
            use_bias = norm in ("none", "weight", "rms")
        self.proj = Projection(in_features, out_features, kernel_size=kernel_size, use_bias=use_bias,
                               weight_norm=uses_weight_norm(norm), init=init, init_std=init_std,
                               rngs=rngs)
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


def model_names() -> tuple[str, ...]:
    """Names :func:`build_model` accepts."""
    return ("vgg5", "vgg11", "vgg13", "vgg16", "mlp", "dln")


def build_model(name: str, *, norm: str = "batch", input_shape: Sequence[int] = (32, 32, 3),
                num_classes: int = 10, width: float = 1.0, seed: int = 0,
                norm_options: Mapping[str, Any] | None = None, **options: Any) -> nnx.Module:
    """Build a model by name (``vgg5``, ``vgg11``, ``vgg13``, ``vgg16``, ``mlp``, ``dln``), or a
    user's NNX model factory named ``"package.module:function"`` / ``"file.py:function"``,
    called with these same keyword arguments (``norm``, ``input_shape``, ``num_classes``,
    ``width``, ``seed``, ``norm_options`` and the options). Its ``__call__(x, *,
    use_running_average=None)`` forwards the flag to its normalization layers (see
    ``examples/custom_model.py``); ``loss_kind`` (default ``"cross_entropy"``) names its loss.

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
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(model_names())}")


def has_batch_statistics(model: nnx.Module) -> bool:
    """True when some block of ``model`` normalizes with batch statistics."""
    return uses_batch_statistics(getattr(model, "norm_name", "none"))
