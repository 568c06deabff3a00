"""fit(loss_fn, params, optimizer, data): any JAX model through the engine, checked against hand loops.

The zoo: a plain-JAX tanh MLP regression (float64: exact comparisons), the same with integer
token inputs, and a Flax NNX CNN with BatchNorm through ``nnx_loss``. Every check compares the
engine against an independent computation (a naive optax loop, ``probes.step_probe`` on the
same θ_t and batch) or asserts an error a wrong implementation would not raise.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerance import assert_close

from landscape import probes
from landscape.config import ConfigError
from landscape.data import batch_indices
from landscape.engine import (CurvatureHook, Schedule, Stateful, StepProbeHook, attach, fit,
                              nnx_loss)
from landscape.train import read_run

pytestmark = pytest.mark.usefixtures("x64")

N, D, H, B, STEPS = 64, 3, 8, 16, 6
ETAS = np.array([0.05, 0.1, 0.2])


def mlp_loss(params, batch):
    pred = jnp.tanh(batch["x"] @ params["w1"]) @ params["w2"]
    err = pred - batch["y"]
    return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def pure_loss(params, batch):
    return mlp_loss(params, batch)[0]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(D, H)) * 0.7), "w2": jnp.asarray(rng.normal(size=H))}
    data = {"x": rng.normal(size=(N, D)), "y": rng.normal(size=N)}
    return params, data


def naive_adamw(params, data, steps):
    """The reference: a hand-written optax loop over the documented data order."""
    tx = optax.adamw(1e-2, weight_decay=1e-3)
    opt_state, thetas = tx.init(params), []
    for t in range(steps):
        idx = batch_indices(N, t, B, seed=0)
        batch = {k: v[idx] for k, v in data.items()}
        thetas.append((params, batch))
        g = jax.grad(pure_loss)(params, batch)
        updates, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, thetas


@pytest.fixture(scope="module")
def fitted(problem, tmp_path_factory):
    params, data = problem
    out = tmp_path_factory.mktemp("fit") / "run"
    result = fit(mlp_loss, params, optax.adamw(1e-2, weight_decay=1e-3), data, batch_size=B,
                 steps=STEPS, workdir=out, progress=False, learning_rate=1e-2,
                 hooks=[StepProbeHook(step_sizes=ETAS, schedule=Schedule(2)),
                        CurvatureHook(every=3, num_iters=8)])
    return result, read_run(out)


def test_fit_equals_a_hand_written_optax_loop(problem, fitted):
    """θ after fit == the naive loop's θ (float64, same order of operations: rtol 1e-12)."""
    params, data = problem
    expected, _ = naive_adamw(params, data, STEPS)
    result, run = fitted
    for k in expected:
        assert_close(result.params[k], expected[k], rtol=1e-12, name=k)
    assert [r["step"] for r in run["train"]] == list(range(STEPS))
    assert set(run["train"][0]) == {"step", "loss", "mae", "lr"}  # metrics under their own names
    assert run["config"]["engine"] == "fit" and run["config"]["setup"] is None
    assert "model" not in run["config"]  # never names a model that was not trained


def test_fused_probe_equals_step_probe_on_the_same_theta_and_batch(problem, fitted):
    """probes.jsonl at step t == probes.step_probe(θ_t, batch t) computed outside the engine
    (float64: the fused and the standalone gradient agree to rounding, rtol 1e-9)."""
    params, data = problem
    _, thetas = naive_adamw(params, data, STEPS)
    _, run = fitted
    assert [r["step"] for r in run["probes"]] == [0, 2, 4]
    for rec in run["probes"]:
        theta, batch = thetas[rec["step"]]
        ref = probes.step_probe(pure_loss, theta, batch, ETAS)
        assert_close(rec["loss"], ref.loss, rtol=1e-9, name="loss")
        assert_close(rec["grad_change"], ref.grad_change, rtol=1e-9, name="grad_change")
        assert_close(rec["effective_beta"], ref.effective_beta, rtol=1e-9, name="beta")
    dense = jax.jit(jax.hessian(pure_loss))(*thetas[3])
    flat = np.block([[np.asarray(dense[a][b]).reshape(np.size(thetas[3][0][a]), -1)
                      for b in ("w1", "w2")] for a in ("w1", "w2")])
    assert_close(run["curvature"][1]["lambda_max"], np.linalg.eigvalsh(flat)[-1], rtol=1e-6,
                 name="λ_max at step 3")


