"""Activation experiments (Santurkar et al. Fig. 1, 2; Ioffe & Szegedy Fig. 1): tiny end-to-end
runs, and the activation measurement checked against a direct computation of the same layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import bridge
from landscape.config import TrainConfig
from landscape.models import build_model
from images import is_blank
from landscape.reproduce import EXPERIMENTS, run_experiment
from landscape.train import StepContext

try:  # the package __init__ registers every experiment module
    import landscape.experiments  # noqa: F401
except ImportError:  # pragma: no cover - before the package exists
    pass
from landscape.experiments import activations as act

# float32 forward passes, jitted (measurement) vs eager (reference): same ops, so differences are a
# few ulps of values of order 1; 1e-5 relative leaves ample room and still catches any real change.
RTOL, ATOL = 1e-5, 1e-6


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=rtol, atol=atol)


# Tiny runs: an MLP (hidden 20) on 8×8 synthetic data, 6 steps, measured and evaluated every 3.
TINY = dict(dataset="synthetic", model="mlp", width=0.2, steps=6, batch_size=32, eval_every=3,
            checkpoint_every=3, measure_every=3)
CASES = {
    "fig1": (act.fig1_experiment, dict(TINY, lrs=(0.1,), num_ridges=3, num_samples=50),
             ["batchnorm lr=0.1", "vanilla lr=0.1"]),
    "fig2": (act.fig2_experiment, dict(TINY, num_ridges=3, num_samples=50),
             ["standard", "batchnorm", "noisy batchnorm"]),
    "ioffe-fig1": (act.ioffe_fig1_experiment, dict(TINY, batch_size=30),
                   ["without BN", "with BN"]),
}


def test_registered():
    for name in CASES:
        assert EXPERIMENTS[name] is CASES[name][0]


def test_builders_follow_the_paper_and_let_overrides_win():
    fig1 = act.fig1_experiment("quick")
    assert list(fig1.runs) == ["batchnorm lr=0.1", "vanilla lr=0.1", "batchnorm lr=0.5",
                               "vanilla lr=0.5"]
    assert [c.norm for c in fig1.runs.values()] == ["batch", "none"] * 2
    assert [c.lr for c in fig1.runs.values()] == [0.1, 0.1, 0.5, 0.5]
    assert {c.probe_every for c in fig1.runs.values()} == {0}
    fig2 = act.fig2_experiment("quick")
    assert [c.norm for c in fig2.runs.values()] == ["none", "batch", "noisy_batch"]
    ioffe = act.ioffe_fig1_experiment("quick")
    assert {(c.model, c.width, c.batch_size, c.dataset) for c in ioffe.runs.values()} == {
        ("mlp", 1.0, 60, "mnist5k")}
    paper = act.ioffe_fig1_experiment("paper")
    assert {(c.steps, c.batch_size, c.dataset) for c in paper.runs.values()} == {
        (50000, 60, "mnist")}
    mine = act.ioffe_fig1_experiment("quick", batch_size=16, lr=0.3, model="vgg11", width=0.5)
    assert {(c.model, c.width, c.batch_size, c.lr) for c in mine.runs.values()} == {
        ("vgg11", 0.5, 16, 0.3)}
    # The recorded options rebuild the same experiment (what a re-plot needs).
    for name in CASES:
        exp = EXPERIMENTS[name]("quick", steps=33, lr=0.2)
        assert EXPERIMENTS[name](**exp.options).manifest() == exp.manifest(), name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig1"])  # fig2 and ioffe-fig1 end to end: their README commands
def test_experiment_end_to_end_and_resume(name, tmp_path):  # (tests/test_readme_commands.py)
    builder, kwargs, labels = CASES[name]
    summary = run_experiment(builder("quick", **kwargs), tmp_path, progress=False)

    for stem in (name, f"{name}_training", f"{name}_activations"):
        assert (tmp_path / f"{stem}.pdf").stat().st_size > 0
        assert not is_blank(tmp_path / f"{stem}.png"), stem
    assert summary["experiment"] == name
    assert list(summary["models"]) == labels
    for label, entry in summary["models"].items():
        for key in ("train_loss", "train_accuracy", "test_accuracy", "diverged_at_step"):
            assert key in entry, (label, key)
        assert np.isfinite(entry["train_loss"]) and 0.0 <= entry["test_accuracy"] <= 1.0
        curves = entry["curves"]
        assert curves["steps"] == list(range(6))
        assert len(curves["train_loss"]) == len(curves["train_accuracy"]) == 6
        assert curves["eval_steps"] == [3, 6] and len(curves["test_accuracy"]) == 2
        acts = entry["activations"]
        assert acts["block"] == "block2"
        assert acts["steps"][0] == 0 and 3 in acts["steps"]
        for key in ("p15", "p50", "p85"):
            assert len(acts[key]) == len(acts["steps"])
        assert np.all(np.asarray(acts["p15"]) <= np.asarray(acts["p85"]))
    if name == "ioffe-fig1":
        assert {e["activations"]["unit"] for e in summary["models"].values()} == {0}

    # Rerunning in the same folder resumes: nothing is retrained or re-measured.
    lines = {p: p.read_text().count("\n") for p in tmp_path.glob("*/*.jsonl")}
    assert len(lines) == 3 * len(labels)  # train, eval, activations per run
    again = run_experiment(builder("quick", **kwargs), tmp_path, progress=False)
    assert {p: p.read_text().count("\n") for p in tmp_path.glob("*/*.jsonl")} == lines
    assert again["models"] == summary["models"]


# ------------------------------------------------------------------------ the measurement itself

def _context(model, x, y, *, step=0, rng=None):
    _, params, state = bridge.split(model)
    batch = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state, rng)
    return StepContext(step, params, state, None, batch, model, None, None)


def _direct(model, ctx, block):
    """The block's normalization output, computed eagerly on a copy, batch statistics."""
    graphdef = bridge.split(model)[0]
    copy = bridge.merge(graphdef, ctx.params, ctx.state)
    collect = {}
    copy(ctx.batch["x"], use_running_average=False, rng=ctx.batch["rng"], collect=collect)
    return np.asarray(collect[block], float)


