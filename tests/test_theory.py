"""Tests for landscape.theory (Santurkar et al. 2018, Sec. 4) on tiny BN models in float64.

Models: an MLP 6 → 5 → 4 → 10 (sigmoid, m = 9 examples) and a VGG plan (4, "M", 6) on 6×6×2 inputs
(m = 3·6·6 = 108 and 3·3·3 = 27 samples per channel), each with ε = 0 and ε = 1e-3, with random γ, β
(γ = 1, β = 0 at initialisation would hide a missing γ factor). Parameters are built in float32 and
the API casts them (``dtype=jnp.float64``).

Tolerances (one helper, ``assert_close``):
- RTOL64 = 1e-10 for identities in float64 (eps ≈ 2.2e-16). The sums involve ≤ 108 terms and the
  worst cancellation is rhs = scale·(1 − …): every rhs here is ≥ 1e-3·scale (asserted), so rounding
  error ≲ 108·eps·1e3 ≈ 2e-11 relative. Any formula slip (1/√m for 1/m, a missing γ/σ, a swapped
  tap) is an O(1e-3 … 1) relative error, far above 1e-10.
- Finite differences: central differences with h = 1e-4 on a direction of norm 1 have truncation
  error ≈ h²·|L'''|/6 ≈ 1e-9 and rounding ≈ eps·L/h ≈ 1e-12; FD_RTOL = 1e-6 keeps a 1000× margin.
The module runs with float64 enabled through a module-scoped fixture that restores the setting.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_close
from flax import nnx

from landscape import bridge, theory
from landscape.models import MLP, VGG

RTOL64 = 1e-10
FD_RTOL = 1e-6
FD_STEP = 1e-4
EPSILONS = (0.0, 1e-3)


pytestmark = pytest.mark.usefixtures("x64")


def _randomize_affine(model, seed):
    rng = np.random.default_rng(seed)
    for block in model.blocks:
        c = block.norm.scale.shape[0]
        block.norm.scale[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)
        block.norm.bias[...] = jnp.asarray(rng.uniform(-0.5, 0.5, c), jnp.float32)
    return model


def _make_case(kind, epsilon):
    rng = np.random.default_rng(7)
    options = {"epsilon": epsilon}
    if kind == "mlp":
        model = MLP(6, hidden=(5, 4), norm="batch", norm_options=options, rngs=nnx.Rngs(0))
        x, y = rng.standard_normal((9, 6)), rng.integers(0, 10, 9)
        ms = {"block0": 9, "block1": 9}
    else:
        model = VGG((4, "M", 6), input_shape=(6, 6, 2), num_classes=3, norm="batch",
                    norm_options=options, rngs=nnx.Rngs(1))
        x, y = rng.standard_normal((3, 6, 6, 2)), rng.integers(0, 3, 3)
        ms = {"block0": 3 * 6 * 6, "block1": 3 * 3 * 3}
    return _randomize_affine(model, 3), jnp.asarray(x), jnp.asarray(y), ms


CASES = [(k, e) for k in ("mlp", "vgg") for e in EPSILONS]
IDS = [f"{k}-eps{e:g}" for k, e in CASES]


class Case:
    """One model and batch; the checks run lazily (compilation dominates these tests' time)."""

    def __init__(self, kind, epsilon):
        self.kind, self.epsilon = kind, epsilon
        self.model, self.x, self.y, self.ms = _make_case(kind, epsilon)
        self.f64 = dict(dtype=jnp.float64)

    @functools.cached_property
    def layers(self):
        return theory.batchnorm_layers(self.model, self.x, self.y, **self.f64)

    @functools.cached_property
    def t41(self):
        return theory.check_theorem_4_1(self.model, self.x, self.y, **self.f64)

    @functools.cached_property
    def t42(self):
        return theory.check_theorem_4_2(self.model, self.x, self.y, units=8, **self.f64)

    @functools.cached_property
    def t44(self):
        return theory.check_theorem_4_4(self.model, self.x, self.y, **self.f64)

    @functools.cached_property
    def pure(self):
        return _pure_loss(self.model, self.x, self.y)


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request):
    return Case(*request.param)


