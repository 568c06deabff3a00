"""Normalization layers behind one registry and one call interface.

Every normalization is an ``nnx.Module`` called as::

    z = norm(y, *, use_running_average=None, rng=None)

with features on the last axis of ``y``. Batch-type layers (``batch``, ``noisy_batch``, ``lp*``)
reduce over every axis but the last (for a conv layer the batch, height and width together, as
BatchNorm does); per-example layers (``layer``, ``rms``) reduce over every axis but the first by
default (``axes="example"``: for a conv layer height, width and channels together) or over the last
axis only (``axes="last"``: per token of a (B, T, D) sequence, what a transformer needs);
``group`` normalizes groups of channels per example; ``dyt`` (Dynamic Tanh) has no statistics at
all, ``γ ⊙ tanh(α y) + β`` elementwise. ``weight`` normalization acts on the weights of
the preceding layer, not on activations: its activation layer is the identity and the models build
weight-normalized projections instead (:func:`uses_weight_norm`).

``use_running_average=None`` means "use the module's attribute", which ``model.train()`` /
``model.eval()`` flip; an explicit ``True``/``False`` overrides it for one call. Running statistics
are updated in place only in train mode (``use_running_average=False``), so a pure loss that merges a
*copy* of the model (see :mod:`landscape.bridge`) never changes the caller's statistics.

Names accepted by :func:`make_normalization`: ``none``, ``batch``, ``noisy_batch``, ``lp1``,
``lp2``, ``lpinf`` (or ``lp`` with ``p=``), ``layer``, ``group``, ``rms``, ``weight``, ``dyt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "BatchNorm",
    "DyT",
    "GroupNorm",
    "Identity",
    "LayerNorm",
    "LpNorm",
    "NoisyBatchNorm",
    "NormalizationError",
    "RMSNorm",
    "make_normalization",
    "normalization_names",
    "register_normalization",
    "uses_batch_statistics",
    "uses_weight_norm",
]


class NormalizationError(ValueError):
    """A normalization name or option that the registry does not accept."""


Array = jax.Array


class PopulationStat(nnx.BatchStat):
    """Sums for the population estimate of Ioffe & Szegedy (Alg. 2): never differentiated."""


def _per_feature(v: Array, ndim: int) -> Array:
    """A per-feature vector (C,) shaped to broadcast against (…, C) explicitly (rank promotion)."""
    return jnp.reshape(v, (1,) * (ndim - jnp.ndim(v)) + jnp.shape(v))


def _resolve_mode(module: nnx.Module, use_running_average: bool | None) -> bool:
    return module.use_running_average if use_running_average is None else bool(use_running_average)


class _BatchStatNorm(nnx.Module):
    """Shared building block of the batch-statistics normalizations.

    Train mode: ``ŷ = (y − μ_B) / s_B`` with the batch mean ``μ_B`` over every axis but the last and a
    scale ``s_B`` given by :meth:`_scale`; ``z = γ·ŷ + β``. Eval mode uses running estimates of
    ``μ`` and ``s``. Two running estimates are offered:

    - ``stats="ema"`` (default, what frameworks do): ``r ← momentum·r + (1 − momentum)·batch``,
      with the biased batch variance (the one used to normalize) by default; ``unbiased=True``
      stores m/(m−1) × it instead, as PyTorch does (m values per feature: 0.8 % apart at m = 128).
    - ``stats="population"`` (Ioffe & Szegedy, Alg. 2): ``E[y]`` = mean of the minibatch means and
      ``Var[y]`` = m/(m−1) · mean of the (biased) minibatch variances, accumulated over every train
      call since the last :meth:`reset_population`.
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        stats: Literal["ema", "population"] = "ema",
        unbiased: bool = False,
        use_scale: bool = True,
        use_bias: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # deterministic initialisation: γ = 1, β = 0
        if stats not in ("ema", "population"):
            raise NormalizationError(f"stats must be 'ema' or 'population', got {stats!r}")
        if not 0.0 <= momentum < 1.0:
            raise NormalizationError(f"momentum must lie in [0, 1), got {momentum}")
        if epsilon < 0:
            raise NormalizationError(f"epsilon must be >= 0, got {epsilon}")
        self.num_features = num_features
        self.epsilon = epsilon
        self.momentum = momentum
        self.stats = stats
        self.unbiased = bool(unbiased)
        self.use_running_average = False
        self.scale = nnx.Param(jnp.ones((num_features,), dtype)) if use_scale else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if use_bias else None
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))
        if stats == "population":
            self.pop_mean_sum = PopulationStat(jnp.zeros((num_features,), dtype))
            self.pop_var_sum = PopulationStat(jnp.zeros((num_features,), dtype))
            self.pop_count = PopulationStat(jnp.zeros((), dtype))
            self.pop_size = PopulationStat(jnp.zeros((), dtype))

    # The "variance" stored in running statistics is the square of the scale, so that batch and
    # lp layers share the bookkeeping.
    def _scale_sq(self, y: Array, centered: Array, axes: tuple[int, ...]) -> Array:
        return jnp.mean(jnp.square(centered), axis=axes)

    def _denominator(self, scale_sq: Array) -> Array:
        return jnp.sqrt(scale_sq + self.epsilon)

    def _affine(self, yhat: Array) -> Array:
        if self.scale is not None:
            yhat = yhat * _per_feature(self.scale[...], yhat.ndim)
        if self.bias is not None:
            yhat = yhat + _per_feature(self.bias[...], yhat.ndim)
        return yhat

    def _running(self) -> tuple[Array, Array]:
        if self.stats == "population":
            count = jnp.maximum(self.pop_count[...], 1.0)
            m = jnp.maximum(self.pop_size[...], 2.0)
            mean = self.pop_mean_sum[...] / count
            var = (m / (m - 1.0)) * self.pop_var_sum[...] / count
            have = self.pop_count[...] > 0
            return jnp.where(have, mean, self.mean[...]), jnp.where(have, var, self.var[...])
        return self.mean[...], self.var[...]

    def normalize(self, y: Array, *, use_running_average: bool | None = None) -> Array:
        """ŷ before the affine (updates running statistics in train mode)."""
        axes = tuple(range(y.ndim - 1))
        if _resolve_mode(self, use_running_average):
            mean, scale_sq = self._running()
            return (y - _per_feature(mean, y.ndim)) / _per_feature(self._denominator(scale_sq), y.ndim)
        mean = jnp.mean(y, axis=axes)
        centered = y - _per_feature(mean, y.ndim)
        scale_sq = self._scale_sq(y, centered, axes)
        mu, s2 = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(scale_sq)
        if self.stats == "population":
            self.pop_mean_sum[...] = self.pop_mean_sum[...] + mu
            self.pop_var_sum[...] = self.pop_var_sum[...] + s2
            self.pop_count[...] = self.pop_count[...] + 1.0
            self.pop_size[...] = jnp.asarray(math.prod(y.shape[:-1]), s2.dtype)
        if self.unbiased:
            m = math.prod(y.shape[:-1])
            s2 = s2 * (m / max(m - 1, 1))
        self.mean[...] = self.momentum * self.mean[...] + (1.0 - self.momentum) * mu
        self.var[...] = self.momentum * self.var[...] + (1.0 - self.momentum) * s2
        return centered / _per_feature(self._denominator(scale_sq), y.ndim)

    def reset_population(self) -> None:
        """Start a new population estimate (``stats="population"`` only)."""
        if self.stats == "population":
            for v in (self.pop_mean_sum, self.pop_var_sum, self.pop_count, self.pop_size):
                v[...] = jnp.zeros_like(v[...])

    def __call__(
        self, y: Array, *, use_running_average: bool | None = None, rng: Array | None = None
    ) -> Array:
        del rng
        return self._affine(self.normalize(y, use_running_average=use_running_average))