@pytest.fixture(scope="module")
def conv_case():
    model = build_model("vgg11", norm="batch", input_shape=(8, 8, 1), width=0.0625, seed=1)
    x = np.random.default_rng(0).normal(1.5, 2.0, size=(16, 8, 8, 1)).astype(np.float32)
    return model, _context(model, x, np.arange(16) % 10, step=4)


@pytest.mark.parametrize("unit", [None, 1])
def test_percentiles_match_numpy_on_a_direct_activation(conv_case, unit):
    model, ctx = conv_case
    m = act.activation_measurement(layer=2, unit=unit, num_samples=100, sample_at=(4,))
    row = m.fn(ctx)
    values = _direct(model, ctx, "block2")
    assert values.shape == (16, 2, 2, 16)  # 256 × 0.0625 channels after two 2×2 max-pools
    values = (values if unit is None else values[..., unit]).reshape(-1)
    assert row["block"] == "block2" and row["unit"] == unit and row["count"] == values.size
    assert_close([row["p15"], row["p50"], row["p85"]], np.percentile(values, [15, 50, 85]))
    assert_close([row["mean"], row["std"]], [values.mean(), values.std()], atol=1e-5)
    # The sample is drawn from those values (5 significant digits), reproducibly per step.
    samples = np.asarray(row["samples"])
    assert samples.shape == (min(100, values.size),)
    nearest = np.abs(samples[:, None] - values[None, :]).min(axis=1)
    assert np.all(nearest <= 1e-4 * np.abs(samples) + 1e-6)
    assert m.fn(ctx)["samples"] == row["samples"]
    assert "samples" not in m.fn(ctx._replace(step=5))  # only at the sample_at steps