def _pure_loss(model, x, y, dtype=jnp.float64):
    """Jitted (loss(params, taps), collect(params)) of a float64 copy of ``model`` (train mode),
    and its float64 params."""
    graphdef, params, state = bridge.split(model)
    params, state = jax.tree.map(lambda a: a.astype(dtype), (params, state))

    @jax.jit
    def loss(params, taps=None):
        out = bridge.merge(graphdef, params, state)(x, use_running_average=False, taps=taps)
        return bridge.loss_value(model.loss_kind, out, y)[0]

    @jax.jit
    def collect(params):
        c = {}
        bridge.merge(graphdef, params, state)(x, use_running_average=False, collect=c)
        return c

    return loss, params, collect


# ------------------------------------------------------------------------------------------------
# Theorem 4.1


def test_samples_per_unit_and_dtype(case):
    for name, t in case.t41.items():
        assert t.m == case.ms[name]
        assert t.epsilon == case.epsilon
        assert t.lhs.dtype == jnp.float64
        assert case.layers[name].grad_bn.shape == (case.ms[name], t.lhs.shape[0])


def test_theorem_4_1_equality_at_zero_epsilon(case):
    """ε = 0: P = I − 11ᵀ/m − ŷŷᵀ/m is an orthogonal projection, so ‖∇L̂‖² = (γ²/σ²)ĝᵀPĝ = rhs."""
    if case.epsilon != 0.0:
        pytest.skip("equality needs ε = 0")
    for name, t in case.t41.items():
        assert np.all(np.asarray(t.rhs) >= 1e-3 * np.asarray(t.scale)), "cancellation would void 1e-10"
        assert_close(t.lhs, t.rhs, RTOL64, name=f"{name} lhs vs rhs")


def test_theorem_4_1_strict_with_epsilon(case):
    """ε > 0: lhs = rhs − (γ²/σ²)(1 − r)⟨ĝ,ŷ⟩²/m exactly (r = ‖ŷ‖²/m < 1), hence strict."""
    for name, t in case.t41.items():
        assert_close(t.lhs, t.lhs_closed_form, RTOL64, name=f"{name} closed form")
        if case.epsilon > 0:
            # The gap (1 − r)⟨ĝ,ŷ⟩²/m relative to scale is 6e-8 … 3e-3 here; rounding is ≲ 1e-13.
            gap = np.asarray(t.rhs - t.lhs) / np.asarray(t.scale)
            assert np.all(gap > 1e-11), f"{name}: relative gaps {gap} not strictly positive"


def test_printed_form_is_violated(case):
    """The v3 paper's 1/√m (instead of 1/m) subtracts more: lhs > rhs_printed where ⟨ĝ,ŷ⟩ ≠ 0."""
    for name, t in case.t41.items():
        excess = np.asarray(t.lhs - t.rhs_printed) / np.asarray(t.scale)
        assert np.max(excess) > 1e-4, f"{name}: printed form not violated, excess {excess}"


def test_yhat_sigma_and_gamma(case):
    """ŷ has mean 0 and ‖ŷ‖² = m·var/(var + ε); γ is the model's scale."""
    for name, layer in case.layers.items():
        var = np.var(np.asarray(layer.y), axis=0)
        assert_close(layer.sigma, np.sqrt(var + case.epsilon), RTOL64, name="sigma")
        assert_close(np.sum(np.asarray(layer.yhat) ** 2, axis=0),
                     layer.m * var / (var + case.epsilon), RTOL64, name="‖ŷ‖²")
        block = case.model.blocks[int(name.removeprefix("block"))]
        assert_close(layer.gamma, np.asarray(block.norm.scale[...]), RTOL64, name="gamma")


# ------------------------------------------------------------------------------------------------
# the tap gradients, checked without the taps


