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

One architecture per module (``_vgg``, ``_mlp``, ``_dln``, ``_resnet``, ``_transformer``), all
built from ``_blocks``; this module holds the registry (:func:`build_model`) and the public API.
The names :func:`build_model` accepts live in :mod:`landscape.choices` (the configuration checks
them without importing JAX).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flax import nnx

from landscape.choices import is_model_name, model_names, resnet_depth
from landscape.factories import is_factory_name, load_callable
from landscape.models._blocks import Block, Projection, conv3x3, conv_strided
from landscape.models._dln import DeepLinear
from landscape.models._mlp import MLP
from landscape.models._resnet import ResNet, resnet_blocks_per_stage
from landscape.models._transformer import (TRANSFORMER_NORMS, CausalSelfAttention, TransformerBlock,
                                           TransformerLM, sinusoidal_positions)
from landscape.models._vgg import _PLAN_ALIASES, VGG, VGG_PLANS
from landscape.normalization import uses_batch_statistics

__all__ = ["VGG", "VGG_PLANS", "MLP", "DeepLinear", "ResNet", "TransformerLM", "TransformerBlock",
           "CausalSelfAttention", "Projection", "Block", "build_model", "model_names", "is_model_name",
           "resnet_blocks_per_stage", "sinusoidal_positions", "conv3x3", "conv_strided",
           "TRANSFORMER_NORMS", "has_batch_statistics"]

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
    depth = resnet_depth(name)
    if depth is not None:
        return ResNet(depth, width=width, num_classes=num_classes, input_shape=input_shape,
                      norm=norm, norm_options=norm_options, rngs=rngs, **options)
    if name == "transformer":
        return _build_transformer(input_shape=input_shape, num_classes=num_classes, width=width,
                                  norm=norm, norm_options=norm_options, rngs=rngs, options=options)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(model_names())} "
                     "(or resnetN with N = 6n+2)")


def has_batch_statistics(model: nnx.Module) -> bool:
    """True when some block of ``model`` normalizes with batch statistics."""
    return uses_batch_statistics(getattr(model, "norm_name", "none"))