def test_measurement_is_train_mode_leaves_running_stats_alone_and_compiles_once(conv_case):
    model, ctx = conv_case
    before = [np.array(v) for v in jax.tree.leaves(ctx.state)]
    model_before = [np.array(v) for v in jax.tree.leaves(bridge.split(model)[2])]
    m = act.activation_measurement(layer=2)
    row = m.fn(ctx)
    m.fn(ctx._replace(step=7))
    for a, b in zip(before, jax.tree.leaves(ctx.state)):
        np.testing.assert_array_equal(a, np.asarray(b))
    for a, b in zip(model_before, jax.tree.leaves(bridge.split(model)[2])):
        np.testing.assert_array_equal(a, np.asarray(b))
    # It used batch statistics: at initialisation the running statistics (mean 0, variance 1)
    # differ from this batch's, so an eval-mode forward gives different activations.
    graphdef = bridge.split(model)[0]
    collect = {}
    bridge.merge(graphdef, ctx.params, ctx.state)(ctx.batch["x"], use_running_average=True,
                                                   collect=collect)
    eval_p50 = float(np.percentile(np.asarray(collect["block2"]), 50))
    assert abs(eval_p50 - row["p50"]) > 1e-3
    assert bridge.make_block_output_fn(graphdef, "block2")._cache_size() == 1


def test_layer_is_clipped_and_noisy_bn_uses_the_steps_key():
    model = build_model("mlp", norm="noisy_batch", input_shape=(8, 8, 1), width=0.2)
    x = np.random.default_rng(1).normal(size=(32, 8, 8, 1)).astype(np.float32)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    ctx = _context(model, x, np.arange(32) % 10, rng=k1)
    m = act.activation_measurement(layer=7, unit=3)  # the MLP has 3 blocks: clipped to block2
    row = m.fn(ctx)
    assert row["block"] == "block2" and row["count"] == 32
    direct = _direct(model, ctx, "block2")[:, 3]
    assert_close([row["p15"], row["p50"], row["p85"]], np.percentile(direct, [15, 50, 85]))
    other = m.fn(_context(model, x, np.arange(32) % 10, rng=k2))
    assert abs(other["p50"] - row["p50"]) > 1e-4  # the noise follows the key
    assert act.activation_measurement(layer=-1).fn(ctx)["block"] == "block2"


def test_run_entry_handles_a_diverged_run():
    run = {"run": {"diverged_at_step": 1}, "config": {},
           "train": [{"step": 0, "loss": 2.0, "accuracy": 0.1},
                     {"step": 1, "loss": float("nan"), "accuracy": float("nan")}],
           "eval": [], "activations": [{"step": 0, "block": "block2", "unit": float("nan"),
                                        "count": 4, "p15": 0.0, "p50": 1.0, "p85": 2.0,
                                        "mean": 1.0, "std": 1.0}]}
    entry = act.run_entry(run)
    assert entry["diverged_at_step"] == 1 and np.isnan(entry["train_loss"])
    assert np.isnan(entry["test_accuracy"]) and entry["activations"]["unit"] is None
    assert entry["activations"]["p50"] == [1.0]


def test_long_curves_are_thinned_in_the_summary_only():
    n = 4500
    run = {"run": {}, "eval": [],
           "train": [{"step": i, "loss": 1.0 + i, "accuracy": 0.5} for i in range(n)]}
    entry = act.run_entry(run, max_points=1000)
    steps = entry["curves"]["steps"]
    assert len(steps) <= 1001 and steps[0] == 0 and steps[-1] == n - 1
    assert entry["curves"]["train_loss"] == [1.0 + s for s in steps]
    assert entry["train_loss"] == np.mean(1.0 + np.arange(n - 450, n))  # from the full records
    assert len(act.run_entry(run, max_points=float("inf"))["curves"]["steps"]) == n


def test_bad_options_are_refused():
    from landscape.config import ConfigError

    with pytest.raises(ConfigError, match="num_ridges"):
        act.fig1_experiment("quick", num_ridges=0)
    with pytest.raises(ConfigError, match="measure_every"):
        act.fig2_experiment("quick", measure_every=0)
    with pytest.raises(ConfigError, match="preset"):
        act.ioffe_fig1_experiment("huge")
    with pytest.raises(ConfigError, match="unit"):
        act.activation_measurement(unit=-1)
    assert isinstance(act.fig1_experiment("quick").runs["vanilla lr=0.5"], TrainConfig)