def test_resume_repeats_the_uninterrupted_run(problem, fitted, tmp_path):
    params, data = problem
    out = tmp_path / "resumed"
    kwargs = dict(batch_size=B, steps=STEPS, workdir=out, progress=False, learning_rate=1e-2,
                  checkpoint_every=2, hooks=[StepProbeHook(step_sizes=ETAS, schedule=Schedule(2)),
                                             CurvatureHook(every=3, num_iters=8)])

    def stop(step, row):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(mlp_loss, params, optax.adamw(1e-2, weight_decay=1e-3), data, on_step=stop, **kwargs)
    assert json.loads((out / "run.json").read_text())["final_step"] == 4
    result = fit(mlp_loss, params, optax.adamw(1e-2, weight_decay=1e-3), data, **kwargs)
    full, run = fitted
    resumed = read_run(out)
    for k in params:
        np.testing.assert_array_equal(result.params[k], full.params[k])
    assert resumed["train"] == run["train"]
    assert [r["effective_beta"] for r in resumed["probes"]] == [r["effective_beta"] for r in run["probes"]]


def test_integer_tokens_stay_integers(tmp_path):
    """A (B, T) int batch reaches the loss unchanged (an embedding lookup fails on floats)."""
    vocab, T = 11, 5
    tokens = np.random.default_rng(1).integers(0, vocab, size=(40, T + 1)).astype(np.int32)

    def lm_loss(params, batch):
        assert batch.dtype == jnp.int32
        logits = params["emb"][batch[:, :-1]] @ params["out"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

    params = {"emb": jnp.ones((vocab, 4)) * 0.1, "out": jnp.zeros((4, vocab))}
    fit(lm_loss, params, optax.adam(1e-2), lambda t: tokens[(t * 8) % 40:(t * 8) % 40 + 8],
        steps=3, workdir=tmp_path / "lm", progress=False)
    assert len(read_run(tmp_path / "lm")["train"]) == 3


def _bn_model():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(D, H, rngs=rngs)
            self.bn = nnx.BatchNorm(H, momentum=0.5, rngs=rngs)
            self.out = nnx.Linear(H, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(jnp.tanh(self.bn(self.lin(x))))[:, 0]

    return Net(nnx.Rngs(0))


def test_nnx_loss_trains_statistics_and_probes_leave_them(problem, tmp_path):
    """nnx_loss: the training step advances BatchNorm statistics, the probes (either mode)
    leave the model and the run's state as they were, and the two modes are different losses."""
    from flax import nnx

    _, data = problem
    model = _bn_model()
    before = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    loss_fn, params = nnx_loss(model, lambda out, b: jnp.mean((out - b["y"]) ** 2))
    hooks = [StepProbeHook(step_sizes=ETAS, schedule=Schedule(1)),
             StepProbeHook(step_sizes=ETAS, schedule=Schedule(1), mode="running_average",
                           name="probes_eval")]
    result = fit(loss_fn, params, optax.sgd(0.1), data, batch_size=B, steps=3,
                 workdir=tmp_path / "nnx", progress=False, hooks=hooks)
    after = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, before, after)  # the caller's model untouched
    mean = [v for p, v in jax.tree_util.tree_flatten_with_path(result.state)[0] if "mean" in str(p)]
    assert mean and not np.allclose(mean[0], 0.0)  # training moved the running mean
    run = read_run(tmp_path / "nnx")
    assert run["probes"][0]["loss0"] != run["probes_eval"][0]["loss0"]
    # the probes at step 1 see the statistics after step 0 only once: the hook re-running
    # the same probe on the same state gives the same numbers
    with attach(loss_fn, [StepProbeHook(step_sizes=ETAS)]) as hooks_again:
        idx = batch_indices(N, 0, B, seed=0)
        again = hooks_again.step(0, params, {k: v[idx] for k, v in data.items()})["probes"]
    assert_close(again[0].loss0, run["probes"][0]["loss0"], rtol=1e-12, name="loss0")


def test_stateful_loss_gets_the_step_key(tmp_path):
    """A Stateful loss sees fold_in(key(seed), t) at step t and the same key at every probed point."""
    def fn(params, state, batch, *, train, key):
        noise = jax.random.normal(key, ()) if train else 0.0
        loss = jnp.sum((params["w"] - batch) ** 2) + 0.0 * noise
        return loss, {"count": state["count"] + 1}, {"noise": noise}

    loss = Stateful(fn, {"count": jnp.zeros((), jnp.int32)})
    result = fit(loss, {"w": jnp.zeros(2)}, optax.sgd(0.1), lambda t: jnp.ones(2) * t, steps=3,
                 workdir=tmp_path / "s", seed=5, progress=False)
    noise = [r["noise"] for r in read_run(tmp_path / "s")["train"]]
    expected = [float(jax.random.normal(jax.random.fold_in(jax.random.key(5), t), ())) for t in range(3)]
    assert_close(noise, expected, rtol=1e-12, name="step keys")
    assert int(result.state["count"]) == 3


def test_attach_in_an_own_loop_equals_fit(problem, fitted, tmp_path):
    """attach(...).step in a hand loop writes the same probe records as fit (rtol 1e-12)."""
    params, data = problem
    _, thetas = naive_adamw(params, data, STEPS)
    _, run = fitted
    with attach(mlp_loss, [StepProbeHook(step_sizes=ETAS, schedule=Schedule(2))],
                workdir=tmp_path / "own") as hooks:
        for t, (theta, batch) in enumerate(thetas):
            loss, grad = jax.value_and_grad(pure_loss)(theta, batch)
            hooks.step(t, theta, batch, loss=loss, grad=grad)
    own = read_run(tmp_path / "own")
    assert [r["step"] for r in own["probes"]] == [0, 2, 4]
    for a, b in zip(own["probes"], run["probes"]):
        assert_close(a["effective_beta"], b["effective_beta"], rtol=1e-12, name="beta")
        assert_close(a["loss"], b["loss"], rtol=1e-12, name="loss")
    assert_close([r["loss"] for r in own["train"]], [r["loss"] for r in run["train"]], rtol=1e-12)


def test_attach_warns_once_on_divergence(tmp_path):
    with attach(pure_loss, [], workdir=tmp_path) as hooks:
        with pytest.warns(RuntimeWarning, match="step 2") as caught:
            for t in range(5):
                hooks.step(t, {"w": jnp.zeros(1)}, None, loss=jnp.nan if t >= 2 else 1.0, grad={})
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert hooks.diverged_at_step == 2


# ---------------------------------------------------------------------------- data forms


def test_data_forms_give_the_documented_batches(problem):
    from landscape.engine.batches import as_batch_fn

    _, data = problem
    arrays = as_batch_fn(data, batch_size=B, seed=3)
    idx = batch_indices(N, 7, B, seed=3)
    np.testing.assert_array_equal(arrays(7)["x"], data["x"][idx])
    listed = as_batch_fn([{"x": 1}, {"x": 2}, {"x": 3}])
    assert [listed(t)["x"] for t in (0, 4, 5)] == [1, 2, 3]


def test_grain_map_dataset(problem, tmp_path):
    grain = pytest.importorskip("grain")
    _, data = problem
    ds = grain.MapDataset.source([{"x": data["x"][i], "y": data["y"][i]} for i in range(N)]).batch(B)
    fit(mlp_loss, problem[0], optax.sgd(0.1), ds, steps=5, workdir=tmp_path / "g", progress=False)
    rows = read_run(tmp_path / "g")["train"]
    assert len(rows) == 5
    first = {"x": data["x"][:B], "y": data["y"][:B]}
    assert_close(rows[0]["loss"], pure_loss(problem[0], first), rtol=1e-12)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, match", [
    ("vector_loss", "loss_fn must return a scalar"),
    ("no_float", "at least one floating-point"),
    ("not_optax", "optimizer must be an optax"),
    ("bad_setup", "setup: cannot import"),
    ("no_batch_size", "data must be a function"),
])
def test_bad_arguments_are_one_line_errors(problem, tmp_path, case, match):
    params, data = problem
    args = dict(loss_fn=mlp_loss, params=params, optimizer=optax.sgd(0.1), data=data)
    extra = {"batch_size": B}
    if case == "vector_loss":
        args["loss_fn"] = lambda p, b: (jnp.tanh(b["x"] @ p["w1"]) @ p["w2"]) - b["y"]
    elif case == "no_float":
        args["params"] = {"n": jnp.arange(3)}
    elif case == "not_optax":
        args["optimizer"] = "adam"
    elif case == "bad_setup":
        extra["setup"] = "no_such_module_xyz:setup"
    elif case == "no_batch_size":
        extra = {}
    with pytest.raises(ConfigError, match=match) as info:
        fit(**args, steps=2, workdir=tmp_path / "bad", progress=False, **extra)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad" / "config.json").exists()  # nothing written


