"""A decoder-only transformer language model, Pre-LN or Post-LN (Xiong et al. 2020), normalization
layer / rms / dyt / none, optional QK-norm."""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from landscape.models._blocks import Projection, _reject_taps
from landscape.normalization import make_normalization

__all__ = ["CausalSelfAttention", "TRANSFORMER_NORMS", "TransformerBlock", "TransformerLM",
           "sinusoidal_positions"]

Array = jax.Array


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
