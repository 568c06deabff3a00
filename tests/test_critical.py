"""Critical sharpness λ_c = 2/η_c (Kalra et al. 2026) against its closed form on quadratics.

On L(θ) = ½ θᵀAθ and a direction d, L(θ − ηd) > L(θ) exactly when η > 2 gᵀd / dᵀAd, so
λ_c = dᵀAd / gᵀd (= gᵀAg/gᵀg along the gradient, ≤ λ_max(A)). The search brackets η_c to a
relative width tol, so the measured λ_c is within a factor (1 ± tol) of the exact one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landscape import probes
from landscape.engine import CriticalSharpnessHook, fit
from landscape.train import read_run

pytestmark = pytest.mark.usefixtures("x64")

RNG = np.random.default_rng(0)
Q = np.linalg.qr(RNG.normal(size=(6, 6)))[0]
A = Q @ np.diag([10.0, 4.0, 2.0, 1.0, 0.5, 0.1]) @ Q.T


def quad(params, batch):
    return 0.5 * params["w"] @ (jnp.asarray(A) @ params["w"])


def test_along_the_gradient_is_the_rayleigh_quotient():
    p = {"w": jnp.asarray(RNG.normal(size=6))}
    g = jax.grad(quad)(p, None)
    exact = float(g["w"] @ A @ g["w"] / (g["w"] @ g["w"]))
    for guess in (1e-4, 0.15, 30.0):  # from below, near, and far above η_c
        r = probes.critical_sharpness(quad, p, None, g, guess=guess, tol=1e-3)
        assert 2 / r.upper <= exact <= 2 / r.lower
        assert abs(r.sharpness / exact - 1) < 1e-3
        assert exact <= 10.0 + 1e-9  # below λ_max
        assert r.num_evals <= 40


def test_a_direction_that_never_raises_the_loss_gives_nan():
    p = {"w": jnp.asarray(RNG.normal(size=6))}
    r = probes.critical_sharpness(quad, p, None, {"w": jnp.zeros(6)}, max_evals=12)
    assert np.isnan(r.sharpness) and r.num_evals == 12


@pytest.mark.parametrize("tx, lr", [(optax.sgd(0.05), 0.05), (optax.adam(0.02), 0.02)])
def test_hook_along_the_update_matches_the_closed_form(tmp_path, tx, lr):
    """The hook's λ_c at step t = dᵀAd/gᵀd with d = −Δ_t/η_t from a hand-run optax loop."""
    p0 = {"w": jnp.asarray(RNG.normal(size=6))}
    fit(quad, p0, tx, lambda t: np.zeros(1), steps=6, workdir=tmp_path, progress=False,
        learning_rate=lr, hooks=[CriticalSharpnessHook(every=2, tol=1e-4)])
    records = read_run(tmp_path)["critical"]
    assert [r["step"] for r in records] == [0, 2, 4]
    p, state = p0, tx.init(p0)
    for t in range(5):
        g = jax.grad(quad)(p, None)
        delta, new_state = tx.update(g, state, p)
        if t % 2 == 0:
            d = -delta["w"] / lr
            exact = float(d @ A @ d / (g["w"] @ d))
            assert abs(records[t // 2]["sharpness"] / exact - 1) < 2e-4, (t, records[t // 2], exact)
        p, state = optax.apply_updates(p, delta), new_state


def test_preconditioned_curvature_hook_against_the_dense_matrix(tmp_path):
    """CurvatureHook(preconditioned=True) records λ_max(P^{-1/2} A P^{-1/2}) with Cohen et al.
    2022's P = (1 − β₁ᵗ)(√(ν/(1 − β₂ᵗ)) + ε) from the step's Adam state (float64; Lanczos with
    num_iters = dim spans the space: rtol 1e-8), next to the plain λ_max(A) = 10."""
    from landscape.engine import CurvatureHook

    p0 = {"w": jnp.asarray(RNG.normal(size=6))}
    tx = optax.adam(0.02)
    hook = CurvatureHook(every=2, num_iters=6, preconditioned=True,
                         preconditioner_options={"b1": 0.9})
    fit(quad, p0, tx, lambda t: np.zeros(1), steps=5, workdir=tmp_path, progress=False, hooks=[hook])
    records = read_run(tmp_path)["curvature"]
    p, state = p0, tx.init(p0)
    for t in range(5):
        g = jax.grad(quad)(p, None)
        delta, state = tx.update(g, state, p)  # P of step t: the state after update t
        if t in (0, 2, 4):
            adam = state[0]
            c = int(adam.count)
            diag = (1 - 0.9 ** c) * (np.sqrt(np.asarray(adam.nu["w"]) / (1 - 0.999 ** c)) + 1e-8)
            s = 1 / np.sqrt(diag)
            exact = np.linalg.eigvalsh(s[:, None] * A * s[None, :])[-1]
            rec = records[t // 2]
            assert abs(rec["preconditioned_lambda_max"] / exact - 1) < 1e-8, (rec, exact)
            assert abs(rec["lambda_max"] / 10.0 - 1) < 1e-8
        p = optax.apply_updates(p, delta)
