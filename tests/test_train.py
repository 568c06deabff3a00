"""The training loop: loss goes down, probes land in records, kill-and-resume equals one run."""

import json

import numpy as np
import pytest
import optax

from landscape.config import ConfigError, TrainConfig
from landscape.records import read_records
from landscape.train import RunExistsError, read_run, train

# A tiny MLP on 8×8 synthetic data: compiles in a few seconds on 2 cores.
TINY = dict(dataset="synthetic", model="mlp", width=0.2, norm="batch", steps=12, batch_size=32,
            lr=0.1, eval_every=4, checkpoint_every=4, probe_every=4, num_step_sizes=3,
            probe_strategy="unroll")


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    result = train(TrainConfig(**TINY), workdir, progress=False)
    return workdir, result


def test_loss_decreases_and_records_written(full_run):
    workdir, result = full_run
    run = read_run(workdir)
    losses = [r["loss"] for r in run["train"]]
    assert [r["step"] for r in run["train"]] == list(range(12))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert [r["step"] for r in run["probes"]] == [0, 4, 8]
    row = run["probes"][0]
    assert len(row["loss"]) == len(row["grad_change"]) == 3
    np.testing.assert_allclose(row["step_sizes"], [0.05, 0.225, 0.4], rtol=1e-6)
    assert row["effective_beta"] > 0 and row["tag"] == "batch"
    per_layer = row["grad_norm_per_layer"]  # the per-layer Lipschitz measurement
    assert "blocks/0/proj/kernel" in per_layer and "head/kernel" in per_layer
    np.testing.assert_allclose(np.sqrt(sum(v**2 for v in per_layer.values())), row["grad_norm"],
                               rtol=1e-5)
    assert [r["step"] for r in run["eval"]] == [4, 8, 12]
    assert 0 < row["grad_change_floor"] < min(row["grad_change"])  # float32 rounding floor
    assert row["beta_included"] == [True, True, True]
    assert run["run"]["input_shape"] == [8, 8, 1] and run["run"]["num_classes"] == 10
    assert run["run"]["diverged_at_step"] is None
    assert run["run"]["final_step"] == 12
    assert json.loads((workdir / "config.json").read_text())["steps"] == 12


def test_resume_after_interrupt_equals_uninterrupted(full_run, tmp_path):
    workdir, _ = full_run

    def stop_at_7(step, _row):
        if step == 7:  # dies after writing step 7's record, before its checkpoint at step 8
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TrainConfig(**TINY), tmp_path, progress=False, on_step=stop_at_7)
    assert [r["step"] for r in read_records(tmp_path / "train.jsonl")][-1] == 7
    train(TrainConfig(**TINY), tmp_path, progress=False)  # resumes from the step-4 checkpoint
    a, b = read_run(workdir), read_run(tmp_path)
    for name in ("train", "eval", "probes"):
        assert [r["step"] for r in a[name]] == [r["step"] for r in b[name]], name  # no duplicates
        for ra, rb in zip(a[name], b[name]):
            assert ra.keys() == rb.keys()
            for key in ra:
                va, vb = ra[key], rb[key]
                if isinstance(va, dict):  # per-layer gradient norms
                    assert va.keys() == vb.keys()
                    va, vb = list(va.values()), list(vb.values())
                if key != "tag":
                    np.testing.assert_allclose(np.asarray(va, float), np.asarray(vb, float),
                                               rtol=1e-6, err_msg=f"{name}:{key}")


def test_different_config_in_same_folder_is_refused(full_run):
    workdir, _ = full_run
    with pytest.raises(RunExistsError, match="different configuration"):
        train(TrainConfig(**{**TINY, "lr": 0.2}), workdir, progress=False)


@pytest.mark.parametrize("change,match", [
    ({"lr": -1.0}, "lr=-1.0 must be > 0"),
    ({"lr": float("nan")}, "lr=nan must be finite"),
    ({"steps": 0}, "steps=0 must be >= 1"),
    ({"steps": 2.5}, "steps=2.5 is not an integer"),
    ({"norm": "batchy"}, "norm='batchy' is not accepted; expected one of"),
    ({"dataset": "imagenet"}, "dataset='imagenet'"),
    ({"step_size_lo": 5.0}, "step_size_lo=5.0 must be <= step_size_hi"),
    ({"probe_at": (-1,)}, "probe_at"),
    ({"model": "dln"}, "go together"),
])
def test_config_validation_names_the_field(change, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{**TINY, **change})


