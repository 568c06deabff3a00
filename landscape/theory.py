r"""Section 4 of Santurkar et al. (2018) checked numerically on a model's batch-normalized layers.

Santurkar, Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?", NeurIPS 2018,
Sec. 4 (arXiv:1805.11604 v3). Setting, per unit (channel) j of one block, over the m samples of a
batch (for a conv layer the batch *and* the spatial positions, m = N·H·W):

- y_j ∈ Rᵐ the BatchNorm input, μ_j its mean, σ_j = sqrt(var_j + ε) (biased variance),
  ŷ_j = (y_j − μ_j)/σ_j, z_j = γ_j ŷ_j + β_j the BatchNorm output (γ, β held fixed);
- L̂ the loss of the BN net as a function of y; L the loss of the "vanilla" net, i.e. the same
  downstream loss applied to z directly, so ĝ_j := ∇_{y_j} L (paper) = ∂L/∂z_j here;
- ∇_{y_j} L̂ = ∂L̂/∂y_j = (γ_j/σ_j)·P_j ĝ_j with P = I − 11ᵀ/m − ŷŷᵀ/m.

Both gradients come from one backward pass: the models add zero *taps* at every block's
normalization input and output (:mod:`landscape.models`), and the gradients with respect to those
taps are ∂L̂/∂y and ∂L/∂z.

**Theorem 4.1** (gradient magnitude)::

    ‖∇_{y_j} L̂‖² ≤ (γ²/σ_j²)·( ‖ĝ_j‖² − (1/m)⟨1, ĝ_j⟩² − (1/m)⟨ĝ_j, ŷ_j⟩² )

*Erratum:* the v3 paper prints 1/√m on the last term; the proof gives 1/m, and the printed form is
false (it subtracts more, so it is violated whenever ⟨ĝ_j, ŷ_j⟩ ≠ 0 and m > 1). With ε = 0, P is an
orthogonal projection (1 ⊥ ŷ, ‖ŷ‖² = m) and the statement is an *equality*: ‖∇L̂‖² = (γ²/σ²)ĝᵀPĝ.
With ε > 0, ‖ŷ‖² = r·m with r = var/(var + ε) < 1, and exactly::

    ‖∇_{y_j} L̂‖² = (γ²/σ²)·( ‖ĝ‖² − (1/m)⟨1, ĝ⟩² − (2 − r)(1/m)⟨ĝ, ŷ⟩² )

so the inequality is strict (by (γ²/σ²)(1 − r)⟨ĝ, ŷ⟩²/m) whenever ⟨ĝ, ŷ⟩ ≠ 0.

**Theorem 4.2** (quadratic form of the Hessian along the gradient), with H_jj = ∂²L/∂z_j∂z_j the
m×m Hessian of the downstream loss with respect to unit j's BN output (other units fixed) and
v = ∇_{y_j} L̂::

    vᵀ (∂²L̂/∂y_j∂y_j) v  ≤  (γ²/σ²)·vᵀ H_jj v − (γ/(mσ²))·⟨ĝ_j, ŷ_j⟩·‖v‖²

With ε = 0 this holds with *equality*. Derivation: by the chain rule
∂²L̂/∂y∂y = Jᵀ H J + Σ_i ĝ_i ∇²z_i, J = (γ/σ)P. Since v = (γ/σ)Pĝ lies in the range of the projection
P, Jv = (γ/σ)v, which gives the first term. For the second, v ⊥ 1 and v ⊥ ŷ, so along y + tv the
mean is unchanged and σ(t)² = σ² + t²‖v‖²/m; hence ŷ(t) = (σŷ + tv)/σ(t) has second derivative
d²ŷ/dt²|₀ = −ŷ‖v‖²/(mσ²), and Σ_i ĝ_i vᵀ∇²z_i v = γ⟨ĝ, d²ŷ/dt²⟩ = −(γ/(mσ²))⟨ĝ, ŷ⟩‖v‖². So the
BN layer's own second derivative *is* the correction term; nothing is dropped. With ε > 0 neither
v ⊥ ŷ nor Jv = (γ/σ)v holds; the two sides differ by O(ε/var) terms of no fixed sign, so the
statement is neither an equality nor guaranteed. Both quadratic forms are computed matrix-free
with Hessian-vector products (forward-over-reverse through the taps, tangent v on unit j's slice
only): two per unit, hence the ``units`` option.

**Theorem 4.4**, fixed-input consequence: for a block y = XW (dense; for a 3×3 conv X is the
m × (9·C_in) patch matrix), ∂L̂/∂W_{·j} = Xᵀ ∇_{y_j} L̂, so
‖∂L̂/∂W_{·j}‖² ≤ ‖X‖₂²·‖∇_{y_j} L̂‖² (the printed squares/λ factors of the worst-case statement look
like typos; see REFERENCE).

Only blocks whose normalization is a :class:`~landscape.normalization.BatchNorm` (subclasses
included) are checked, in train mode (batch statistics), on a merged *copy* of the model: the
caller's parameters and running statistics are never touched. ``NoisyBatchNorm`` adds noise after
the affine map, so z ≠ γŷ + β there and the identities are not expected to hold (its rows measure
how far the noisy layer is from them; it needs ``rng``).

Example::

    from flax import nnx
    from landscape.models import MLP
    from landscape import theory

    model = MLP(6, hidden=(5, 4), norm="batch", norm_options={"epsilon": 0.0}, rngs=nnx.Rngs(0))
    x, y = jnp.ones((8, 6)).at[:, 0].set(jnp.arange(8.0)), jnp.arange(8) % 10
    t = theory.check_theorem_4_1(model, x, y)["block0"]
    t.lhs, t.rhs            # equal to float32 rounding (ε = 0); t.rhs_printed is smaller
    rows = theory.theory_table(model, x, y)   # one JSON-ready dict per BN layer
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from landscape import bridge
from landscape.config import ConfigError
from landscape.normalization import BatchNorm

__all__ = [
    "BatchNormLayer",
    "Theorem41",
    "Theorem42",
    "Theorem44",
    "batchnorm_layers",
    "check_theorem_4_1",
    "check_theorem_4_2",
    "check_theorem_4_4",
    "standardize",
    "theorem_4_1",
    "theorem_4_2",
    "theory_table",
]

Array = jax.Array


class BatchNormLayer(NamedTuple):
    """Per-unit quantities of one batch-normalized block on one batch (m samples × C units).

    Attributes:
      y: (m, C) BatchNorm input (for conv: batch and spatial positions flattened, channels last).
      yhat: (m, C) ŷ = (y − μ)/σ.
      sigma: (C,) σ = sqrt(biased var + ε).
      gamma: (C,) γ (ones when the layer has no scale).
      grad_bn: (m, C) ∇_y L̂ = ∂L̂/∂y, the BN net's gradient at the BN input.
      grad_vanilla: (m, C) ĝ = ∂L/∂z, the vanilla net's gradient ("∇_y L" in the paper).
      m: number of samples per unit.
      epsilon: the layer's ε.
    """

    y: Array
    yhat: Array
    sigma: Array
    gamma: Array
    grad_bn: Array
    grad_vanilla: Array
    m: int
    epsilon: float


class Theorem41(NamedTuple):
    """Theorem 4.1 per unit (shapes (C,)); see the module docstring for the formulas.

    Attributes:
      lhs: ‖∇_{y_j} L̂‖².
      rhs: (γ²/σ²)(‖ĝ‖² − ⟨1,ĝ⟩²/m − ⟨ĝ,ŷ⟩²/m), the corrected bound (= lhs when ε = 0).
      rhs_printed: the same with the v3 erratum ⟨ĝ,ŷ⟩²/√m; lhs > rhs_printed wherever ⟨ĝ,ŷ⟩ ≠ 0.
      lhs_closed_form: (γ²/σ²)(‖ĝ‖² − ⟨1,ĝ⟩²/m − (2 − r)⟨ĝ,ŷ⟩²/m), r = ‖ŷ‖²/m: equals lhs for every ε
        (an independent check of the autodiff gradient).
      scale: (γ²/σ²)‖ĝ‖², the largest term (rounding errors are relative to it).
      m: samples per unit.
      epsilon: the layer's ε.
    """

    lhs: Array
    rhs: Array
    rhs_printed: Array
    lhs_closed_form: Array
    scale: Array
    m: int
    epsilon: float


class Theorem42(NamedTuple):
    """Theorem 4.2 for the checked units (shapes (k,)); see the module docstring.

    Attributes:
      units: (k,) the unit indices j checked.
      lhs: vᵀ(∂²L̂/∂y_j∂y_j)v with v = ∇_{y_j} L̂.
      rhs: (γ²/σ²)·curvature − (γ/(mσ²))⟨ĝ,ŷ⟩‖v‖² (= lhs when ε = 0).
      curvature: vᵀ H_jj v, H_jj = ∂²L/∂z_j∂z_j.
      correction: (γ/(mσ²))⟨ĝ,ŷ⟩‖v‖², the subtracted term.
      m: samples per unit.
      epsilon: the layer's ε.
    """

    units: Array
    lhs: Array
    rhs: Array
    curvature: Array
    correction: Array
    m: int
    epsilon: float


class Theorem44(NamedTuple):
    """Fixed-input consequence of Theorem 4.4 per unit (shapes (C,)).

    Attributes:
      lhs: ‖∂L̂/∂W_{·j}‖² (from the parameter gradient of the kernel, column j).
      rhs: ‖X‖₂²·‖∇_{y_j} L̂‖².
      input_norm: () ‖X‖₂, the spectral norm of the block's input matrix (patch matrix for conv).
    """

    lhs: Array
    rhs: Array
    input_norm: Array


# ----------------------------------------------------------------------------------------------
# pure formulas on (m, C) arrays


def standardize(y: Array, epsilon: float) -> tuple[Array, Array]:
    """``(ŷ, σ)`` for ``y`` of shape (m, C): ŷ = (y − mean)/σ, σ = sqrt(biased var + ε), per column."""
    centered = y - jnp.mean(y, axis=0, keepdims=True)
    sigma = jnp.sqrt(jnp.mean(jnp.square(centered), axis=0, keepdims=True) + epsilon)
    return centered / sigma, sigma[0]


def theorem_4_1(grad_bn: Array, grad_vanilla: Array, yhat: Array, gamma: Array, sigma: Array,
                *, epsilon: float = 0.0) -> Theorem41:
    r"""Both sides of Theorem 4.1 (Santurkar et al. 2018, Sec. 4) per unit, from (m, C) arrays.

    ``lhs = ‖∇_{y_j}L̂‖²``, ``rhs = (γ²/σ²)(‖ĝ‖² − ⟨1,ĝ⟩²/m − ⟨ĝ,ŷ⟩²/m)`` — the corrected form; the
    v3 paper's 1/√m on the last term (``rhs_printed``) is an erratum. Pure and jit-compatible.

    Example:
        >>> yhat, sigma = standardize(y, 0.0)        # y: (m, C)
        >>> t = theorem_4_1(g_bn, g_hat, yhat, gamma, sigma)
    """
    m = yhat.shape[0]
    ratio = jnp.square(gamma / sigma)
    norm_sq = jnp.sum(jnp.square(grad_vanilla), axis=0)
    mean_term = jnp.square(jnp.sum(grad_vanilla, axis=0)) / m
    align_sq = jnp.square(jnp.sum(grad_vanilla * yhat, axis=0))
    r = jnp.sum(jnp.square(yhat), axis=0) / m
    return Theorem41(
        lhs=jnp.sum(jnp.square(grad_bn), axis=0),
        rhs=ratio * (norm_sq - mean_term - align_sq / m),
        rhs_printed=ratio * (norm_sq - mean_term - align_sq / math.sqrt(m)),
        lhs_closed_form=ratio * (norm_sq - mean_term - (2.0 - r) * align_sq / m),
        scale=ratio * norm_sq,
        m=m,
        epsilon=float(epsilon),
    )


def theorem_4_2(curvature: Array, grad_bn: Array, grad_vanilla: Array, yhat: Array, gamma: Array,
                sigma: Array) -> tuple[Array, Array]:
    r"""Right-hand side of Theorem 4.2 and its correction term, per unit, from (m, k) arrays.

    ``rhs = (γ²/σ²)·curvature − (γ/(mσ²))⟨ĝ,ŷ⟩‖∇_y L̂‖²`` with ``curvature = vᵀH_jj v`` (k,),
    v = ∇_{y_j} L̂. Returns ``(rhs, correction)``. Santurkar et al. 2018, Sec. 4, Theorem 4.2.
    """
    m = yhat.shape[0]
    correction = (gamma / (m * jnp.square(sigma))) * jnp.sum(grad_vanilla * yhat, axis=0) \
        * jnp.sum(jnp.square(grad_bn), axis=0)
    return jnp.square(gamma / sigma) * curvature - correction, correction


# ----------------------------------------------------------------------------------------------
# the NNX edge: one prepared problem per (model, batch)


def _cast(tree: Any, dtype: Any) -> Any:
    def cast(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree.map(cast, tree)


def _forward(graphdef, names, params, taps, data):
    """Train-mode forward of a model copy: outputs and the BN inputs y of the blocks ``names``."""
    state, x, _, rng = data
    collect: dict[str, Array] = {}
    model = bridge.merge(graphdef, params, state)
    out = model(x, use_running_average=False, rng=rng, taps=taps, collect=collect)
    return out, {name: collect[f"{name}/pre_norm"] for name in names}


class _InputRecorder(nnx.Module):
    """Wraps a projection of a throw-away model copy and hands its input to ``sink``."""

    def __init__(self, inner: nnx.Module, sink):
        self.inner = inner
        self.sink = sink

    def __call__(self, x: Array) -> Array:
        self.sink(x)
        return self.inner(x)


def _spectral_norm_sq(a: Array) -> Array:
    gram = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    return jnp.linalg.eigvalsh(gram)[-1]


class _Compiled(NamedTuple):
    """Jitted functions of one architecture (graphdef, BN block names, loss kind)."""

    first_order: Any  # (params, data, taps0) -> ({name: layer arrays}, ∂L/∂taps, ∂L̂/∂params)
    quadratic_forms: Any  # (params, data, taps0, ∂L/∂pre_norm, masks) -> (vᵀ∇²L̂v, vᵀHv)
    theorem_4_4: Any  # (params, data, ∂L̂/∂params, ∂L/∂pre_norm) -> {name: (lhs, rhs, ‖X‖₂)}


def _objective(graphdef, names, kind, params, taps, data):
    """``(L̂, {name: y})``: the loss of the tapped forward pass and the blocks' BN inputs."""
    out, ys = _forward(graphdef, names, params, taps, data)
    return bridge.loss_value(kind, out, data[2])[0], ys