class BatchNorm(_BatchStatNorm):
    r"""Batch normalization (Ioffe & Szegedy 2015, Alg. 1).

    Train mode, per feature j over the batch (and spatial positions):
    ``ŷ = (y − mean_B y) / sqrt(var_B y + ε)`` with the biased batch variance, ``z = γ ŷ + β``.
    Eval mode uses running estimates (``stats="ema"`` with ``momentum`` — 0.9 matches PyTorch's 0.1 —
    or ``stats="population"``, Alg. 2's m/(m−1)-corrected average).

    Example:
        >>> bn = BatchNorm(4)
        >>> z = bn(jnp.ones((8, 4)))  # train mode: batch statistics, running stats updated
    """


class NoisyBatchNorm(BatchNorm):
    r"""BatchNorm followed by the time-varying noise of Santurkar et al. 2018 (Alg. 1, Fig. 2).

    In train mode, at every call (one training step): for each unit j draw
    ``μ_j ~ U(−n_μ, n_μ)``, ``σ_j ~ U(1, n_σ)``; then for each example i (and spatial position,
    which count as part of the batch) ``m_ij ~ U(μ_j − r_μ, μ_j + r_μ)``, ``s_ij ~ N(σ_j, r_σ)`` and
    ``a_ij ← s_ij · a_ij + m_ij``. Constants n_μ = 0.5, n_σ = 1.25, r_μ = r_σ = 0.1.

    Choices the paper leaves open (options): ``r_sigma_is="std"`` (or ``"variance"``: the normal's
    standard deviation is then ``sqrt(r_σ)``) and ``position="after_affine"`` (noise on the layer's
    output, the paper's "batch normalized activation"; ``"before_affine"`` puts it on ŷ). The noise
    needs ``rng`` (a key, folded with the training step by the caller); eval mode adds no noise.
    """

    def __init__(
        self,
        num_features: int,
        *,
        n_mu: float = 0.5,
        n_sigma: float = 1.25,
        r_mu: float = 0.1,
        r_sigma: float = 0.1,
        r_sigma_is: Literal["std", "variance"] = "std",
        position: Literal["after_affine", "before_affine"] = "after_affine",
        **kwargs: Any,
    ):
        super().__init__(num_features, **kwargs)
        if r_sigma_is not in ("std", "variance"):
            raise NormalizationError(f"r_sigma_is must be 'std' or 'variance', got {r_sigma_is!r}")
        if position not in ("after_affine", "before_affine"):
            raise NormalizationError(
                f"position must be 'after_affine' or 'before_affine', got {position!r}"
            )
        if n_sigma < 1 or min(n_mu, r_mu, r_sigma) < 0:
            raise NormalizationError("noise constants must satisfy n_sigma >= 1 and n_mu, r_mu, r_sigma >= 0")
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.r_sigma_is, self.position = r_sigma_is, position

    def noise(self, a: Array, rng: Array) -> Array:
        """Apply Algorithm 1's noise to ``a`` (features last) with key ``rng``."""
        k_mu, k_sigma, k_m, k_s = jax.random.split(rng, 4)
        c = a.shape[-1]
        mu = jax.random.uniform(k_mu, (c,), a.dtype, -self.n_mu, self.n_mu)
        sigma = jax.random.uniform(k_sigma, (c,), a.dtype, 1.0, self.n_sigma)
        m = _per_feature(mu, a.ndim) + jax.random.uniform(k_m, a.shape, a.dtype, -self.r_mu, self.r_mu)
        std = self.r_sigma if self.r_sigma_is == "std" else math.sqrt(self.r_sigma)
        s = _per_feature(sigma, a.ndim) + std * jax.random.normal(k_s, a.shape, a.dtype)
        return s * a + m

    def __call__(
        self, y: Array, *, use_running_average: bool | None = None, rng: Array | None = None
    ) -> Array:
        train = not _resolve_mode(self, use_running_average)
        yhat = self.normalize(y, use_running_average=use_running_average)
        if train and rng is None:
            raise NormalizationError("noisy_batch needs an rng key in train mode")
        if train and self.position == "before_affine":
            yhat = self.noise(yhat, rng)
        z = self._affine(yhat)
        if train and self.position == "after_affine":
            z = self.noise(z, rng)
        return z


