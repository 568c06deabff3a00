"""The rounding floor and the arithmetic the matmuls run in.

On Ampere+ GPUs JAX multiplies float32 in TF32 (10 significand bits) and on TPUs in bfloat16 (7)
unless asked for "highest". The default floor moves θ by one float32 ulp, below that resolution, so
it misses most of the rounding and lets η whose gradient change is mostly rounding into the
effective β; ``floor_eps=arithmetic_eps(dtype)`` measures the arithmetic's own noise. XLA:CPU
always computes float32, so these tests emulate the coarser arithmetic on CPU
(``landscape.probes._emulate``): an MLP whose every matmul (forward and both backward products)
rounds its operands to m significand bits and accumulates in float32, as tensor cores do. The exact
answer is the same MLP in float64 with no rounding.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import probes
from landscape.config import ConfigError, TrainConfig
from landscape.probes._emulate import BF16_BITS, TF32_BITS, coarse_bilinear, round_significand


def _mlp_loss(matmul):
    def loss_fn(params, batch):
        x, y = batch
        h = x
        for i in range(3):
            h = jnp.tanh(matmul(h, params[f"w{i}"]) + params[f"b{i}"][None, :])
        return 0.5 * jnp.mean((matmul(h, params["w3"]) - y) ** 2)
    return loss_fn


def test_emulated_rounding_is_bfloat16_and_custom_vjp_rounds_the_backward_products():
    """7 bits equals a cast to bfloat16 (round to nearest even) on every value, ties included;
    the emulated matmul's gradient equals the rounded operands' products."""
    x = jax.random.normal(jax.random.key(1), (4096,), jnp.float32) * 100
    ties = jnp.asarray([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)], jnp.float32)
    for v in (x, ties):
        np.testing.assert_array_equal(
            np.asarray(round_significand(v, BF16_BITS)),
            np.asarray(v.astype(jnp.bfloat16).astype(jnp.float32)))
    a, b = x[:12].reshape(3, 4), x[12:32].reshape(4, 5)
    g = jnp.ones((3, 5)) * (1 + 2 ** -9)
    _, vjp = jax.vjp(coarse_bilinear(jnp.matmul, BF16_BITS), a, b)
    r = lambda z: round_significand(z, BF16_BITS)  # noqa: E731
    da, db = vjp(g)
    np.testing.assert_array_equal(np.asarray(da), np.asarray(r(g) @ r(b).T))
    np.testing.assert_array_equal(np.asarray(db), np.asarray(r(a).T @ r(g)))


def _exact(x: jax.Array, y: jax.Array) -> jax.Array:
    return x @ y


@pytest.fixture(scope="module")
def problem():
    """float64 parameters and batch of a 16-64-64-64-4 tanh MLP, and their float32 copies."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 8)
        dims = [16, 64, 64, 64, 4]
        p64 = {}
        for i in range(4):
            p64[f"w{i}"] = jax.random.normal(keys[i], (dims[i], dims[i + 1]), jnp.float64) / np.sqrt(dims[i])
            if i < 3:
                p64[f"b{i}"] = 0.1 * jax.random.normal(keys[4 + i], (dims[i + 1],), jnp.float64)
        x = jax.random.normal(keys[7], (128, 16), jnp.float64)
        b64 = (x, jnp.sin(x[:, :4]))
        loss = _mlp_loss(_exact)
        g = jax.grad(loss)(p64, b64)
        g_norm = float(jnp.sqrt(sum(jnp.sum(v ** 2) for v in jax.tree.leaves(g))))
        # distances η‖g‖ from 1e-6 to 1: from far below to far above TF32's resolution
        etas = np.geomspace(1e-6, 1.0, 13) / g_norm
        exact = probes.step_probe(loss, p64, b64, etas, floor_factor=0, strategy="vmap")
        exact_change = np.asarray(exact.grad_change)
    to32 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float32), t)  # noqa: E731
    return to32(p64), to32(b64), etas, exact_change


@pytest.mark.parametrize("bits", [TF32_BITS, BF16_BITS])
def test_floor_at_the_arithmetic_resolution_keeps_rounding_out_of_beta(problem, bits):
    """With ``floor_eps`` = 2^−bits every η that enters β has its gradient change right to < 2 %,
    well inside the docstring's 1/c = 10 %; with the default (float32's ulp) some entering η are
    off by more than 10 %.
    Measured here: TF32 — resolution floor ≤ 0.4 %, float32 floor up to 29 %; bfloat16 —
    resolution floor ≤ 0.15 %, float32 floor up to ×105 (every η enters)."""
    params, batch, etas, exact_change = problem
    loss_fn = _mlp_loss(coarse_bilinear(jnp.matmul, bits))
    error = {}
    for name, eps in (("float32", None), ("arithmetic", 2.0 ** -bits)):
        r = probes.step_probe(loss_fn, params, batch, etas, floor_eps=eps, strategy="vmap")
        included = np.asarray(r.beta_included)
        rel = np.abs(np.asarray(r.grad_change) - exact_change) / exact_change
        error[name] = rel[included].max()
        if name == "arithmetic":
            assert included.sum() >= 2, "the resolution floor must still leave large η in β"
    assert error["arithmetic"] < 0.02
    assert error["float32"] > 1 / probes.DEFAULT_FLOOR_FACTOR, "float32's ulp hides TF32/bf16 rounding"