def _bn_blocks(graphdef, names, params, state):
    """A merged model copy and its blocks ``names`` (``{name: block}``)."""
    model = bridge.merge(graphdef, params, state)
    return model, {n: b for n, b in zip(model.block_names(), model.blocks) if n in names}


def _first_order(graphdef, names, kind, params, data, taps0):
    """``({name: layer arrays}, ∂L/∂taps, ∂L̂/∂params)`` from one backward pass through the taps."""
    (_, ys), (param_grads, tap_grads) = jax.value_and_grad(
        functools.partial(_objective, graphdef, names, kind), argnums=(0, 1), has_aux=True)(
        params, taps0, data)
    _, blocks = _bn_blocks(graphdef, names, params, data[0])
    layers = {}
    for name, block in blocks.items():
        c = ys[name].shape[-1]
        y = ys[name].reshape(-1, c)
        yhat, sigma = standardize(y, block.norm.epsilon)
        scale = block.norm.scale
        layers[name] = dict(
            y=y, yhat=yhat, sigma=sigma,
            gamma=jnp.ones((c,), y.dtype) if scale is None else scale[...],
            grad_bn=tap_grads[name]["pre_norm"].reshape(-1, c),
            grad_vanilla=tap_grads[name]["post_norm"].reshape(-1, c))
    return layers, tap_grads, param_grads


