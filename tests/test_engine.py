"""The engine: fused probed step, hooks with carries, no recompiles, sinks, run-folder bugs."""

from __future__ import annotations

import json
import struct
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_close

from landscape.config import TrainConfig
from landscape.engine import Hook, Schedule, StepInputs, StepProbeHook, train
from landscape.records import read_records
from landscape.train import read_run, restore_model

TINY = dict(dataset="synthetic", model="mlp", width=0.2, norm="batch", steps=8, batch_size=32,
            lr=0.1, eval_every=4, checkpoint_every=4, num_step_sizes=3, probe_strategy="unroll")


class Count(NamedTuple):
    calls: jax.Array
    loss: jax.Array
    grad_norm: jax.Array


class CountingHook(Hook):
    """A hook with a carry: how many times it ran, and the step's own loss and ‖g‖."""

    name = "counting"

    def __init__(self, every: int = 3):
        self.schedule = Schedule(every)

    def init(self, params, *, key):
        return jnp.zeros((), jnp.int32)

    def measure(self, carry, inputs: StepInputs):
        carry = carry + 1
        norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(inputs.grad)))
        return Count(carry, inputs.loss, norm), carry


def _probe_hook(fuse: bool, every: int = 2) -> StepProbeHook:
    from landscape.probes import lr_multiples

    return StepProbeHook(step_sizes=lr_multiples(0.1, num=3), schedule=Schedule(every),
                         strategy="unroll", fuse=fuse, tag="t")


def test_fused_probe_equals_unfused_and_statistics_advance_once(tmp_path):
    """float64: the fused probe's records equal the unfused ones; training with probes equals
    training without (the running statistics advance exactly once per step)."""
    cfg = TrainConfig(**{**TINY, "dtype": "float64"})
    fused = train(cfg, tmp_path / "fused", progress=False, hooks=[_probe_hook(True)])
    unfused = train(cfg, tmp_path / "unfused", progress=False, hooks=[_probe_hook(False)])
    plain = train(cfg, tmp_path / "plain", progress=False)
    a, b = read_run(fused.workdir)["probes"], read_run(unfused.workdir)["probes"]
    assert [r["step"] for r in a] == [0, 2, 4, 6] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss0", "grad_norm", "loss", "grad_change", "effective_beta"):
            assert_close(ra[key], rb[key], 1e-12, name=key)  # float64 reassociation only
    assert jax.tree.leaves(fused.params)[0].dtype == jnp.float64
    for x, y in zip(jax.tree.leaves((fused.params, fused.state)),
                    jax.tree.leaves((plain.params, plain.state))):
        assert_close(x, y, 1e-12, 1e-14, name="final state")


def test_hook_carry_survives_kill_and_resume(tmp_path):
    """A hook's carry is checkpointed: an interrupted and resumed run records what one run does."""
    cfg = TrainConfig(**TINY)
    train(cfg, tmp_path / "one", progress=False, hooks=[CountingHook()])

    class Interrupt(Exception):
        pass

    def stop(step, _row):
        if step == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "two", progress=False, hooks=[CountingHook()], on_step=stop,
              sync_every=1)
    train(cfg, tmp_path / "two", progress=False, hooks=[CountingHook()])
    one, two = (read_records(tmp_path / d / "counting.jsonl") for d in ("one", "two"))
    assert [r["step"] for r in one] == [0, 3, 6] == [r["step"] for r in two]
    assert [r["calls"] for r in two] == [1, 2, 3]  # the carry came back from the step-4 checkpoint
    assert one == two
    train_rows = read_records(tmp_path / "one" / "train.jsonl")
    assert [r["loss"] for r in train_rows if r["step"] in (0, 3, 6)] == pytest.approx(
        [r["loss"] for r in one], rel=1e-6)  # the hook saw the step's own loss


def test_step_functions_compile_once(tmp_path):
    """No recompilation across steps, probed or not (one cache entry per compiled function)."""
    from landscape import bridge
    from landscape.engine import BridgeObjective, StepFunctions, init_train_state
    from landscape.models import build_model
    import optax

    model = build_model("mlp", width=0.2, norm="batch", input_shape=(8, 8, 1))
    tx = optax.sgd(0.1)
    objective = BridgeObjective(model)
    fns = StepFunctions(objective, tx)
    state = init_train_state(bridge.split(model)[1], objective.state, tx, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, 16))
        state, _ = fns.train(state, (x, y))
        _, out = fns.gradient(state, (x, y))
        state = fns.apply(state, out)
    assert int(state.step) == 6
    assert fns.train._cache_size() == fns.gradient._cache_size() == fns.apply._cache_size() == 1


