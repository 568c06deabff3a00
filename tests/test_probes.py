"""Tests for landscape.probes: every field against closed forms or a naive loop.

Tolerances (one helper, `assert_close`):
- float64, RTOL64 = 1e-10. Float64 has eps ≈ 2.2e-16. The largest amplification of rounding here is
  the cancellation in grad_change = ‖∇L(θ − ηd) − g‖: the error is ≈ eps·‖g‖ while the value is
  η‖Ad‖ ≥ 0.05·‖Ad‖, so relative error ≲ eps·‖g‖/(0.05‖Ad‖) ≈ 1e-13 for these well-conditioned
  problems (A's eigenvalues in [0.5, 3]). 1e-10 keeps a 1000× margin yet any formula slip
  (missing division, wrong reference gradient, wrong sign) is an O(1) relative error.
- float32, RTOL32 = 1e-4: eps ≈ 1.2e-7 times the same ≲ 100× cancellation factor gives ≲ 1e-5.
The module runs with float64 enabled through a module-scoped fixture that restores the previous
setting afterwards, so other test files are unaffected.
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from landscape import probes

RTOL64 = 1e-10
RTOL32 = 1e-4
STRATEGY_CONFIGS = {
    "unroll": dict(strategy="unroll"),
    "vmap": dict(strategy="vmap"),
    "vmap_chunk2": dict(strategy="vmap", chunk_size=2),  # K=5 → chunks 2+2+1 remainder
    "map": dict(strategy="map"),
}
UNSORTED_STEPS = {1: np.array([0.2]), 5: np.array([0.3, 0.05, 0.4, 0.1, 0.25])}


pytestmark = pytest.mark.usefixtures("x64")


# ------------------------------------------------------------------------------------------------
# the closed-form quadratic: L(θ) = ½θᵀAθ + bᵀθ + c on a dict pytree of 4 + 2 parameters


class Quadratic:
    def __init__(self, seed=0, n=6):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        self.A = q @ np.diag(np.linspace(0.5, 3.0, n)) @ q.T
        self.A = 0.5 * (self.A + self.A.T)
        self.b = rng.standard_normal(n)
        # c keeps L ≥ 1 so relative errors of L are meaningful (min L = c − ½bᵀA⁻¹b = 1).
        self.c = 1.0 + 0.5 * self.b @ np.linalg.solve(self.A, self.b)
        self.params = {"w": jnp.asarray(rng.standard_normal(4)), "b": jnp.asarray(rng.standard_normal(2))}
        self.direction = {"w": jnp.asarray(rng.standard_normal(4)), "b": jnp.asarray(3.0 * rng.standard_normal(2))}
        A, b, c = jnp.asarray(self.A), jnp.asarray(self.b), self.c

        def loss_fn(params, batch):
            del batch
            x = ravel_pytree(params)[0]
            return 0.5 * x @ (A @ x) + b @ x + c

        self.loss_fn = loss_fn

    @staticmethod
    def flat(tree):
        # numpy, in jax.tree.leaves order (the order ravel_pytree uses in loss_fn).
        return np.concatenate([np.ravel(np.asarray(x, dtype=np.float64)) for x in jax.tree.leaves(tree)])

    def L(self, x):
        return 0.5 * x @ self.A @ x + self.b @ x + self.c

    def grad(self, x):
        return self.A @ x + self.b

    def expected(self, step_sizes, direction=None):
        """Closed forms for every StepProbe field (numpy, float64)."""
        theta = self.flat(self.params)
        g = self.grad(theta)
        d = g if direction is None else self.flat(direction)
        etas = np.asarray(step_sizes, dtype=np.float64)
        Ad = self.A @ d
        return probes.StepProbe(
            step_sizes=etas,
            loss0=self.L(theta),
            grad_norm=np.linalg.norm(g),
            loss=np.array([self.L(theta - eta * d) for eta in etas]),
            grad_change=np.abs(etas) * np.linalg.norm(Ad),  # ∇L(θ−ηd) − g = −ηAd
            effective_beta=np.linalg.norm(Ad) / np.linalg.norm(d),
            grad_change_floor=np.nan,  # checked on its own (test_rounding_floor_quadratic)
            beta_included=np.ones(len(etas), bool),
        )


#: Fields with a closed form; the floor is a rounding measurement, checked separately.
EXACT_FIELDS = [f for f in probes.StepProbe._fields if f not in ("grad_change_floor", "beta_included")]


def check_probe(result, expected, rtol=RTOL64):
    for name in EXACT_FIELDS:
        assert_close(getattr(result, name), getattr(expected, name), rtol, name=name)
    if expected.beta_included is not None:
        np.testing.assert_array_equal(np.asarray(result.beta_included), expected.beta_included)


FLOAT_FIELDS = [f for f in probes.StepProbe._fields if f != "beta_included"]


@pytest.fixture(scope="module")
def quad(x64):
    return Quadratic()


@pytest.fixture(scope="module")
def quad_probes(quad):
    """One jitted probe per strategy, shared by all quadratic tests (each compiles per K/direction)."""
    return {key: probes.make_step_probe(quad.loss_fn, **cfg) for key, cfg in STRATEGY_CONFIGS.items()}


@pytest.mark.parametrize("key", list(STRATEGY_CONFIGS))
@pytest.mark.parametrize("custom_direction", [False, True], ids=["d=g", "d=custom"])
@pytest.mark.parametrize("K", [1, 5])
def test_quadratic_closed_form(quad, quad_probes, key, custom_direction, K):
    direction = quad.direction if custom_direction else None
    steps = UNSORTED_STEPS[K]
    result = quad_probes[key](quad.params, None, steps, direction)
    for name in FLOAT_FIELDS:
        assert getattr(result, name).dtype == jnp.float64, name
    assert result.beta_included.dtype == jnp.bool_
    assert result.loss.shape == result.grad_change.shape == result.step_sizes.shape == (K,)
    check_probe(result, quad.expected(steps, direction))


def test_step_probe_function_matches_make_step_probe(quad):
    """The one-shot function and the built (jitted) probe give the same exact answer (rtol 1e-12:
    the same float64 program, compiled twice)."""
    steps = UNSORTED_STEPS[5]
    for strategy in ("auto", "unroll", "vmap", "map"):
        result = probes.step_probe(quad.loss_fn, quad.params, None, steps, direction=quad.direction, strategy=strategy)
        check_probe(result, quad.expected(steps, quad.direction))
        built = probes.make_step_probe(quad.loss_fn, strategy=strategy)(quad.params, None, steps, quad.direction)
        check_probe(built, quad.expected(steps, quad.direction))
        for name, value in result._asdict().items():
            np.testing.assert_allclose(np.asarray(getattr(built, name)), np.asarray(value), rtol=1e-12,
                                       err_msg=name)


# ------------------------------------------------------------------------------------------------
# mutation tests: the checker must reject plausible wrong implementations


def test_mutants_are_rejected(quad, quad_probes):
    steps = UNSORTED_STEPS[5]
    d = quad.direction
    result = quad_probes["unroll"](quad.params, None, steps, d)
    expected = quad.expected(steps, d)
    check_probe(result, expected)  # the real thing passes

    theta, dflat = quad.flat(quad.params), quad.flat(d)
    g = quad.grad(theta)
    Ad = quad.A @ dflat
    # Sanity: the test problem separates the mutants (‖d‖ ≠ 1, d not parallel to g).
    assert abs(np.linalg.norm(dflat) - 1) > 0.5
    assert abs(g @ dflat) / (np.linalg.norm(g) * np.linalg.norm(dflat)) < 0.99

    mutants = {
        # The public notebook's bug: no division by the distance ‖ηd‖.
        "no_divide": expected._replace(effective_beta=np.max(steps) * np.linalg.norm(Ad)),
        # Dividing by η only, not by ‖ηd‖.
        "divide_by_eta_only": expected._replace(effective_beta=np.linalg.norm(Ad)),
        # Gradient change measured against the direction instead of g.
        "change_vs_direction": expected._replace(
            grad_change=np.array([np.linalg.norm(quad.grad(theta - eta * dflat) - dflat) for eta in steps])
        ),
        # grad_norm reported as ‖d‖ for a custom direction.
        "grad_norm_is_direction_norm": expected._replace(grad_norm=np.linalg.norm(dflat)),
        # Wrong sign: θ + ηd.
        "plus_sign": expected._replace(loss=np.array([quad.L(theta + eta * dflat) for eta in steps])),
        # Step sizes sorted, results no longer aligned with the caller's order.
        "sorted": expected._replace(
            step_sizes=np.sort(steps), loss=expected.loss[np.argsort(steps)]
        ),
    }
    for name, mutant in mutants.items():
        with pytest.raises(AssertionError):
            check_probe(result._replace(**{k: jnp.asarray(v) for k, v in mutant._asdict().items()}), expected)
        # And the other way round: the checker rejects a mutant as the "result".
        with pytest.raises(AssertionError):
            check_probe(mutant, expected)
    # The no-divide value differs from effective β by far more than the tolerance.
    assert abs(float(np.max(result.grad_change)) - float(result.effective_beta)) > 0.1 * float(result.effective_beta)


# ------------------------------------------------------------------------------------------------
# tiny MLP against a naive loop of jax.grad


@pytest.fixture(scope="module")
def mlp(x64):
    key = jax.random.key(0)
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    params = {
        "l1": {"w": jax.random.normal(k1, (5, 8)) / np.sqrt(5), "b": 0.1 * jax.random.normal(k2, (8,))},
        "l2": {"w": jax.random.normal(k3, (8, 3)) / np.sqrt(8), "b": jnp.zeros(3)},
    }
    batch = {"x": jax.random.normal(k4, (16, 5)), "y": jax.random.randint(k5, (16,), 0, 3)}

    def loss_fn(params, batch):
        h = jnp.tanh(batch["x"] @ params["l1"]["w"] + params["l1"]["b"][None, :])
        logits = h @ params["l2"]["w"] + params["l2"]["b"][None, :]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, batch["y"][:, None], axis=1))

    direction = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params)
    return loss_fn, params, batch, direction


def naive_probe(loss_fn, params, batch, step_sizes, direction=None):
    """Plain Python loop: one jax.grad per step size, norms in numpy."""
    grad = jax.grad(loss_fn)
    g = [np.asarray(x) for x in jax.tree.leaves(grad(params, batch))]
    d_tree = grad(params, batch) if direction is None else direction
    d = [np.asarray(x) for x in jax.tree.leaves(d_tree)]
    d_norm = np.sqrt(sum(np.sum(x**2) for x in d))
    losses, changes = [], []
    for eta in step_sizes:
        moved = jax.tree.map(lambda p, v: p - eta * v, params, d_tree)
        losses.append(float(loss_fn(moved, batch)))
        gk = [np.asarray(x) for x in jax.tree.leaves(grad(moved, batch))]
        changes.append(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(gk, g))))
    changes = np.array(changes)
    dist = np.abs(np.asarray(step_sizes)) * d_norm
    return probes.StepProbe(
        step_sizes=np.asarray(step_sizes),
        loss0=float(loss_fn(params, batch)),
        grad_norm=np.sqrt(sum(np.sum(x**2) for x in g)),
        loss=np.array(losses),
        grad_change=changes,
        effective_beta=np.max(changes[dist > 0] / dist[dist > 0]),
        grad_change_floor=np.nan,
        beta_included=dist > 0,
    )


@pytest.mark.parametrize("key", ["unroll", "vmap", "map"])
@pytest.mark.parametrize("custom_direction", [False, True], ids=["d=g", "d=custom"])
def test_mlp_against_naive_loop(mlp, key, custom_direction):
    loss_fn, params, batch, direction = mlp
    direction = direction if custom_direction else None
    steps = np.array([0.4, -0.1, 0.05, 1.5, 0.2])  # unsorted, one negative (distance uses |η|)
    result = probes.step_probe(loss_fn, params, batch, steps, direction=direction, **STRATEGY_CONFIGS[key])
    check_probe(result, naive_probe(loss_fn, params, batch, steps, direction))


# ------------------------------------------------------------------------------------------------
# dtypes, jit, recompilation


@pytest.mark.parametrize("enable_x64", [True, False], ids=["x64-on", "x64-off"])
def test_float32_dtype_preserved(quad, enable_x64):
    params32 = jax.tree.map(lambda p: np.asarray(p, np.float32), quad.params)
    direction32 = jax.tree.map(lambda p: np.asarray(p, np.float32), quad.direction)
    A32, b32, c32 = (np.asarray(v, np.float32) for v in (quad.A, quad.b, quad.c))
    steps = UNSORTED_STEPS[5]  # float64 numpy step sizes: must be cast to float32

    def loss32(params, batch):
        x = ravel_pytree(params)[0]
        return 0.5 * x @ (A32 @ x) + b32 @ x + c32

    results = {}
    with jax.enable_x64(enable_x64):
        params32 = jax.tree.map(jnp.asarray, params32)
        for strategy in ("unroll", "vmap"):
            seen = []

            def spy(params, batch):
                seen.append(jax.tree.map(lambda p: p.dtype, params))
                return loss32(params, batch)

            result = probes.step_probe(spy, params32, None, steps, direction=direction32, strategy=strategy)
            for name in FLOAT_FIELDS:
                assert getattr(result, name).dtype == jnp.float32, (name, getattr(result, name).dtype)
            assert all(dt == jnp.float32 for tree in seen for dt in jax.tree.leaves(tree))
            results[strategy] = result
    # Outside the context (the closed form is numpy float64): rounding θ, A, b, d to float32 moves
    # values by ~1e-7 relative.
    for result in results.values():
        check_probe(result, quad.expected(steps, quad.direction), rtol=RTOL32)


def test_inside_jit(quad):
    steps = jnp.asarray(UNSORTED_STEPS[5])
    expected = quad.expected(steps, quad.direction)

    @jax.jit
    def outer(params, steps, direction):
        return probes.step_probe(quad.loss_fn, params, None, steps, direction=direction, strategy="vmap")

    check_probe(outer(quad.params, steps, quad.direction), expected)
    jitted = jax.jit(probes.step_probe, static_argnums=0, static_argnames=("strategy", "chunk_size"))
    check_probe(jitted(quad.loss_fn, quad.params, None, steps, direction=quad.direction), expected)
    gn = jax.jit(lambda p: probes.grad_norms(quad.loss_fn, p, None))(quad.params)
    assert_close(gn.total, expected.grad_norm, RTOL64, name="grad_norms under jit")


def test_no_recompile_on_new_values(quad):
    traces = []

    def counted_loss(params, batch):
        traces.append(1)  # Python side effect: runs only while tracing
        return quad.loss_fn(params, batch) * batch

    probe = probes.make_step_probe(counted_loss, strategy="unroll")
    first = probe(quad.params, jnp.float64(1.0), jnp.asarray(UNSORTED_STEPS[5]), quad.direction)
    n_traces = len(traces)
    assert n_traces > 0
    new_params = jax.tree.map(lambda p: 1.5 * p, quad.params)
    new_direction = jax.tree.map(lambda p: -p, quad.direction)
    second = probe(new_params, jnp.float64(2.0), jnp.asarray(UNSORTED_STEPS[5][::-1] * 0.5), new_direction)
    assert len(traces) == n_traces, "make_step_probe retraced on a call that changed only values"
    assert probe._cache_size() == 1
    assert not np.allclose(first.loss, second.loss[::-1])

    # The plain function caches on loss_fn too.
    traces.clear()
    probes.step_probe(counted_loss, quad.params, jnp.float64(1.0), UNSORTED_STEPS[5])
    n_traces = len(traces)
    probes.step_probe(counted_loss, new_params, jnp.float64(3.0), UNSORTED_STEPS[5] + 0.1)
    assert len(traces) == n_traces, "step_probe retraced on a call that changed only values"


# ------------------------------------------------------------------------------------------------
# zero step sizes and zero directions (0/0 entries)


@pytest.mark.parametrize("key", ["unroll", "vmap"])
def test_zero_step_excluded(quad, quad_probes, key):
    steps = np.array([0.0, 0.3, 0.1])
    result = quad_probes[key](quad.params, None, steps, None)
    expected = quad.expected(steps)
    assert np.isfinite(result.effective_beta)
    assert_close(result.effective_beta, expected.effective_beta, RTOL64, name="effective_beta")
    assert_close(result.loss, expected.loss, RTOL64, name="loss")
    # η=0: the moved point is θ itself; only rounding of the same gradient can separate them.
    assert_close(result.grad_change, expected.grad_change, RTOL64, atol=1e-13 * float(expected.grad_norm), name="grad_change")


def test_all_zero_steps_or_zero_direction_give_nan(quad, quad_probes):
    probe = quad_probes["unroll"]
    result = probe(quad.params, None, np.zeros(2), None)
    assert np.isnan(result.effective_beta)
    assert np.all(np.isfinite(result.loss)) and np.all(np.isfinite(result.grad_change))
    zero_direction = jax.tree.map(jnp.zeros_like, quad.params)
    result = probe(quad.params, None, UNSORTED_STEPS[5], zero_direction)
    assert np.isnan(result.effective_beta)
    assert_close(result.loss, np.full(5, float(result.loss0)), RTOL64, name="loss along 0")


# ------------------------------------------------------------------------------------------------
# argument validation


def test_validation_errors(quad):
    with pytest.raises(ValueError, match=r"'auto', 'unroll', 'vmap', 'map'"):
        probes.step_probe(quad.loss_fn, quad.params, None, UNSORTED_STEPS[5], strategy="loop")
    with pytest.raises(ValueError, match="strategy must be one of"):
        probes.make_step_probe(quad.loss_fn, strategy="scan")
    with pytest.raises(ValueError, match="chunk_size"):
        probes.make_step_probe(quad.loss_fn, strategy="unroll", chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        probes.make_step_probe(quad.loss_fn, strategy="vmap", chunk_size=0)
    with pytest.raises(ValueError, match="1-D"):
        probes.step_probe(quad.loss_fn, quad.params, None, 0.1)
    with pytest.raises(ValueError, match="1-D"):
        probes.step_probe(quad.loss_fn, quad.params, None, np.zeros(0))
    with pytest.raises(ValueError, match="structure"):
        probes.step_probe(quad.loss_fn, quad.params, None, UNSORTED_STEPS[1], direction={"w": jnp.ones(4)})
    with pytest.raises(ValueError, match="shape"):
        probes.step_probe(
            quad.loss_fn, quad.params, None, UNSORTED_STEPS[1], direction={"w": jnp.ones(4), "b": jnp.ones(3)}
        )


# ------------------------------------------------------------------------------------------------
# lr_multiples


def test_lr_multiples_paper_range():
    steps = probes.lr_multiples(0.1)
    assert_close(steps, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4], 1e-15, name="lr_multiples(0.1)")
    assert_close(probes.lr_multiples(0.1, num=1), [0.05], 1e-15)
    assert_close(probes.lr_multiples(2.0, lo=1.0, hi=1.0, num=3), [2.0, 2.0, 2.0], 0)
    assert_close(probes.lr_multiples(1e-6, lo=0.01, hi=30, num=13)[[0, -1]], [1e-8, 3e-5], 1e-12)


@settings(max_examples=50, deadline=None)
@given(
    lr=st.floats(1e-6, 10.0),
    lo=st.floats(1e-3, 5.0),
    span=st.floats(0.0, 50.0),
    num=st.integers(1, 40),
)
def test_lr_multiples_property(lr, lo, span, num):
    hi = lo + span
    steps = probes.lr_multiples(lr, lo=lo, hi=hi, num=num)
    assert steps.shape == (num,)
    assert np.all(steps > 0)
    assert_close(steps[0], lo * lr, 1e-12)
    if num > 1:
        assert_close(steps[-1], hi * lr, 1e-12)
        assert_close(np.diff(steps), np.full(num - 1, (hi - lo) * lr / (num - 1)), 1e-9, atol=1e-12 * hi * lr)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), "lr=0.0 must be > 0"),
        (dict(lr=-0.1), "lr=-0.1 must be > 0"),
        (dict(lr=float("nan")), "lr=nan must be finite"),
        (dict(lr=float("inf")), "lr=inf must be finite"),
        (dict(lr="0.1"), "lr='0.1' is not a number"),
        (dict(lr=0.1, lo=0.0), "lo=0.0 must be > 0"),
        (dict(lr=0.1, lo=-1.0), "lo=-1.0 must be > 0"),
        (dict(lr=0.1, lo=2.0, hi=1.0), "lo <= hi"),
        (dict(lr=0.1, hi=float("inf")), "hi=inf must be finite"),
        (dict(lr=0.1, num=0), "num=0 must be >= 1"),
        (dict(lr=0.1, num=2.5), "num=2.5 is not an integer"),
        (dict(lr=0.1, num=True), "num=True is not an integer"),
    ],
)
def test_lr_multiples_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        probes.lr_multiples(**kwargs)


# ------------------------------------------------------------------------------------------------
# grad_norms, noise_floor, summarize, docstring examples


def test_grad_norms_quadratic(quad):
    result = probes.grad_norms(quad.loss_fn, quad.params, None)
    g = quad.grad(quad.flat(quad.params))  # ravel order of {"b", "w"}: b (2) then w (4)
    assert jax.tree.structure(result.per_leaf) == jax.tree.structure(quad.params)
    assert_close(result.total, np.linalg.norm(g), RTOL64, name="total")
    assert_close(result.per_leaf["b"], np.linalg.norm(g[:2]), RTOL64, name="per_leaf b")
    assert_close(result.per_leaf["w"], np.linalg.norm(g[2:]), RTOL64, name="per_leaf w")
    leaves = np.array(jax.tree.leaves(result.per_leaf))
    assert_close(result.total, np.sqrt(np.sum(leaves**2)), RTOL64, name="total vs per-leaf")


def test_grad_norms_mlp(mlp):
    loss_fn, params, batch, _ = mlp
    result = probes.grad_norms(loss_fn, params, batch)
    g = jax.grad(loss_fn)(params, batch)
    for got, leaf in zip(jax.tree.leaves(result.per_leaf), jax.tree.leaves(g)):
        assert got.shape == ()
        assert_close(got, np.linalg.norm(np.asarray(leaf).ravel()), RTOL64)
    leaves = np.array(jax.tree.leaves(result.per_leaf))
    assert_close(result.total, np.sqrt(np.sum(leaves**2)), RTOL64, name="total vs per-leaf")


def test_noise_floor_zero_on_cpu(quad, mlp):
    assert float(probes.noise_floor(quad.loss_fn, quad.params, None)) == 0.0
    loss_fn, params, batch, _ = mlp
    floor = probes.noise_floor(loss_fn, params, batch)
    assert np.isfinite(floor) and floor.shape == () and floor.dtype == jnp.float64
    if jax.default_backend() == "cpu":
        assert float(floor) == 0.0
    with pytest.raises(ValueError, match="outside jax.jit"):
        jax.jit(lambda p: probes.noise_floor(quad.loss_fn, p, None))(quad.params)


def test_summarize(quad, quad_probes):
    steps = UNSORTED_STEPS[5]
    result = quad_probes["unroll"](quad.params, None, steps, None)
    summary = probes.summarize(result)
    expected = quad.expected(steps)
    assert all(isinstance(v, float) for k, v in summary.items()
               if k not in ("num_steps", "num_beta_excluded"))
    assert summary["num_steps"] == 5
    assert_close(summary["loss_min"], expected.loss.min(), RTOL64)
    assert_close(summary["loss_max"], expected.loss.max(), RTOL64)
    assert_close(summary["grad_change_min"], expected.grad_change.min(), RTOL64)
    assert_close(summary["grad_change_max"], expected.grad_change.max(), RTOL64)
    assert_close(summary["effective_beta"], expected.effective_beta, RTOL64)
    assert_close(summary["grad_norm"], expected.grad_norm, RTOL64)
    nan_summary = probes.summarize(result._replace(loss=result.loss.at[2].set(jnp.nan), effective_beta=jnp.nan))
    assert np.isnan(nan_summary["loss_min"]) and np.isnan(nan_summary["loss_max"])
    assert np.isnan(nan_summary["effective_beta"])


@pytest.mark.parametrize("module", ["_step", "_step_choice", "_precision", "_paths", "_ics", "_emulate"])
def test_docstring_examples(module):
    import importlib

    mod = importlib.import_module(f"landscape.probes.{module}")
    globs = {**vars(mod), "jnp": jnp, "jax": jax}
    failures, attempted = doctest.testmod(
        mod, globs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert attempted > 0
    assert failures == 0


# ----------------------------------------------------------------------------------------------
# rounding floor, NaN points, fused gradient


def test_rounding_floor_quadratic(quad):
    """On ½θᵀAθ the floor is ‖A δ‖ for the probe's own perturbation δ = ±eps·|θ| (float64)."""
    from landscape.probes._precision import _FLOOR_ULPS, _rounding_perturbation

    r = probes.step_probe(quad.loss_fn, quad.params, None, UNSORTED_STEPS[5])
    perturbed = _rounding_perturbation(quad.params, _FLOOR_ULPS)
    delta = np.concatenate([np.ravel(np.asarray(a) - np.asarray(b)) for a, b in
                            zip(jax.tree.leaves(perturbed), jax.tree.leaves(quad.params))])
    expected = np.linalg.norm(np.asarray(quad.A) @ delta)
    # θ + δ is itself rounded to the float64 grid (≤ ½ ulp per entry against δ's 1 ulp), and the
    # gradient carries its own rounding: the floor matches ‖Aδ‖ only to a factor of about 2.
    assert 0.3 * expected <= float(r.grad_change_floor) <= 3 * expected
    assert np.all(np.asarray(r.beta_included))  # every change is ~1e12 floors away


