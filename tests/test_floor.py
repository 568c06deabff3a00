"""The rounding floor on losses whose exact effective β is known in closed form (issue: a floor
that sees the quantization of the gradient itself).

On a quadratic L = cᵀθ + ½θᵀAθ (or a least-squares sum over N rows, A = XᵀX) the gradient change
at θ − ηg is exactly ηAg, so the effective β is ‖Ag‖/‖g‖ at every η. In float32 the small-η
changes are rounding: with a strong linear term c (most of g does not move with θ) or a loss
summed over many rows, ∇L(θ − ηg) and g round to the same coarse grid. The floor — the larger of
the sensitivity floor and the evaluation floor ε‖g‖ — must keep those η out: float32 β within 3 %
of float64 β on every member (measured 0.1–1.6 %), while β over every η (floor_factor=0) is off by
1.4–9× (measured), so the test fails on a floor that lets rounding in.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import probes

RNG = np.random.default_rng(0)
N = 50
_Q = np.linalg.qr(RNG.normal(size=(N, N)))[0]
A = _Q @ np.diag(np.geomspace(10, 0.01, N)) @ _Q.T
THETA = RNG.normal(size=N)
X, Y = RNG.normal(size=(4096, N)), RNG.normal(size=4096)
REL = np.geomspace(1e-8, 1e-1, 15)  # η‖g‖/‖θ‖: from pure rounding to a clear change


def quadratic(c):
    return lambda p, b: c * jnp.sum(p) + 0.5 * p @ (b["A"] @ p)


def least_squares(p, b):
    return 0.5 * jnp.sum((b["X"] @ p - b["Y"]) ** 2)


CASES = {"quadratic": quadratic(0.0), "linear 1e3": quadratic(1e3), "linear 1e5": quadratic(1e5),
         "sum over 4096 rows": least_squares}


def _probe(loss_fn, dtype, **kw):
    batch = {"A": jnp.asarray(A, dtype), "X": jnp.asarray(X, dtype), "Y": jnp.asarray(Y, dtype)}
    params = jnp.asarray(THETA, dtype)
    g = jax.grad(loss_fn)(params, batch)
    etas = REL * np.linalg.norm(THETA) / float(jnp.linalg.norm(g))
    return probes.step_probe(loss_fn, params, batch, etas, **kw)


@pytest.mark.parametrize("name", CASES)
def test_float32_beta_matches_float64_on_the_closed_form_family(name):
    loss_fn = CASES[name]
    with jax.enable_x64(True):
        exact = _probe(loss_fn, np.float64)
        g = np.asarray(jax.grad(loss_fn)(jnp.asarray(THETA), {"A": jnp.asarray(A), "X": jnp.asarray(X),
                                                             "Y": jnp.asarray(Y)}))
        hess = A if name != "sum over 4096 rows" else X.T @ X
        closed = np.linalg.norm(hess @ g) / np.linalg.norm(g)
        assert abs(float(exact.effective_beta) / closed - 1) < 1e-6  # float64 is the closed form
        f32 = _probe(loss_fn, np.float32)
        unfloored = _probe(loss_fn, np.float32, floor_factor=0.0)
    assert abs(float(f32.effective_beta) / closed - 1) < 0.03, (name, float(f32.effective_beta), closed)
    assert int(np.sum(f32.beta_included)) >= 1  # β stays defined
    if name != "quadratic":  # rounding would enter β without the floor
        assert float(unfloored.effective_beta) / closed > 1.3


def test_bfloat16_params_are_probed_in_float32_copies():
    """bf16 θ: the probe equals the float32 probe of the widened θ (bit for bit) and β is finite,
    where a probe in bf16 itself would exclude every η (its floor, ε = 2⁻⁷, is above them)."""
    def mlp(p, b):
        h = jnp.tanh(b["x"] @ p["w1"].astype(jnp.float32))
        return jnp.mean((h @ p["w2"].astype(jnp.float32) - b["y"]) ** 2)

    batch = {"x": jnp.asarray(RNG.normal(size=(64, 8)), jnp.float32),
             "y": jnp.asarray(RNG.normal(size=64), jnp.float32)}
    p16 = {"w1": jnp.asarray(RNG.normal(size=(8, 16)) * 0.5, jnp.bfloat16),
           "w2": jnp.asarray(RNG.normal(size=16) * 0.5, jnp.bfloat16)}
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), p16)
    etas = np.array([0.05, 0.1, 0.2, 0.4])
    r16, r32 = probes.step_probe(mlp, p16, batch, etas), probes.step_probe(mlp, p32, batch, etas)
    assert np.isfinite(float(r16.effective_beta))
    for field in ("loss", "grad_change", "effective_beta", "grad_change_floor"):
        np.testing.assert_array_equal(getattr(r16, field), getattr(r32, field))


def test_floor_sign_pattern_is_fixed_balanced_and_per_leaf():
    """The floor's δ = ±ε|θ|: signs ±1, about half each, the same on every call, another pattern
    for every leaf (a hash of the position, no random key: nothing for XLA:CPU to compile slowly)."""
    from landscape.probes._precision import _rounding_perturbation, _sign_pattern

    a, b = np.asarray(_sign_pattern((100, 50), 0, jnp.float32)), np.asarray(_sign_pattern((5000,), 1, jnp.float32))
    assert set(np.unique(a)) == {-1.0, 1.0} and abs(a.mean()) < 0.05 and abs(b.mean()) < 0.05
    np.testing.assert_array_equal(a, np.asarray(_sign_pattern((100, 50), 0, jnp.float32)))
    assert np.mean(a.ravel() == b) < 0.6  # leaf 1 is not leaf 0's pattern
    params = {"w": jnp.full((4, 3), 2.0, jnp.float32), "n": jnp.arange(3)}
    delta = _rounding_perturbation(params, 1.0)["w"] - params["w"]
    np.testing.assert_array_equal(np.abs(np.asarray(delta)), 2.0 * np.finfo(np.float32).eps)
    np.testing.assert_array_equal(np.asarray(_rounding_perturbation(params, 1.0)["n"]), np.arange(3))