def test_config_round_trip():
    cfg = TrainConfig(**{**TINY, "probe_at": (1, 5)})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown config field"):
        TrainConfig.from_dict({"stepz": 3})


def test_model_and_norm_options_reach_the_model_and_are_validated(tmp_path):
    from landscape.train import build_config_model

    cfg = TrainConfig(**{**TINY, "model_options": {"init": "gaussian", "init_std": 0.05}})
    model = build_config_model(cfg, (8, 8, 1), 10)
    assert abs(float(model.blocks[0].proj.kernel[...].std()) - 0.05) < 0.005
    with pytest.raises(ConfigError, match="model_options for 'mlp'.*bogus"):
        train(TrainConfig(**{**TINY, "model_options": {"bogus": 1}}), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="norm_options: group norm"):
        train(TrainConfig(**{**TINY, "norm": "group", "norm_options": {"num_groups": 7}}),
              tmp_path / "b", progress=False)


def test_attached_probe_never_changes_running_statistics(tmp_path):
    import jax
    from flax import nnx

    from landscape import probes
    from landscape.engine import BridgeObjective, Schedule, StepProbeHook, attach
    from landscape.models import build_model

    model = build_model("mlp", width=0.2, norm="batch", input_shape=(8, 8, 1))
    x = np.random.default_rng(0).normal(2.0, 3.0, (32, 8, 8, 1)).astype(np.float32)
    y = np.arange(32) % 10
    before = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    objective = BridgeObjective(model)
    hook = StepProbeHook(step_sizes=probes.lr_multiples(0.1, num=2), schedule=Schedule(every=1))
    with attach(objective, [hook], workdir=tmp_path) as hooks:
        from landscape import bridge

        assert "probes" in hooks.step(0, bridge.split(model)[1], (x, y))
    after = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    model(x)  # a train-mode call *does* move them: the comparison above can fail
    moved = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(moved)))


@pytest.mark.parametrize("changes, reference", [
    (dict(optimizer="adamw", lr=1e-3, weight_decay=0.01, warmup_steps=4),
     lambda: optax.adamw(optax.join_schedules([optax.linear_schedule(0.0, 1e-3, 4),
                                                optax.constant_schedule(1e-3)], [4]),
                         weight_decay=0.01)),
    (dict(optimizer="sgd", lr=0.1, weight_decay=5e-4),
     lambda: optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1))),
    (dict(optimizer="lion", lr=1e-4, optimizer_options={"b1": 0.95}),
     lambda: optax.lion(1e-4, b1=0.95)),
])
def test_optimizer_by_name_equals_optax(changes, reference):
    """build_optimizer(config) makes exactly the optax transformation the config names: the same
    updates, bit for bit, over 6 steps of a random gradient sequence."""
    import jax
    import jax.numpy as jnp

    from landscape.config import TrainConfig
    from landscape.engine import build_optimizer

    tx, ref = build_optimizer(TrainConfig(steps=10, **changes)), reference()
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    s, r = tx.init(params), ref.init(params)
    for t in range(6):
        g = {"w": jax.random.normal(jax.random.key(t), (5,))}
        u, s = tx.update(g, s, params)
        v, r = ref.update(g, r, params)
        np.testing.assert_array_equal(u["w"], v["w"])


def test_unknown_optimizer_or_option_is_one_line():
    from landscape.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="optimizer='adamx' is not accepted"):
        TrainConfig(optimizer="adamx")
    with pytest.raises(ConfigError, match="optimizer_options for 'adam'"):
        TrainConfig(optimizer="adam", optimizer_options={"beta": 0.9})
    with pytest.raises(ConfigError, match="warmup_steps"):
        TrainConfig(steps=5, warmup_steps=5)
    assert "weight_decay" not in TrainConfig().to_dict()  # defaults stay out of config.json