def test_bad_options_then_corrected_config_is_not_a_different_run(tmp_path):
    """config.json is written only after the model options were validated (regression)."""
    from landscape.config import ConfigError

    with pytest.raises(ConfigError, match="bogus"):
        train(TrainConfig(**{**TINY, "steps": 2, "model_options": {"bogus": 1}}), tmp_path,
              progress=False)
    assert not (tmp_path / "config.json").exists()
    train(TrainConfig(**{**TINY, "steps": 2}), tmp_path, progress=False)  # not refused


def test_restore_model_needs_no_dataset(tmp_path, monkeypatch):
    """restore_model rebuilds the model from run.json's shapes, without loading the data."""
    from landscape import train as train_module

    result = train(TrainConfig(**{**TINY, "steps": 2}), tmp_path, progress=False,
                   hooks=[CountingHook(1)])

    def no_data(config):
        raise AssertionError("restore_model loaded the dataset")

    monkeypatch.setattr(train_module, "load_run_data", no_data)
    model = restore_model(tmp_path)
    from landscape.bridge import split

    for x, y in zip(jax.tree.leaves(split(model)[1]), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _read_tb_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Parse TensorBoard event files (TFRecord framing) with tensorboardX's own protobufs."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_tensorboard_sink_mirrors_the_records(tmp_path):
    pytest.importorskip("tensorboardX")
    cfg = TrainConfig(**{**TINY, "probe_every": 4})
    train(cfg, tmp_path, progress=False, tensorboard=True)
    scalars = _read_tb_scalars(tmp_path / "tensorboard")
    probes_rows = read_records(tmp_path / "probes.jsonl")
    assert [s for s, _ in scalars["probes/effective_beta"]] == [0, 4]
    assert [v for _, v in scalars["probes/effective_beta"]] == pytest.approx(
        [r["effective_beta"] for r in probes_rows], rel=1e-6)
    train_rows = read_records(tmp_path / "train.jsonl")
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in train_rows],
                                                                  rel=1e-6)
    assert "probes/grad_norm_per_layer/head/kernel" in scalars
    assert json.loads((tmp_path / "run.json").read_text())["final_step"] == 8


def test_curvature_hook_matches_dense_hessian(tmp_path):
    """λ_max and gᵀHg/‖g‖² recorded at step 0 equal the dense float64 Hessian's on batch 0."""
    from jax.flatten_util import ravel_pytree

    from landscape import bridge
    from landscape.data import batch_at
    from landscape.engine import CurvatureHook, build_config_model, load_run_data

    cfg = TrainConfig(**{**TINY, "width": 0.05, "steps": 2, "dtype": "float64", "norm": "none"})
    train(cfg, tmp_path, progress=False, hooks=[CurvatureHook(every=0, at=(0,), num_iters=30)])
    rec = read_records(tmp_path / "curvature.jsonl")
    assert [r["step"] for r in rec] == [0] and rec[0]["mode"] == "batch_stats"
    with jax.enable_x64(True):
        train_data, _, shape, classes = load_run_data(cfg)
        model = bridge.cast(build_config_model(cfg, shape, classes), jnp.float64)
        _, params, state = bridge.split(model)
        x, y = batch_at(train_data, 0, cfg.batch_size, seed=cfg.seed)
        batch = bridge.make_batch(jnp.asarray(x, jnp.float64), jnp.asarray(y), state)
        flat, unravel = ravel_pytree(params)
        loss = lambda f: bridge.make_loss_fn(model)(unravel(f), batch)  # noqa: E731
        # jitted: one compile instead of one per operation of the unjitted Hessian
        hessian = np.asarray(jax.jit(jax.hessian(loss))(flat))
        g = np.asarray(jax.jit(jax.grad(loss))(flat))
    top = np.linalg.eigvalsh(hessian)[-1]
    assert_close(rec[0]["lambda_max"], top, 1e-6, name="λ_max")  # 30 Lanczos steps, float64
    assert_close(rec[0]["gradient_curvature"], g @ hessian @ g / (g @ g), 1e-9, name="gᵀHg/‖g‖²")