def _quadratic_forms(graphdef, names, kind, params, data, taps0, grads_pre, masks):
    """``(vᵀ ∂²L̂/∂y∂y v, vᵀ H v)`` for v = ∇_{y_j} L̂ on the masked unit's slice, 0 elsewhere: the
    same v once as a tangent of the pre_norm taps and once of the post_norm taps."""
    v = {n: grads_pre[n] * jnp.reshape(masks[n], (1,) * (grads_pre[n].ndim - 1) + (-1,))
         for n in names}
    zero = {n: jnp.zeros_like(v[n]) for n in names}
    pre = {n: {"pre_norm": v[n], "post_norm": zero[n]} for n in names}
    post = {n: {"pre_norm": zero[n], "post_norm": v[n]} for n in names}
    tangents = jax.tree.map(lambda a, b: jnp.stack([a, b]), pre, post)
    grad_of_taps = jax.grad(lambda t: _objective(graphdef, names, kind, params, t, data)[0])
    hvp = jax.vmap(lambda t: jax.jvp(grad_of_taps, (taps0,), (t,))[1])(tangents)
    forms = jax.vmap(optax.tree.vdot)(tangents, hvp)
    return forms[0], forms[1]


def _theorem_4_4_arrays(graphdef, names, params, data, param_grads, grads_pre):
    """``{name: (‖∂L̂/∂W_{·j}‖², ‖X‖₂²·‖∇_{y_j} L̂‖², ‖X‖₂)}`` for the blocks whose kernel is free."""
    state, x, _, rng = data
    inputs: dict[str, Array] = {}
    model, blocks = _bn_blocks(graphdef, names, params, state)
    for name, block in blocks.items():
        block.proj = _InputRecorder(block.proj, functools.partial(inputs.__setitem__, name))
    model(x, use_running_average=False, rng=rng)
    _, grad_blocks = _bn_blocks(graphdef, names, param_grads, state)
    out = {}
    for name, block in grad_blocks.items():
        if block.proj.gain is not None:  # weight-normalized: W is not a free parameter
            continue
        kernel_grad = block.proj.kernel[...]
        c = kernel_grad.shape[-1]
        xin = inputs[name]
        if block.proj.is_conv:
            xin = jax.lax.conv_general_dilated_patches(
                xin, kernel_grad.shape[:2], (1, 1), "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
        g = grads_pre[name].reshape(-1, c)
        norm_sq = _spectral_norm_sq(xin.reshape(g.shape[0], -1))
        out[name] = (jnp.sum(jnp.square(kernel_grad.reshape(-1, c)), axis=0),
                     norm_sq * jnp.sum(jnp.square(g), axis=0), jnp.sqrt(norm_sq))
    return out


@functools.lru_cache(maxsize=32)
def _compiled(graphdef: nnx.GraphDef, names: tuple[str, ...], kind: str) -> _Compiled:
    """The jitted functions shared by every check on models with this graphdef (compiled once)."""
    return _Compiled(jax.jit(functools.partial(_first_order, graphdef, names, kind)),
                     jax.jit(functools.partial(_quadratic_forms, graphdef, names, kind)),
                     jax.jit(functools.partial(_theorem_4_4_arrays, graphdef, names)))


class _Problem:
    """A model split into pure pieces, its BN blocks, and the first-order quantities."""

    def __init__(self, model: nnx.Module, x: Any, y: Any, *, rng: Array | None, dtype: Any):
        if dtype is not None and jax.dtypes.canonicalize_dtype(dtype) != jnp.dtype(dtype):
            raise ValueError(f"dtype={jnp.dtype(dtype)} needs jax_enable_x64 (e.g. `with "
                             "jax.enable_x64(True):`)")
        graphdef, params, state = bridge.split(model)
        x, y = jnp.asarray(x), jnp.asarray(y)
        if dtype is not None:
            params, state, x, y = _cast((params, state, x, y), dtype)
        self.params = params
        self.data = (state, x, y, rng)  # passed to jitted functions as arguments, not constants
        blocks = list(zip(model.block_names(), model.blocks))
        if not all(hasattr(block, "norm") for _, block in blocks):
            raise ConfigError(f"{type(model).__name__} has no per-block normalization (a block "
                              "norm(proj(x)) as in the VGG and MLP); Section 4's theorems are "
                              "checked on those")
        epsilon = {name: float(block.norm.epsilon) for name, block in blocks
                   if isinstance(block.norm, BatchNorm)}
        if not epsilon:
            raise ConfigError("the model has no BatchNorm block; Section 4's theorems are about BN "
                              "layers")
        names = tuple(epsilon)
        self.compiled = _compiled(graphdef, names, getattr(model, "loss_kind", "cross_entropy"))
        shapes = jax.eval_shape(lambda p, d: _forward(graphdef, names, p, None, d)[1], params, self.data)
        self.taps0 = {name: {"pre_norm": jnp.zeros(s.shape, s.dtype),
                             "post_norm": jnp.zeros(s.shape, s.dtype)} for name, s in shapes.items()}
        layers, tap_grads, self.param_grads = self.compiled.first_order(params, self.data, self.taps0)
        self.grads_pre = {name: g["pre_norm"] for name, g in tap_grads.items()}
        self.layers = {name: BatchNormLayer(**arrays, m=arrays["y"].shape[0], epsilon=epsilon[name])
                       for name, arrays in layers.items()}


def _select_units(units: int | Sequence[int] | Mapping[str, Any], c: int, name: str) -> np.ndarray:
    if isinstance(units, Mapping):
        units = units.get(name, 0)
    if isinstance(units, (int, np.integer)):
        if units < 0:
            raise ValueError(f"units must be >= 0 or a sequence of indices, got {units}")
        return np.arange(min(int(units), c))
    idx = np.asarray(list(units), dtype=int)
    if idx.size and (idx.min() < -c or idx.max() >= c):
        raise ValueError(f"units {idx.tolist()} out of range for {name} with {c} units")
    return np.mod(idx, c)


@jax.jit
def _theorem_4_1_arrays(layers: dict[str, BatchNormLayer]) -> dict[str, tuple[Array, ...]]:
    return {name: tuple(theorem_4_1(l.grad_bn, l.grad_vanilla, l.yhat, l.gamma, l.sigma)[:5])
            for name, l in layers.items()}


def _theorem_4_1(problem: _Problem) -> dict[str, Theorem41]:
    arrays = _theorem_4_1_arrays({n: l._replace(m=0, epsilon=0.0) for n, l in problem.layers.items()})
    return {name: Theorem41(*arrays[name], m=l.m, epsilon=l.epsilon)
            for name, l in problem.layers.items()}


_theorem_4_2_jit = jax.jit(theorem_4_2)


def _theorem_4_2(problem: _Problem, units: int | Sequence[int] | Mapping[str, Any]
                 ) -> dict[str, Theorem42]:
    zero_masks = {n: np.zeros(l.grad_bn.shape[1], l.grad_bn.dtype) for n, l in problem.layers.items()}
    out = {}
    for name, layer in problem.layers.items():
        if isinstance(units, Mapping) and name not in units:
            continue
        idx = _select_units(units, layer.grad_bn.shape[1], name)
        forms = []
        for j in idx:  # one unit at a time: memory of two tangents, one compilation for all units
            mask = np.zeros_like(zero_masks[name])
            mask[j] = 1.0
            forms.append(problem.compiled.quadratic_forms(
                problem.params, problem.data, problem.taps0, problem.grads_pre,
                {**zero_masks, name: mask}))
        dtype = layer.grad_bn.dtype
        lhs = jnp.asarray(np.asarray([f[0] for f in forms], dtype).reshape(len(idx)))
        curvature = jnp.asarray(np.asarray([f[1] for f in forms], dtype).reshape(len(idx)))
        sel = lambda a: a[:, idx]  # noqa: E731
        rhs, correction = _theorem_4_2_jit(curvature, sel(layer.grad_bn), sel(layer.grad_vanilla),
                                           sel(layer.yhat), layer.gamma[idx], layer.sigma[idx])
        out[name] = Theorem42(units=jnp.asarray(idx), lhs=lhs, rhs=rhs, curvature=curvature,
                              correction=correction, m=layer.m, epsilon=layer.epsilon)
    return out


def _theorem_4_4(problem: _Problem) -> dict[str, Theorem44]:
    out = problem.compiled.theorem_4_4(problem.params, problem.data, problem.param_grads,
                                       problem.grads_pre)
    return {name: Theorem44(*arrays) for name, arrays in out.items()}


# ----------------------------------------------------------------------------------------------
# public NNX-facing checks


def batchnorm_layers(model: nnx.Module, x: Any, y: Any, *, rng: Array | None = None,
                     dtype: Any = None) -> dict[str, BatchNormLayer]:
    """Per-unit y, ŷ, σ, γ, ∇_y L̂ and ĝ = ∂L/∂z of every BatchNorm block (train mode, one batch).

    Both gradients come from one backward pass through zero taps (see the module docstring). The
    model is not mutated. ``dtype`` (e.g. ``jnp.float64`` inside ``jax.enable_x64(True)``) casts
    the parameters, statistics and floating inputs first; ``None`` keeps the model's dtype.

    Example:
        >>> layers = batchnorm_layers(model, x, y)
        >>> layers["block0"].grad_bn.shape        # (m, C)
    """
    return _Problem(model, x, y, rng=rng, dtype=dtype).layers


def check_theorem_4_1(model: nnx.Module, x: Any, y: Any, *, rng: Array | None = None,
                      dtype: Any = None) -> dict[str, Theorem41]:
    r"""Theorem 4.1 for every unit of every BatchNorm block of ``model`` on the batch ``(x, y)``.

    ``lhs = ‖∇_{y_j}L̂‖² ≤ rhs = (γ²/σ_j²)(‖ĝ_j‖² − (1/m)⟨1,ĝ_j⟩² − (1/m)⟨ĝ_j,ŷ_j⟩²)``; equality at
    ε = 0, strict for ε > 0. ``rhs_printed`` uses the v3 paper's erratum 1/√m on the last term,
    which the data violate. Santurkar et al. 2018, Sec. 4, Theorem 4.1. The loss is
    ``model.loss_kind``; the model is not mutated.

    Args:
      model: an NNX model of :mod:`landscape.models` (``taps`` / ``collect`` / ``block_names``).
      x, y: one batch (inputs, targets).
      rng: key for noisy normalizations (``NoisyBatchNorm`` needs one).
      dtype: cast parameters, statistics and floating inputs to this dtype first (None: keep).

    Returns:
      ``{block_name: Theorem41}`` with (C,) arrays.

    Example:
        >>> t = check_theorem_4_1(model, x, y)["block0"]
        >>> bool(jnp.all(t.lhs > t.rhs_printed))   # the printed 1/√m form is violated
        True
    """
    return _theorem_4_1(_Problem(model, x, y, rng=rng, dtype=dtype))


def check_theorem_4_2(model: nnx.Module, x: Any, y: Any, *,
                      units: int | Sequence[int] | Mapping[str, Any] = 8,
                      rng: Array | None = None, dtype: Any = None) -> dict[str, Theorem42]:
    r"""Theorem 4.2 for some units of every BatchNorm block, matrix-free (2 HVPs per unit).

    ``lhs = vᵀ(∂²L̂/∂y_j∂y_j)v``, ``rhs = (γ²/σ²)vᵀH_jj v − (γ/(mσ²))⟨ĝ_j,ŷ_j⟩‖v‖²``, v = ∇_{y_j}L̂,
    H_jj = ∂²L/∂z_j∂z_j. Equal when ε = 0 (derivation in the module docstring); with ε > 0 the sides
    differ by O(ε/var) terms of either sign. Santurkar et al. 2018, Sec. 4, Theorem 4.2.

    Args:
      units: an int k (the first min(k, C) units of each layer), a sequence of unit indices
        applied to every layer (negative indices count from the end), or a mapping
        ``{block_name: int or indices}`` (blocks not named are skipped).
      (others as :func:`check_theorem_4_1`)

    Returns:
      ``{block_name: Theorem42}`` with (k,) arrays.

    Example:
        >>> t = check_theorem_4_2(model, x, y, units=2)["block1"]
        >>> t.lhs, t.rhs            # equal to rounding when ε = 0
    """
    return _theorem_4_2(_Problem(model, x, y, rng=rng, dtype=dtype), units)


def check_theorem_4_4(model: nnx.Module, x: Any, y: Any, *, rng: Array | None = None,
                      dtype: Any = None) -> dict[str, Theorem44]:
    r"""Fixed-input consequence of Theorem 4.4: ‖∂L̂/∂W_{·j}‖² ≤ ‖X‖₂²·‖∇_{y_j}L̂‖² per unit.

    X is the block's input matrix (m × d_in for a dense block, the m × 9·C_in patch matrix for a
    3×3 conv); ∂L̂/∂W comes from the ordinary parameter gradient. Blocks with weight-normalized
    kernels are skipped. Santurkar et al. 2018, Sec. 4, Theorem 4.4 (see REFERENCE on its typos).

    Example:
        >>> t = check_theorem_4_4(model, x, y)["block0"]
        >>> bool(jnp.all(t.lhs <= t.rhs))
        True
    """
    return _theorem_4_4(_Problem(model, x, y, rng=rng, dtype=dtype))


def _default_rtol(dtype: Any) -> float:
    return float(np.sqrt(np.finfo(np.dtype(dtype)).eps))


def theory_table(model: nnx.Module, x: Any, y: Any, *,
                 units: int | Sequence[int] | Mapping[str, Any] = 8,
                 rng: Array | None = None, dtype: Any = None,
                 rtol: float | None = None) -> list[dict[str, Any]]:
    r"""One JSON-ready row per BatchNorm block summarising Theorems 4.1, 4.2 and 4.4 (fixed X).

    Row keys: ``layer``, ``m``, ``epsilon``, ``num_units``;
    ``thm41_max_rel_gap`` = max_j |lhs − rhs|/|rhs|; ``thm41_fraction_holds`` = fraction of units
    with lhs ≤ rhs + rtol·scale (scale = (γ²/σ²)‖ĝ‖², the largest term); ``thm41_strict_fraction``
    = fraction with lhs < rhs − rtol·scale; ``thm41_printed_violations`` = number of units with
    lhs > rhs_printed + rtol·scale (the 1/√m erratum); ``thm42_units``, ``thm42_max_rel_gap`` =
    max |lhs − rhs|/(|(γ²/σ²)vᵀHv| + |correction|), ``thm42_fraction_holds``;
    ``thm44_fraction_holds`` and ``thm44_max_ratio`` = max lhs/rhs (None when not applicable).
    ``rtol`` defaults to sqrt(machine ε) of the computation's dtype (1.5e-8 in float64,
    3.5e-4 in float32). ``units=0`` skips Theorem 4.2 (None in its columns).

    Example:
        >>> for row in theory_table(model, x, y): print(row["layer"], row["thm41_max_rel_gap"])
    """
    problem = _Problem(model, x, y, rng=rng, dtype=dtype)
    t41 = _theorem_4_1(problem)
    skip42 = isinstance(units, (int, np.integer)) and units == 0
    t42 = {} if skip42 else _theorem_4_2(problem, units)
    t44 = _theorem_4_4(problem)
    rows = []
    for name, a in t41.items():
        a = a._replace(**{k: np.asarray(getattr(a, k)) for k in ("lhs", "rhs", "rhs_printed", "scale")})
        tol = _default_rtol(a.lhs.dtype) if rtol is None else rtol
        tiny = np.finfo(a.lhs.dtype).tiny
        row = {"layer": name, **_theorem_4_1_columns(a, tol, tiny)}
        row.update(_theorem_4_2_columns(t42.get(name), problem.layers[name], tol, tiny))
        row.update(_theorem_4_4_columns(t44.get(name), tol, tiny))
        rows.append(row)
    return rows


def _theorem_4_1_columns(a: Theorem41, tol: float, tiny: float) -> dict[str, Any]:
    """:func:`theory_table`'s ``m``, ``epsilon``, ``num_units`` and ``thm41_*`` columns."""
    slack = tol * a.scale
    return {
        "m": int(a.m),
        "epsilon": float(a.epsilon),
        "num_units": int(a.lhs.shape[0]),
        "thm41_max_rel_gap": float(np.max(np.abs(a.lhs - a.rhs) / np.maximum(np.abs(a.rhs), tiny))),
        "thm41_fraction_holds": float(np.mean(a.lhs <= a.rhs + slack)),
        "thm41_strict_fraction": float(np.mean(a.lhs < a.rhs - slack)),
        "thm41_printed_violations": int(np.sum(a.lhs > a.rhs_printed + slack)),
    }


def _theorem_4_2_columns(b: Theorem42 | None, layer: BatchNormLayer, tol: float,
                         tiny: float) -> dict[str, Any]:
    """:func:`theory_table`'s ``thm42_*`` columns (0 units and None when not checked)."""
    if b is None or not b.lhs.shape[0]:
        return {"thm42_units": 0, "thm42_max_rel_gap": None, "thm42_fraction_holds": None}
    idx = np.asarray(b.units)
    ratio = np.square(np.asarray(layer.gamma)[idx] / np.asarray(layer.sigma)[idx])
    lhs, rhs = np.asarray(b.lhs), np.asarray(b.rhs)
    scale42 = np.abs(ratio * np.asarray(b.curvature)) + np.abs(np.asarray(b.correction))
    return {
        "thm42_units": int(lhs.shape[0]),
        "thm42_max_rel_gap": float(np.max(np.abs(lhs - rhs) / np.maximum(scale42, tiny))),
        "thm42_fraction_holds": float(np.mean(lhs <= rhs + tol * scale42)),
    }


def _theorem_4_4_columns(c: Theorem44 | None, tol: float, tiny: float) -> dict[str, Any]:
    """:func:`theory_table`'s ``thm44_*`` columns (None for a block with a weight-normalized kernel)."""
    if c is None:
        return {"thm44_fraction_holds": None, "thm44_max_ratio": None}
    lhs, rhs = np.asarray(c.lhs), np.asarray(c.rhs)
    return {
        "thm44_fraction_holds": float(np.mean(lhs <= rhs * (1 + tol))),
        "thm44_max_ratio": float(np.max(lhs / np.maximum(rhs, tiny))),
    }