def test_data_with_changing_shapes_or_values_is_refused_and_records_kept(problem, tmp_path):
    params, data = problem
    ragged = lambda t: {k: v[: B - (t == 3)] for k, v in data.items()}  # noqa: E731
    with pytest.raises(ConfigError, match=r"data\(3\) differs .*\['x'\]"):
        fit(mlp_loss, params, optax.sgd(0.1), ragged, steps=5, workdir=tmp_path / "r", progress=False)

    out = tmp_path / "nd"
    draws = np.random.default_rng(0)  # a data function that is not a function of the step

    def noisy(t):
        return {k: v[t:t + B] + draws.normal(size=v[t:t + B].shape) for k, v in data.items()}

    kwargs = dict(steps=4, workdir=out, progress=False, checkpoint_every=2)
    fit(mlp_loss, params, optax.sgd(0.1), noisy, **kwargs)
    before = (out / "train.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"data\(3\) differs from the batch .* must be deterministic"):
        fit(mlp_loss, params, optax.sgd(0.1), noisy, **kwargs)
    assert (out / "train.jsonl").read_text() == before


def test_update_direction_probe_against_a_naive_adam_loop(problem, tmp_path):
    """direction="update": points θ_t + η·Δ_t with Δ_t Adam's own step; η = 1 is θ_{t+1}
    (float64, rtol 1e-9); gradient and update records side by side in one run."""
    params, data = problem
    tx = optax.adam(0.05)
    etas = np.array([0.5, 1.0, 2.0])
    hooks = [StepProbeHook(step_sizes=etas, schedule=Schedule(2)),
             StepProbeHook(step_sizes=etas, schedule=Schedule(2), direction="update")]
    fit(mlp_loss, params, tx, data, batch_size=B, steps=5, workdir=tmp_path / "u",
        progress=False, hooks=hooks)
    run = read_run(tmp_path / "u")
    assert [r["step"] for r in run["probes_update"]] == [0, 2, 4]
    assert all(r["direction"] == "update" for r in run["probes_update"])
    theta, opt_state = params, tx.init(params)
    for t in range(5):
        batch = {k: v[batch_indices(N, t, B, seed=0)] for k, v in data.items()}
        g = jax.grad(pure_loss)(theta, batch)
        delta, new_state = tx.update(g, opt_state, theta)
        if t % 2 == 0:
            rec = run["probes_update"][t // 2]
            ref = probes.step_probe(pure_loss, theta, batch, etas,
                                    direction=jax.tree.map(jnp.negative, delta))
            assert_close(rec["loss"], ref.loss, rtol=1e-9, name="loss along Δ")
            assert_close(rec["effective_beta"], ref.effective_beta, rtol=1e-9, name="β along Δ")
            nxt = optax.apply_updates(theta, delta)
            assert_close(rec["loss"][1], pure_loss(nxt, batch), rtol=1e-9, name="η=1 is θ_{t+1}")
            assert rec["loss"] != run["probes"][t // 2]["loss"]  # not the gradient direction
        theta, opt_state = optax.apply_updates(theta, delta), new_state


def test_update_direction_needs_the_optimizer_state(problem):
    params, data = problem
    with pytest.raises(ConfigError, match="needs the optimizer"):
        attach(pure_loss, [StepProbeHook(step_sizes=ETAS, direction="update")])
    hooks = attach(pure_loss, [StepProbeHook(step_sizes=ETAS, direction="update")],
                   optimizer=optax.adam(0.1))
    with pytest.raises(ConfigError, match="opt_state="):
        hooks.step(0, params, {k: v[:B] for k, v in data.items()})