def test_grad_bn_is_the_batchnorm_vjp_of_grad_vanilla(case):
    """∇_y L̂ = (∂z/∂y)ᵀ ĝ with z = γ(y − μ)/sqrt(var + ε) + β written out naively here."""
    eps = case.epsilon
    for name, layer in case.layers.items():
        def bn(y):
            c = y - y.mean(axis=0, keepdims=True)
            scale = layer.gamma[None, :] / jnp.sqrt(jnp.mean(c * c, axis=0, keepdims=True) + eps)
            return c * scale + 1.0

        _, vjp = jax.vjp(bn, layer.y)
        assert_close(layer.grad_bn, vjp(layer.grad_vanilla)[0], RTOL64, atol=1e-14, name=name)


def test_grad_vanilla_by_finite_differences_in_gamma_and_beta(case):
    """∂L/∂γ_j = ⟨ĝ_j, ŷ_j⟩ and ∂L/∂β_j = ⟨1, ĝ_j⟩: central differences of the loss along a random
    direction (a, b) of (γ, β) of each block match Σ_j a_j⟨ĝ_j,ŷ_j⟩ + b_j⟨1,ĝ_j⟩."""
    loss, params, _ = case.pure
    rng = np.random.default_rng(5)
    for name, layer in case.layers.items():
        norm = params["blocks"][int(name.removeprefix("block"))]["norm"]
        a, b = (rng.standard_normal(layer.gamma.shape) / 2 for _ in range(2))

        def moved(t):
            p = jax.tree.map(lambda leaf: leaf, params)
            q = p["blocks"][int(name.removeprefix("block"))]["norm"]
            q["scale"], q["bias"] = norm["scale"] + t * a, norm["bias"] + t * b
            return p

        predicted = (a @ jnp.sum(layer.grad_vanilla * layer.yhat, axis=0)
                     + b @ jnp.sum(layer.grad_vanilla, axis=0))
        fd = (loss(moved(FD_STEP)) - loss(moved(-FD_STEP))) / (2 * FD_STEP)
        assert_close(fd, predicted, FD_RTOL, name=f"{name} directional derivative in (γ, β)")


def test_grad_bn_by_finite_differences(case):
    """dL/dt along a kernel direction D of block k = ⟨ΔY, ∇_y L̂⟩, ΔY = y(W + D) − y(W) (y is linear in W)."""
    loss, params, collect = case.pure
    rng = np.random.default_rng(11)
    y0 = collect(params)
    for name, layer in case.layers.items():
        k = int(name.removeprefix("block"))
        kernel = params["blocks"][k]["proj"]["kernel"]
        d = rng.standard_normal(kernel.shape)
        d = jnp.asarray(d / np.linalg.norm(d))

        def moved(t):
            p = jax.tree.map(lambda a: a, params)
            p["blocks"][k]["proj"]["kernel"] = kernel + t * d
            return p

        delta_y = (collect(moved(1.0))[f"{name}/pre_norm"] - y0[f"{name}/pre_norm"]).reshape(layer.y.shape)
        predicted = jnp.sum(delta_y * layer.grad_bn)
        fd = (loss(moved(FD_STEP)) - loss(moved(-FD_STEP))) / (2 * FD_STEP)
        assert_close(fd, predicted, FD_RTOL, name=f"{name} directional derivative")


# ------------------------------------------------------------------------------------------------
# Theorem 4.2


def test_theorem_4_2_equality_at_zero_epsilon(case):
    """ε = 0: vᵀ∇²L̂v = (γ²/σ²)vᵀHv − (γ/(mσ²))⟨ĝ,ŷ⟩‖v‖² exactly (derivation in theory's docstring)."""
    if case.epsilon != 0.0:
        pytest.skip("equality needs ε = 0")
    for name, t in case.t42.items():
        layer = case.layers[name]
        np.testing.assert_array_equal(t.units, np.arange(min(8, layer.grad_bn.shape[1])))
        ratio = np.square(np.asarray(layer.gamma / layer.sigma))[np.asarray(t.units)]
        scale = np.abs(ratio * np.asarray(t.curvature)) + np.abs(np.asarray(t.correction))
        assert np.all(scale > 0)
        assert_close(t.lhs, t.rhs, 0.0, atol=RTOL64 * scale, name=f"{name} lhs vs rhs")


