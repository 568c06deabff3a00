"""Tests for landscape.probes.adam_preconditioner against preconditioners computed by hand.

Reference: the gradients g_1 … g_t fed to a real optax optimizer are recorded, and ν_t =
Σ_s (1 − β₂) β₂^{t−s} g_s² and P = √(ν_t / (1 − β₂^t)) + ε are computed in numpy float64 (no optax).
Tolerance RTOL = 1e-12: both sides are a handful of float64 operations (≈ 1e-15 relative apart);
each plausible mistake is far outside it, and the tests assert so explicitly for the mistakes
named in the issue: ε inside the root (≈ ε/(2√v̂) ≳ 1e-9 relative at ε = 1e-8, 1e-3 at ε = 1e-3),
no bias correction (×√(1/(1 − β₂^t)) ≈ 18 at t = 3), the count off by one (≈ 1/t relative), no ε
(ε/√v̂ relative).
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerance import assert_close

from landscape import probes
from landscape.probes import _precondition

pytestmark = pytest.mark.usefixtures("x64")

RTOL = 1e-12
LR = 0.05


def _init():
    rng = np.random.default_rng(0)
    return {"dense": {"kernel": jnp.asarray(rng.standard_normal((3, 2))),
                      "bias": jnp.asarray(0.1 * rng.standard_normal(2))}}


def _loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["dense"]["kernel"] + params["dense"]["bias"][None, :])
    return 0.5 * jnp.mean(jnp.sum((h - batch["y"]) ** 2, axis=-1))


def _batch():
    rng = np.random.default_rng(1)
    return {"x": jnp.asarray(rng.standard_normal((8, 3))), "y": jnp.asarray(rng.standard_normal((8, 2)))}


def run(opt, steps=3):
    """``(state, grads, last_update)`` after ``steps`` full-batch updates of ``opt``."""
    params, batch = _init(), _batch()
    state, grads, updates = opt.init(params), [], None
    for _ in range(steps):
        g = jax.grad(_loss)(params, batch)
        grads.append(g)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return state, grads, updates


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(l).reshape(-1) for l in jax.tree.leaves(tree)])


def ema(grads, decay, power):
    """Σ_s (1 − decay) decay^{t−s} g_s^power, flat, numpy float64."""
    t = len(grads)
    return sum((1 - decay) * decay ** (t - s) * flat(g) ** power for s, g in enumerate(grads, 1))


def far(actual, expected, factor=100.0):
    """True when ``actual`` is well outside RTOL of ``expected`` (the test would catch it)."""
    return np.max(np.abs(actual - expected) / np.abs(expected)) > factor * RTOL


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_adam_matches_hand_computation_and_catches_mistakes(eps):
    b1, b2, t = 0.9, 0.999, 3
    state, grads, last = run(optax.adam(LR, b1=b1, b2=b2, eps=eps), steps=t)
    P = probes.adam_preconditioner(state, b2=b2, eps=eps)
    assert jax.tree.structure(P) == jax.tree.structure(_init())
    nu = ema(grads, b2, 2)
    hand = np.sqrt(nu / (1 - b2**t)) + eps
    assert_close(flat(P), hand, RTOL, name="P")
    # the mistakes the issue names would fail that check
    assert far(np.sqrt(nu / (1 - b2**t) + eps), hand), "ε inside the root"
    assert far(np.sqrt(nu) + eps, hand), "no bias correction"
    assert far(np.sqrt(nu / (1 - b2 ** (t + 1))) + eps, hand), "count + 1"
    assert far(np.sqrt(nu / (1 - b2 ** (t - 1))) + eps, hand), "count − 1"
    assert far(np.sqrt(nu / (1 - b2**t)), hand), "no ε"
    # P is the denominator of the update optax made: Δθ_t = −η m̂_t / P, m̂ = m_t / (1 − β₁^t)
    m_hat = ema(grads, b1, 1) / (1 - b1**t)
    assert_close(flat(last), -LR * m_hat / hand, RTOL, name="last update")
    # b1 folds the first-moment correction in: Δθ_t = −η m_t / P_b1 with the state's raw m_t
    P_b1 = probes.adam_preconditioner(state, b2=b2, eps=eps, b1=b1)
    assert_close(flat(P_b1), (1 - b1**t) * hand, RTOL, name="P with b1")
    assert_close(flat(last), -LR * flat(state[0].mu) / flat(P_b1), RTOL, name="update, b1 form")


def test_eps_root_is_inside_the_root():
    b2, eps, eps_root = 0.99, 1e-3, 1e-4
    state, grads, last = run(optax.adam(LR, b2=b2, eps=eps, eps_root=eps_root))
    P = probes.adam_preconditioner(state, b2=b2, eps=eps, eps_root=eps_root)
    nu_hat = ema(grads, b2, 2) / (1 - b2**3)
    assert_close(flat(P), np.sqrt(nu_hat + eps_root) + eps, RTOL, name="P with eps_root")


def test_found_inside_any_optax_state():
    adam = run(optax.adam(LR))[0]
    direct = flat(probes.adam_preconditioner(adam))
    assert_close(flat(probes.adam_preconditioner(adam[0])), direct, 0, name="the state itself")
    # the same trajectory as plain Adam: the same P after 3 steps
    same = {"chain": optax.chain(optax.clip_by_global_norm(1e3), optax.adam(LR)),
            "multisteps": optax.MultiSteps(optax.adam(LR), every_k_schedule=1),
            "inject": optax.inject_hyperparams(optax.adam)(learning_rate=LR)}
    for name, opt in same.items():
        assert_close(flat(probes.adam_preconditioner(run(opt)[0])), direct, RTOL, name=name)
    # other trajectories (weight decay, Nesterov) share only the first gradient: compare at t = 1
    first = flat(probes.adam_preconditioner(run(optax.adam(LR), steps=1)[0]))
    other = {"adamw": optax.adamw(LR, weight_decay=1e-2), "nadam": optax.nadam(LR),
             "inject adamw": optax.inject_hyperparams(optax.adamw)(learning_rate=LR)}
    for name, opt in other.items():
        assert_close(flat(probes.adam_preconditioner(run(opt, steps=1)[0])), first, RTOL, name=name)


def test_inject_hyperparams_mismatch_raises():
    state = run(optax.inject_hyperparams(optax.adam)(learning_rate=LR, b2=0.99))[0]
    with pytest.raises(ValueError, match=r"b2=0.999 but the optimizer state records b2=0.99"):
        probes.adam_preconditioner(state)
    probes.adam_preconditioner(state, b2=0.99)


def test_rmsprop():
    decay, eps = 0.9, 1e-3
    # Cohen et al.'s RMSProp: P = √ν + ε (optax: eps_in_sqrt=False)
    state, grads, last = run(optax.rmsprop(LR, decay=decay, eps=eps, eps_in_sqrt=False))
    nu = ema(grads, decay, 2)
    P = probes.adam_preconditioner(state, eps=eps, kind="rmsprop")
    assert_close(flat(P), np.sqrt(nu) + eps, RTOL, name="rmsprop P")
    assert_close(flat(last), -LR * flat(grads[-1]) / flat(P), RTOL, name="rmsprop update")
    # optax's default eps_in_sqrt=True: denominator √(ν + ε) → eps=0, eps_root=ε
    state, grads, last = run(optax.rmsprop(LR, decay=decay, eps=eps))  # another trajectory
    nu = ema(grads, decay, 2)
    P = probes.adam_preconditioner(state, eps=0.0, eps_root=eps, kind="rmsprop")
    assert_close(flat(P), np.sqrt(nu + eps), RTOL, name="rmsprop P, eps in sqrt")
    assert_close(flat(last), -LR * flat(grads[-1]) / flat(P), RTOL, name="rmsprop update, in sqrt")
    # bias-corrected RMSProp keeps a count: b2 = decay
    state, grads, last = run(optax.rmsprop(LR, decay=decay, eps=eps, eps_in_sqrt=False,
                                           bias_correction=True))
    nu = ema(grads, decay, 2)
    P = probes.adam_preconditioner(state, b2=decay, eps=eps, kind="rmsprop")
    assert_close(flat(P), np.sqrt(nu / (1 - decay**3)) + eps, RTOL, name="rmsprop P, corrected")
    assert_close(flat(last), -LR * flat(grads[-1]) / flat(P), RTOL, name="rmsprop update, corrected")


def test_under_jit_matches_eager():
    state = run(optax.adamw(LR))[0]
    traced = jax.jit(lambda s: probes.adam_preconditioner(s))(state)
    assert_close(flat(traced), flat(probes.adam_preconditioner(state)), 1e-15, name="jit")


def test_errors():
    with pytest.raises(ValueError, match=r"no adam state .*ScaleByAdamState.*ScaleByRmsState"):
        probes.adam_preconditioner(run(optax.sgd(LR, momentum=0.9))[0])
    with pytest.raises(ValueError, match="no rmsprop state"):
        probes.adam_preconditioner(run(optax.adam(LR))[0], kind="rmsprop")
    with pytest.raises(ValueError, match="count is 0"):
        probes.adam_preconditioner(optax.adam(LR).init(_init()))
    with pytest.raises(ValueError, match="kind"):
        probes.adam_preconditioner(run(optax.adam(LR))[0], kind="adagrad")
    with pytest.raises(ValueError, match="b1"):
        probes.adam_preconditioner(run(optax.rmsprop(LR))[0], b1=0.9, kind="rmsprop")
    params = _init()
    two = optax.multi_transform({"a": optax.adam(LR), "b": optax.adam(LR)},
                                {"dense": {"kernel": "a", "bias": "b"}})
    with pytest.raises(ValueError, match="2 adam states"):
        probes.adam_preconditioner(two.init(params))
    # the preconditioned probes refuse a P that does not fit params, naming the leaf
    P = probes.adam_preconditioner(run(optax.adam(LR))[0])
    bad = {"dense": {**P["dense"], "bias": P["dense"]["bias"].at[1].set(0.0)}}
    with pytest.raises(ValueError, match=r"leaf \['dense'\]\['bias'\] has 1 entry .* \(1,\)"):
        probes.hessian_trace(_loss, params, _batch(), key=jax.random.key(0), num_samples=2,
                             preconditioner=bad)


def test_docstring_examples():
    globs = {**vars(_precondition), "jnp": jnp, "jax": jax, "optax": optax}
    failures, attempted = doctest.testmod(
        _precondition, globs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False)
    assert attempted > 0
    assert failures == 0