def test_floor_excludes_points_below_it():
    """A change at most c floors above the floor is left out of β; with floor_factor=0 it is not."""
    loss_fn = lambda p, b: 0.5 * jnp.sum(b * p["w"] ** 2)  # noqa: E731
    params, batch = {"w": jnp.ones(3, jnp.float32)}, jnp.array([1.0, 2.0, 3.0], jnp.float32)
    steps = jnp.array([1e-12, 1e-3, 1e-2], jnp.float32)
    r = probes.step_probe(loss_fn, params, batch, steps)
    # θ − 1e-12·g rounds back to θ in float32: its change is 0, below any floor
    np.testing.assert_array_equal(np.asarray(r.beta_included), [False, True, True])
    assert_close(r.effective_beta, np.linalg.norm([1, 4, 9]) / np.linalg.norm([1, 2, 3]), 1e-3)
    r0 = probes.step_probe(loss_fn, params, batch, steps, floor_factor=0.0)
    assert np.all(np.asarray(r0.beta_included)) and np.isnan(float(r0.grad_change_floor))


def test_nan_loss_point_gives_nan_beta():
    """A probed point whose loss is NaN (but whose gradient is finite) has no finite β."""
    def loss_fn(p, b):
        return 0.5 * jnp.sum(p ** 2) + jnp.where(p[0] < 0, jnp.nan, 0.0)

    r = probes.step_probe(loss_fn, jnp.ones(2), None, jnp.array([0.5, 2.0]))  # θ−2g = (−1, −1)
    assert np.isnan(float(r.loss[1])) and np.all(np.isfinite(np.asarray(r.grad_change)))
    assert np.isnan(float(r.effective_beta))


def test_fused_value_and_grad_equals_unfused(mlp, x64):
    """Handing the probe the step's own (L, g) changes nothing (float64, exact up to rounding)."""
    loss_fn, params, batch, _ = mlp
    probe = probes.make_step_probe(loss_fn)
    steps = probes.lr_multiples(0.1)
    plain = probe(params, batch, steps)
    fused = probe(params, batch, steps, None, jax.value_and_grad(loss_fn)(params, batch))
    for name in EXACT_FIELDS + ["beta_included"]:
        np.testing.assert_allclose(np.asarray(getattr(fused, name)),
                                   np.asarray(getattr(plain, name)), rtol=1e-14, err_msg=name)
    # the floor is itself a difference of two rounded gradients: equal in size, not in digits
    assert 0.5 < float(fused.grad_change_floor) / float(plain.grad_change_floor) < 2