class LpNorm(_BatchStatNorm):
    r"""ℓp normalization (Santurkar et al. 2018, Sec. 3.3, Fig. 5).

    Fixes the first moment like BatchNorm, then divides by the batch-average ℓp norm, per feature j
    over the batch (and spatial positions)::

        ŷ = (y − mean_B y) / (mean_B |v|^p)^{1/p}      (p = ∞: max_B |v|)
        z = γ ŷ + β

    The paper prints no formula. ``scale_from="raw"`` (default, the paper's "before shifting the
    mean") takes ``v = y``; ``scale_from="centered"`` takes ``v = y − mean_B y``, which makes
    ``max |ŷ| = 1`` exactly for p = ∞ (up to ε). The denominator is ``sqrt(s² + ε)`` with s the
    ℓp average, so running statistics are kept as s², like BatchNorm's variance.

    Example:
        >>> norm = LpNorm(8, p=float("inf"), scale_from="centered")
    """

    def __init__(
        self,
        num_features: int,
        *,
        p: float = 2.0,
        scale_from: Literal["raw", "centered"] = "raw",
        epsilon: float = 1e-8,
        **kwargs: Any,
    ):
        super().__init__(num_features, epsilon=epsilon, **kwargs)
        p = float(p)
        if not (p >= 1.0):
            raise NormalizationError(f"lp normalization needs p >= 1 (or inf), got {p}")
        if scale_from not in ("raw", "centered"):
            raise NormalizationError(f"scale_from must be 'raw' or 'centered', got {scale_from!r}")
        self.p = p
        self.scale_from = scale_from

    def _scale_sq(self, y: Array, centered: Array, axes: tuple[int, ...]) -> Array:
        v = jnp.abs(y if self.scale_from == "raw" else centered)
        if math.isinf(self.p):
            s = jnp.max(v, axis=axes)
        else:
            s = jnp.mean(v**self.p, axis=axes) ** (1.0 / self.p)
        return jnp.square(s)