def test_theorem_4_2_is_no_identity_with_epsilon(case):
    """With ε > 0 the two sides differ by O(ε/var) terms (either sign) — not a rounding effect.
    (MLP only: one more compilation of the HVP for the VGG would double this file's time.)"""
    if case.epsilon == 0.0 or case.kind != "mlp":
        pytest.skip("ε = 0 is the equality case; VGG skipped for time")
    gaps = [np.max(np.abs(np.asarray(t.lhs - t.rhs)) / np.max(np.abs(np.asarray(t.lhs))))
            for t in case.t42.values()]
    assert max(gaps) > 1e-6


@pytest.mark.parametrize("epsilon, block, unit", [(0.0, 1, 2), (1e-3, 0, 1)])
def test_theorem_4_2_against_dense_hessian(epsilon, block, unit):
    """Both HVP quadratic forms against dense m×m jax.hessian matrices of L̂(y_j) and L(z_j) (MLP),
    and the chain rule ∇²L̂ = JᵀHJ + γΣ_i ĝ_i∇²ŷ_i behind Theorem 4.2 (any ε)."""
    model, x, y, _ = _make_case("mlp", epsilon)
    name = f"block{block}"
    layer = theory.batchnorm_layers(model, x, y, dtype=jnp.float64)[name]
    t = theory.check_theorem_4_2(model, x, y, units={name: [unit]}, dtype=jnp.float64)
    assert list(t) == [name]
    t = t[name]
    loss, params, _ = _pure_loss(model, x, y)
    zeros = jnp.zeros(layer.y.shape)

    @jax.jit
    @jax.hessian
    def hessians(u):  # u = (pre-norm tap, post-norm tap) of unit `unit`
        taps = {name: {"pre_norm": zeros.at[:, unit].set(u[0]), "post_norm": zeros.at[:, unit].set(u[1])}}
        return loss(params, taps)

    full = hessians(jnp.zeros((2, layer.m)))  # (2, m, 2, m)
    hess_bn, hess_vanilla = full[0, :, 0, :], full[1, :, 1, :]
    v = layer.grad_bn[:, unit]
    assert_close(t.lhs, [v @ hess_bn @ v], RTOL64, name="vᵀ∇²L̂v")
    assert_close(t.curvature, [v @ hess_vanilla @ v], RTOL64, name="vᵀHv")
    if epsilon == 0.0:
        assert_close(t.lhs, t.rhs, RTOL64, name="Theorem 4.2 equality")

    gamma, g_hat = layer.gamma[unit], layer.grad_vanilla[:, unit]

    def yhat(y_col):
        c = y_col - y_col.mean()
        return c / jnp.sqrt(jnp.mean(c * c) + epsilon)

    jac = gamma * jax.jacobian(yhat)(layer.y[:, unit])
    second = gamma * jnp.einsum("i,ikl->kl", g_hat, jax.hessian(yhat)(layer.y[:, unit]))
    assert_close(hess_bn, jac.T @ hess_vanilla @ jac + second, RTOL64, atol=1e-12, name="chain rule")


# ------------------------------------------------------------------------------------------------
# Theorem 4.4 (fixed X), table, API behaviour


def test_theorem_4_4_fixed_input(case):
    """‖∂L̂/∂W_{·j}‖² ≤ ‖X‖₂²‖∇_{y_j}L̂‖²; for block0 of the MLP, X = x and ∂L̂/∂W = xᵀ∇_yL̂."""
    for name, t in case.t44.items():
        assert np.all(np.asarray(t.lhs) <= np.asarray(t.rhs) * (1 + RTOL64)), name
    if case.kind == "mlp":
        x = np.asarray(case.x)
        t = case.t44["block0"]
        assert_close(t.input_norm, np.linalg.norm(x, 2), RTOL64, name="‖X‖₂")
        g = np.asarray(case.layers["block0"].grad_bn)
        assert_close(t.lhs, np.sum((x.T @ g) ** 2, axis=0), RTOL64, name="‖Xᵀg‖²")