def test_default_floor_is_one_dtype_ulp_and_grows_with_floor_eps(problem):
    """The default floor equals an explicit ε = 2^−23 (float32's ulp), and a larger ε gives a
    proportionally larger floor (the floor is a linear response to δ)."""
    params, batch, etas, _ = problem
    loss_fn = _mlp_loss(_exact)
    default = probes.step_probe(loss_fn, params, batch, etas[:2], strategy="vmap")
    explicit = probes.step_probe(loss_fn, params, batch, etas[:2], strategy="vmap",
                                 floor_eps=2.0 ** -23)
    coarse = probes.make_step_probe(loss_fn, strategy="vmap", floor_eps=2.0 ** -10)(
        params, batch, etas[:2])
    assert float(default.grad_change_floor) == float(explicit.grad_change_floor)
    # δ 8192× larger: the floor grows ≈ 8192× (linear in δ; rounding adds to the small one)
    ratio = float(coarse.grad_change_floor) / float(default.grad_change_floor)
    assert 2_000 < ratio < 20_000


@pytest.mark.parametrize("platform, precision, capability, bits", [
    ("cpu", None, None, 23),
    ("cpu", "bfloat16", None, 23),            # XLA:CPU ignores the request
    ("gpu", None, "9.0", 10),                 # H100: TF32 by default
    ("gpu", "high", "8.0", 10),
    ("gpu", "highest", "9.0", 23),
    ("gpu", jax.lax.Precision.HIGHEST, "9.0", 23),
    ("gpu", None, "7.0", 23),                 # V100: no TF32
    ("cuda", "BF16_BF16_F32", "9.0", 7),      # a dot algorithm names its rounding
    ("gpu", "F32_F32_F32", "9.0", 23),
    ("tpu", None, None, 7),
    ("tpu", "high", None, 16),
    ("tpu", "float32", None, 23),
])
def test_arithmetic_eps_table(platform, precision, capability, bits):
    got = probes.arithmetic_eps(jnp.float32, platform=platform, precision=precision,
                                compute_capability=capability)
    assert got == 2.0 ** -bits


def test_arithmetic_eps_reads_the_matmul_precision_in_force_and_the_dtype():
    assert probes.arithmetic_eps(jnp.float32, platform="gpu", compute_capability="9.0") == 2.0 ** -10
    with jax.default_matmul_precision("highest"):
        assert probes.arithmetic_eps(jnp.float32, platform="gpu", compute_capability="9.0") == 2.0 ** -23
    # a jitted caller is traced again when the precision changes (it is part of jit's cache key)
    scaled = jax.jit(lambda x: x * probes.arithmetic_eps(platform="gpu", compute_capability="9.0"))
    assert float(scaled(1.0)) == 2.0 ** -10
    with jax.default_matmul_precision("highest"):
        assert float(scaled(1.0)) == 2.0 ** -23
    assert probes.arithmetic_eps(jnp.float64, platform="gpu") == 2.0 ** -52  # 64-bit: untouched
    assert probes.arithmetic_eps(jnp.bfloat16, platform="cpu") == 2.0 ** -7
    with pytest.raises(ValueError, match="precision='fast'"):
        probes.arithmetic_eps(precision="fast")
    with pytest.raises(ValueError, match="floor_eps"):
        probes.step_probe(lambda p, b: jnp.sum(p ** 2), jnp.ones(2), None, jnp.ones(1), floor_eps=2.0)


def test_run_sets_the_matmul_precision_and_records_the_resolution(tmp_path):
    """``matmul_precision`` is in force while the step and its hooks are traced, and is lifted
    after; config.json keeps it (and leaves the default out, so older runs still match), run.json
    records the arithmetic's resolution."""
    from landscape.engine import Hook, Schedule, train

    seen = []

    class Spy(Hook):
        name = "spy"
        schedule = Schedule(1)

        def measure(self, carry, inputs):
            seen.append(jax.config.jax_default_matmul_precision)  # runs while tracing
            return {"loss": inputs.loss}, carry

    cfg = TrainConfig(dataset="synthetic", model="mlp", width=0.2, steps=2, batch_size=16,
                      eval_every=0, checkpoint_every=0, matmul_precision="highest")
    train(cfg, tmp_path / "run", progress=False, hooks=[Spy()])
    assert seen and set(seen) == {"highest"}
    assert jax.config.jax_default_matmul_precision is None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["matmul_precision"] == "highest"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["arithmetic_eps"] == 2.0 ** -23
    assert "matmul_precision" not in TrainConfig().to_dict()
    with pytest.raises(ConfigError, match="matmul_precision"):
        TrainConfig(matmul_precision="tf32")
