"""Tests of the experiments fig3, fig5, dln and compare (landscape.experiments): the ICS measurement
(Definition 2.1) against a closed form, and each experiment end to end on tiny generated settings."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landscape import bridge
from landscape.config import ConfigError
from landscape.experiments.base import aggregate_over_seeds
from landscape.experiments.compare import COMPARE_METRICS
from landscape.experiments.dln import DLN_PRESETS, dln_experiment
from landscape.experiments.fig3 import clip_blocks, fig3_experiment, ics_measurement
from landscape.models import build_model
from landscape.probes import block_masks, internal_covariate_shift, param_paths
from images import is_blank
from landscape.reproduce import EXPERIMENTS, run_experiment
from landscape.train import StepContext

# float32 throughout: the closed-form quantities are products of three 3×3 matrices with O(1)
# entries, so float32 round-off is ~1e-6 relative; 1e-4 leaves a wide margin while every wrong
# variant below differs by more than 1e-2 relative (asserted, so the test keeps its teeth).
RTOL = 1e-4


def assert_close(actual, expected, rtol=RTOL, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol,
                               atol=atol)


# ----------------------------------------------------------------------------------------------
# ICS against the closed form of a 3-layer linear model
# ----------------------------------------------------------------------------------------------

def _linear_problem():
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((3, 3)).astype(np.float32) * 0.8 for _ in range(3)]
    u = [rng.standard_normal((3, 3)).astype(np.float32) * 0.3 for _ in range(3)]
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = rng.standard_normal((5, 3)).astype(np.float32)
    params = {"blocks": {i: {"proj": {"kernel": jnp.asarray(w[i])}} for i in range(3)},
              "head": {"kernel": jnp.eye(3, dtype=jnp.float32)}}
    updates = {"blocks": {i: {"proj": {"kernel": jnp.asarray(u[i])}} for i in range(3)},
               "head": {"kernel": jnp.full((3, 3), 0.5, jnp.float32)}}

    def loss_fn(p, batch):  # L = ½‖x W1 W2 W3 H − y‖²_F
        out = batch["x"]
        for i in range(3):
            out = out @ p["blocks"][i]["proj"]["kernel"]
        out = out @ p["head"]["kernel"]
        return 0.5 * jnp.sum((out - batch["y"]) ** 2)

    return w, u, x, y, params, updates, loss_fn


def _grad_w2(w1, w2, w3, x, y):
    """∇_{W2} ½‖x W1 W2 W3 − y‖² = (x W1)ᵀ (x W1 W2 W3 − y) W3ᵀ  (head H = I)."""
    w1, w2, w3, x, y = (np.asarray(a, np.float64) for a in (w1, w2, w3, x, y))
    r = x @ w1 @ w2 @ w3 - y
    return (x @ w1).T @ r @ w3.T


def _l2_cos(g, g2):
    return np.linalg.norm(g - g2), float(np.sum(g * g2) / (np.linalg.norm(g) * np.linalg.norm(g2)))


def test_ics_matches_closed_form_for_the_middle_layer():
    w, u, x, y, params, updates, loss_fn = _linear_problem()
    layer, earlier = block_masks(params, 1)
    r = internal_covariate_shift(loss_fn, params, {"x": x, "y": y}, updates, layer=layer,
                                   earlier=earlier)
    g = _grad_w2(w[0], w[1], w[2], x, y)
    g_prime = _grad_w2(w[0] + u[0], w[1], w[2], x, y)  # only W1 took its update
    l2, cos = _l2_cos(g, g_prime)
    assert_close(r.grad_norm, np.linalg.norm(g))
    assert_close(r.shifted_grad_norm, np.linalg.norm(g_prime))
    assert_close(r.l2, l2)
    assert_close(r.cosine, cos)
    # The wrong readings give clearly different answers, so the check above discriminates.
    wrong = {
        "layer i updated too": _grad_w2(w[0] + u[0], w[1] + u[1], w[2], x, y),
        "all layers updated": _grad_w2(w[0] + u[0], w[1] + u[1], w[2] + u[2], x, y),
        "later layers updated": _grad_w2(w[0] + u[0], w[1], w[2] + u[2], x, y),
        "nothing updated": g,
    }
    for name, g_wrong in wrong.items():
        l2_wrong, cos_wrong = _l2_cos(g, g_wrong) if name != "nothing updated" else (0.0, 1.0)
        assert abs(l2_wrong - l2) > 1e-2 * l2 and abs(cos_wrong - cos) > 1e-3, name


def test_ics_is_zero_for_the_first_layer_and_jits():
    _, _, x, y, params, updates, loss_fn = _linear_problem()
    layer, earlier = block_masks(params, 0)
    assert not any(jax.tree.leaves(earlier))
    fn = jax.jit(lambda p, b, u: internal_covariate_shift(loss_fn, p, b, u, layer=layer,
                                                            earlier=earlier))
    r = fn(params, {"x": x, "y": y}, updates)
    assert float(r.l2) == 0.0
    assert_close(r.cosine, 1.0)
    assert float(r.grad_norm) > 0


def test_ics_last_layer_and_precomputed_grad():
    """Layer 2: G′ sees W1 and W2 updated, not W3 or the head; a passed-in G gives the same."""
    w, u, x, y, params, updates, loss_fn = _linear_problem()
    layer, earlier = block_masks(params, 2)
    assert param_paths(params) == ["blocks/0/proj/kernel", "blocks/1/proj/kernel",
                                     "blocks/2/proj/kernel", "head/kernel"]
    assert jax.tree.leaves(earlier) == [True, True, False, False]
    batch = {"x": x, "y": y}
    grad = jax.grad(loss_fn)(params, batch)
    r = internal_covariate_shift(loss_fn, params, batch, updates, layer=layer, earlier=earlier,
                                   grad=grad)
    w1, w2 = (np.asarray(a, np.float64) for a in (w[0] + u[0], w[1] + u[1]))
    xd, yd, w3 = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(w[2], np.float64)

    def g3(a, b):  # ∇_{W3} = (x W1 W2)ᵀ (x W1 W2 W3 − y)
        return (xd @ a @ b).T @ (xd @ a @ b @ w3 - yd)

    l2, cos = _l2_cos(g3(np.asarray(w[0], np.float64), np.asarray(w[1], np.float64)), g3(w1, w2))
    assert_close(r.l2, l2)
    assert_close(r.cosine, cos)


def test_clip_blocks_keeps_layers_distinct():
    assert clip_blocks([4, 9], 13) == [4, 9]  # VGG-16: the paper's #5 and #10
    assert clip_blocks([4, 9], 8) == [4, 7]
    assert clip_blocks([9, 4], 4) == [2, 3]
    assert clip_blocks([0, 5, 9], 2) == [0, 1]
    assert clip_blocks([3, 3], 10) == [3]


def test_block_masks_rejects_a_missing_layer():
    _, _, _, _, params, _, _ = _linear_problem()
    with pytest.raises(ValueError, match="blocks/7/proj/kernel"):
        block_masks(params, 7)


def test_ics_measurement_matches_a_manual_computation_on_an_nnx_model():
    """The Measurement's G′ equals the gradient after swapping in block 0's optimizer update."""
    model = build_model("mlp", norm="batch", input_shape=(4, 4, 1), width=0.1, seed=0)
    _, params, state = bridge.split(model)
    tx = optax.sgd(0.5)
    opt_state = tx.init(params)
    rng = np.random.default_rng(1)
    batch = bridge.make_batch(jnp.asarray(rng.standard_normal((16, 4, 4, 1)), jnp.float32),
                              jnp.asarray(rng.integers(0, 10, 16), jnp.int32), state)
    m = ics_measurement([1, 0, 9], every=1)  # 9 is clipped to the last block (2)
    rec = m.fn(StepContext(0, params, state, opt_state, batch, model, tx, None))
    assert list(rec["layers"]) == ["layer #1", "layer #2", "layer #3"]
    assert rec["layers"]["layer #1"]["l2"] == 0.0

    loss_fn = bridge.make_loss_fn(model, mode="batch_stats")
    grads = jax.grad(loss_fn)(params, batch)
    updates, _ = tx.update(grads, opt_state, params)
    stepped = optax.apply_updates(params, updates)
    shifted = jax.tree.map(lambda a: a, params)
    shifted["blocks"][0] = stepped["blocks"][0]  # every parameter of block 0, nothing else
    g = grads["blocks"][1]["proj"]["kernel"]
    g2 = jax.grad(loss_fn)(shifted, batch)["blocks"][1]["proj"]["kernel"]
    assert_close(rec["layers"]["layer #2"]["l2"], jnp.linalg.norm(g - g2))
    assert rec["layers"]["layer #2"]["l2"] > 0


# ----------------------------------------------------------------------------------------------
# Aggregation over seeds
# ----------------------------------------------------------------------------------------------

def test_aggregate_over_seeds_aligns_steps_and_skips_nan():
    agg = aggregate_over_seeds({0: ([0, 2], [1.0, 5.0]), 1: ([0, 1, 2], [3.0, 4.0, None]),
                                  2: ([0], [8.0])})
    assert agg["steps"] == [0, 1, 2]
    assert_close(agg["mean"], [4.0, 4.0, 5.0])
    assert_close(agg["std"], [np.std([1, 3, 8], ddof=1), 0.0, 0.0])
    assert agg["lo"] == [1.0, 4.0, 5.0] and agg["hi"] == [8.0, 4.0, 5.0]
    assert agg["count"] == [3, 1, 1] and agg["n"] == 3


# ----------------------------------------------------------------------------------------------
# The experiments end to end (tiny settings)
# ----------------------------------------------------------------------------------------------

# Compilation dominates (≈ 5–10 s per run on a loaded 2-core CPU), so runs are as few and as
# small as the checks allow; evaluation is switched off where no check reads it.
TINY = dict(dataset="synthetic", model="mlp", width=0.125, steps=6, probe_every=3,
            num_step_sizes=2, batch_size=32, eval_every=6, checkpoint_every=6)
NO_EVAL = {**TINY, "eval_every": 0}


def _figures_ok(out, names):
    for name in names:
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").exists(), f"{name}.{ext}"
        assert not is_blank(out / f"{name}.png"), name


def test_registered():
    for name in ("fig3", "fig5", "dln", "compare"):
        assert name in EXPERIMENTS


def test_fig3_builder_options():
    exp = fig3_experiment("quick", lrs=(0.1, 0.01), layers=(1, 2), ics_every=4, **NO_EVAL)
    assert list(exp.runs) == ["batchnorm lr=0.1", "vanilla lr=0.1", "batchnorm lr=0.01",
                              "vanilla lr=0.01"]
    assert exp.runs["vanilla lr=0.01"].lr == 0.01 and exp.runs["vanilla lr=0.01"].norm == "none"
    assert exp.options["layers"] == [1, 2] and exp.options["ics_every"] == 4
    (m,) = exp.measurements("batchnorm lr=0.1", exp.runs["batchnorm lr=0.1"])
    assert m.name == "ics" and m.schedule.every == 4
    dln = fig3_experiment("quick", dataset="dln", model="dln")
    assert dln.runs["vanilla"].lr == DLN_PRESETS["quick"]["lr"]
    assert dln.options["layers"] == [8, 16]
    with pytest.raises(ConfigError, match="layers"):
        fig3_experiment("quick", layers=(-1,))


@pytest.mark.slow
def test_fig3_end_to_end(tmp_path):
    assert fig3_experiment("quick", **NO_EVAL).options["layers"] == [1, 2]  # MLP default
    exp = fig3_experiment("quick", layers=(0, 2), **NO_EVAL)
    assert all(cfg.probe_every == 0 for cfg in exp.runs.values())
    summary = run_experiment(exp, tmp_path, progress=False)
    assert set(summary["models"]) == {"batchnorm", "vanilla"}
    layers = summary["models"]["batchnorm"]["layers"]
    assert list(layers) == ["layer #1", "layer #3"]
    assert layers["layer #1"]["steps"] == [0, 3]
    assert all(v == 0.0 for v in layers["layer #1"]["l2"])  # no earlier layer: G′ = G
    assert all(v > 0 for v in layers["layer #3"]["l2"])
    assert "layer #3" in summary["ics_comparison"]
    assert all(isinstance(v, float) for v in summary["comparison"].values())  # the CLI prints it
    _figures_ok(tmp_path, ["fig3"])
    json.dumps(json.loads((tmp_path / "summary.json").read_text()))


def test_dln_builder():
    """The DLN's own data and step-size range (its run end to end: the README command,
    tests/test_readme_commands.py::TestReproduceDln)."""
    cfg = dln_experiment("quick", steps=5, probe_every=2, num_step_sizes=2).runs["vanilla"]
    assert (cfg.dataset, cfg.model) == ("dln", "dln")
    assert (cfg.step_size_lo, cfg.step_size_hi) == (0.01, 30.0)
    with pytest.raises(ConfigError, match="dataset"):
        dln_experiment("quick", dataset="synthetic")


@pytest.mark.slow
def test_compare_end_to_end_aggregates_over_seeds(tmp_path):
    exp = EXPERIMENTS["compare"]("quick", norms=["none", "batch"], seeds=2, **TINY)
    assert list(exp.runs) == ["none/seed0", "none/seed1", "batch/seed0", "batch/seed1"]
    assert exp.runs["none/seed1"].seed == exp.runs["batch/seed1"].seed == 1
    summary = run_experiment(exp, tmp_path, progress=False)
    models = summary["models"]
    for norm in ("none", "batch"):
        a, b = models[f"{norm}/seed0"], models[f"{norm}/seed1"]
        agg = summary["per_norm"][norm]["effective_beta"]
        assert agg["steps"] == a["steps"] == [0, 3]
        assert_close(agg["mean"], np.mean([a["effective_beta"], b["effective_beta"]], axis=0))
        assert_close(agg["lo"], np.minimum(a["effective_beta"], b["effective_beta"]))
        rng = summary["per_norm"][norm]["loss_range"]["mean"]
        assert_close(rng, np.mean([np.subtract(a["loss_max"], a["loss_min"]),
                                   np.subtract(b["loss_max"], b["loss_min"])], axis=0))
        row = summary["table"][norm]
        assert_close(row["final_train_loss"]["mean"], np.mean([a["train_loss"], b["train_loss"]]))
        assert_close(row["final_train_loss"]["std"],
                     np.std([a["train_loss"], b["train_loss"]], ddof=1))
        assert_close(row["median_effective_beta"]["mean"],
                     np.mean([np.median(a["effective_beta"]), np.median(b["effective_beta"])]))
        assert_close(row["test_accuracy"]["mean"],
                     np.mean([a["test_accuracy"], b["test_accuracy"]]))
    table = (tmp_path / "compare_table.md").read_text()
    assert "| batch | 2 |" in table and "| none | 2 |" in table
    _figures_ok(tmp_path, [f"compare_{m}" for m in COMPARE_METRICS])