def test_theory_table(case):
    units = 0 if case.kind == "vgg" and case.epsilon > 0 else 3  # no extra HVP compilation
    # rtol 1e-11 (not the default sqrt(eps) = 1.5e-8): the smallest strict gap here is 6e-8·scale.
    rows = theory.theory_table(case.model, case.x, case.y, units=units, dtype=jnp.float64, rtol=1e-11)
    json.dumps(rows)
    assert [r["layer"] for r in rows] == ["block0", "block1"]
    for r in rows:
        assert r["m"] == case.ms[r["layer"]]
        assert r["thm41_fraction_holds"] == 1.0
        assert r["thm41_printed_violations"] >= 1
        assert r["thm42_units"] == units
        assert r["thm44_fraction_holds"] == 1.0
        if case.epsilon == 0.0:
            assert r["thm41_max_rel_gap"] < RTOL64 and r["thm42_max_rel_gap"] < RTOL64
            assert r["thm42_fraction_holds"] == 1.0 and r["thm41_strict_fraction"] == 0.0
        else:
            assert r["thm41_strict_fraction"] == 1.0


def test_model_not_mutated():
    model, x, y, _ = _make_case("vgg", 0.0)
    before = jax.tree.map(np.array, nnx.as_pure(nnx.state(model)))
    theory.theory_table(model, x, y, units=2, dtype=jnp.float64)
    after = jax.tree.map(np.array, nnx.as_pure(nnx.state(model)))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(after))


def test_float32_default_dtype():
    """Without ``dtype`` the model's float32 is kept; 4.1 then holds to float32 rounding."""
    model, x, y, _ = _make_case("mlp", 0.0)
    t = theory.check_theorem_4_1(model, x.astype(jnp.float32), y)
    assert t["block0"].lhs.dtype == jnp.float32
    rows = theory.theory_table(model, x.astype(jnp.float32), y, units=0)
    assert all(r["thm41_fraction_holds"] == 1.0 and r["thm42_units"] == 0 for r in rows)
    assert all(r["thm41_max_rel_gap"] < 1e-4 for r in rows)


def test_units_selection_and_errors():
    model, x, y, _ = _make_case("mlp", 0.0)
    t = theory.check_theorem_4_2(model, x, y, units=[1, -1], dtype=jnp.float64)
    np.testing.assert_array_equal(t["block0"].units, [1, 4])
    np.testing.assert_array_equal(t["block1"].units, [1, 3])
    with pytest.raises(ValueError, match="out of range"):
        theory.check_theorem_4_2(model, x, y, units=[4], dtype=jnp.float64)
    with pytest.raises(ValueError, match="no BatchNorm"):
        theory.check_theorem_4_1(MLP(6, hidden=(3,), norm="layer", rngs=nnx.Rngs(0)), x, y)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="x64"):
            theory.check_theorem_4_1(model, x, y, dtype=jnp.float64)


def test_compiled_once_per_architecture():
    """A second check on another batch of the same shape reuses the compiled functions."""
    model, x, y, _ = _make_case("mlp", 0.0)
    theory.check_theorem_4_2(model, x, y, units=2, dtype=jnp.float64)
    compiled = theory._Problem(model, x, y, rng=None, dtype=jnp.float64).compiled
    sizes = (compiled.first_order._cache_size(), compiled.quadratic_forms._cache_size())
    theory.check_theorem_4_2(model, x + 1.0, y, units=[0, 1], dtype=jnp.float64)
    assert (compiled.first_order._cache_size(), compiled.quadratic_forms._cache_size()) == sizes