class _PerExampleNorm(nnx.Module):
    """Shared block of layer / RMS normalization, statistics per example.

    ``axes="example"`` (default): over every axis but the batch axis — for a conv layer's
    (B, H, W, C) the height, width and channels together (Ba et al. 2016's conv variant).
    ``axes="last"``: over the last (feature) axis only, separately at every other index — for a
    (B, T, D) sequence one mean / RMS per token over D, as transformers do (statistics over T would
    let a token see later tokens). The two agree on (B, C) inputs.
    """

    center: bool = True

    def __init__(self, num_features: int, *, epsilon: float = 1e-5,
                 axes: Literal["example", "last"] = "example", dtype: Any = jnp.float32,
                 rngs: nnx.Rngs | None = None):
        del rngs
        if axes not in ("example", "last"):
            raise NormalizationError(f"axes must be 'example' or 'last', got {axes!r}")
        self.epsilon = epsilon
        self.axes = axes
        self.scale = nnx.Param(jnp.ones((num_features,), dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if self.center else None

    def __call__(self, y: Array, *, use_running_average: bool | None = None,
                 rng: Array | None = None) -> Array:
        del use_running_average, rng
        axes = tuple(range(1, y.ndim)) if self.axes == "example" else (y.ndim - 1,)
        if self.center:
            y = y - jnp.mean(y, axis=axes, keepdims=True)
        z = y * jax.lax.rsqrt(jnp.mean(jnp.square(y), axis=axes, keepdims=True) + self.epsilon)
        z = z * _per_feature(self.scale[...], z.ndim)
        return z + _per_feature(self.bias[...], z.ndim) if self.bias is not None else z


class LayerNorm(_PerExampleNorm):
    r"""Layer normalization (Ba et al. 2016): ``ŷ = (y − μ)/sqrt(σ² + ε)``, ``z = γŷ + β``, with μ, σ²
    over all non-batch axes (``axes="example"``) or per position over the features (``"last"``)."""

    center = True


class RMSNorm(_PerExampleNorm):
    r"""RMS normalization (Zhang & Sennrich 2019): ``z = γ · y / sqrt(mean y² + ε)`` (no centring),
    the mean over all non-batch axes (``axes="example"``) or over the features (``"last"``)."""

    center = False


class DyT(nnx.Module):
    r"""Dynamic Tanh (Zhu, Chen, He, LeCun & Liu 2025, "Transformers without Normalization",
    arXiv 2503.10622): ``z = γ ⊙ tanh(α y) + β``.

    α is one learnable scalar per layer (initialised at ``alpha0``, 0.5 by default as in the
    paper), γ (``scale``, ones) and β (``bias``, zeros) are per channel (last axis). Elementwise: no
    statistics, so neither the batch nor the other tokens enter, and train and eval modes agree.

    Example:
        >>> z = DyT(4)(jnp.ones((2, 4)))   # tanh(0.5) everywhere
    """

    def __init__(self, num_features: int, *, alpha0: float = 0.5, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs | None = None):
        del rngs
        self.alpha = nnx.Param(jnp.full((), alpha0, dtype))
        self.scale = nnx.Param(jnp.ones((num_features,), dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype))

    def __call__(self, y: Array, *, use_running_average: bool | None = None,
                 rng: Array | None = None) -> Array:
        del use_running_average, rng
        z = jnp.tanh(self.alpha[...] * y) * _per_feature(self.scale[...], y.ndim)
        return z + _per_feature(self.bias[...], y.ndim)


class GroupNorm(nnx.Module):
    r"""Group normalization (Wu & He 2018): per example, channels split into ``num_groups`` groups,
    each standardised over its channels (and spatial positions); then ``γŷ + β`` per channel.
    ``num_groups`` defaults to the largest divisor of the channel count that is ≤ 8."""

    def __init__(self, num_features: int, *, num_groups: int | None = None, epsilon: float = 1e-5,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs | None = None):
        del rngs
        if num_groups is None:
            num_groups = max(g for g in range(1, min(8, num_features) + 1) if num_features % g == 0)
        if num_groups < 1 or num_features % num_groups:
            raise NormalizationError(
                f"group norm: num_groups={num_groups} must divide the {num_features} channels"
            )
        self.num_groups = num_groups
        self.epsilon = epsilon
        self.scale = nnx.Param(jnp.ones((num_features,), dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype))

    def __call__(self, y: Array, *, use_running_average: bool | None = None,
                 rng: Array | None = None) -> Array:
        del use_running_average, rng
        shape = y.shape
        g = y.reshape(shape[:-1] + (self.num_groups, shape[-1] // self.num_groups))
        axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
        mean = jnp.mean(g, axis=axes, keepdims=True)
        var = jnp.var(g, axis=axes, keepdims=True)
        g = (g - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = g.reshape(shape)
        return y * _per_feature(self.scale[...], y.ndim) + _per_feature(self.bias[...], y.ndim)


class Identity(nnx.Module):
    """No normalization (``none``; also the activation side of ``weight``)."""

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None, **_: Any):
        del num_features, rngs

    def __call__(self, y: Array, *, use_running_average: bool | None = None,
                 rng: Array | None = None) -> Array:
        del use_running_average, rng
        return y


NormFactory = Callable[..., nnx.Module]
_REGISTRY: dict[str, tuple[NormFactory, dict[str, Any]]] = {}
_BATCH_STAT_NAMES: set[str] = set()


def register_normalization(
    name: str, factory: NormFactory, *, batch_statistics: bool = False, **defaults: Any
) -> None:
    """Add a normalization under ``name``; ``defaults`` are keyword options passed to ``factory``."""
    _REGISTRY[name] = (factory, defaults)
    if batch_statistics:
        _BATCH_STAT_NAMES.add(name)


register_normalization("none", Identity)
register_normalization("weight", Identity)
register_normalization("batch", BatchNorm, batch_statistics=True)
register_normalization("noisy_batch", NoisyBatchNorm, batch_statistics=True)
register_normalization("lp", LpNorm, batch_statistics=True)
register_normalization("lp1", LpNorm, batch_statistics=True, p=1.0)
register_normalization("lp2", LpNorm, batch_statistics=True, p=2.0)
register_normalization("lpinf", LpNorm, batch_statistics=True, p=math.inf)
register_normalization("layer", LayerNorm)
register_normalization("group", GroupNorm)
register_normalization("rms", RMSNorm)
register_normalization("dyt", DyT)


def normalization_names() -> tuple[str, ...]:
    """The names :func:`make_normalization` accepts."""
    return tuple(_REGISTRY)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise NormalizationError(
            f"unknown normalization {name!r}; expected one of {', '.join(normalization_names())}"
        )


def uses_batch_statistics(name: str) -> bool:
    """True when the layer's output depends on the other examples of the batch (BN-like)."""
    _check_name(name)
    return name in _BATCH_STAT_NAMES


def uses_weight_norm(name: str) -> bool:
    """True for ``weight``: the models then weight-normalize their conv/dense kernels."""
    _check_name(name)
    return name == "weight"


def make_normalization(name: str, num_features: int, *, rngs: nnx.Rngs | None = None,
                       **options: Any) -> nnx.Module:
    """Build the normalization registered as ``name`` for ``num_features`` channels.

    Example:
        >>> norm = make_normalization("lpinf", 16)
        >>> norm.p
        inf
    """
    _check_name(name)
    factory, defaults = _REGISTRY[name]
    try:
        return factory(num_features, rngs=rngs, **{**defaults, **options})
    except TypeError as e:
        raise NormalizationError(f"bad option for normalization {name!r}: {e}") from None
