"""Models (shapes, init, plans) and the NNX bridge (explicit BN mode, statistics never mutated)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from landscape import bridge
from landscape.engine import BridgeObjective, StepFunctions, init_train_state
from landscape.models import VGG, DeepLinear, MLP, build_model


def _conv_widths(model):
    return [b.proj.kernel[...].shape[-1] for b in model.blocks]


def test_vgg_plans_and_width():
    assert _conv_widths(VGG("A", width=0.25, rngs=nnx.Rngs(0))) == [16, 32, 64, 64, 128, 128, 128, 128]
    d = VGG("vgg16", width=0.125, rngs=nnx.Rngs(0))
    assert len(d.blocks) == 13  # the paper's figures index layer #13
    assert sum(d.pool_after) == 5
    m28 = VGG("A", width=0.125, input_shape=(28, 28, 1), rngs=nnx.Rngs(0))
    assert m28(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)
    assert sum(m28.pool_after) == 4  # 28 → 14 → 7 → 3 → 1, the fifth pool is skipped
    with pytest.raises(ValueError, match="unknown VGG plan"):
        VGG("Z", rngs=nnx.Rngs(0))


def test_glorot_init_and_bias_policy():
    m = VGG("A", width=0.5, norm="batch", rngs=nnx.Rngs(0))
    k = np.asarray(m.blocks[3].proj.kernel[...])  # 3×3×64×64
    fan_in, fan_out = 9 * k.shape[2], 9 * k.shape[3]
    np.testing.assert_allclose(k.var(), 2.0 / (fan_in + fan_out), rtol=0.05)
    assert m.blocks[0].proj.bias is None  # BN's β makes a conv bias redundant
    assert VGG("A", width=0.25, norm="none", rngs=nnx.Rngs(0)).blocks[0].proj.bias is not None


def test_mlp_ioffe_layout():
    m = MLP(784, norm="batch", rngs=nnx.Rngs(0))
    assert [b.proj.kernel[...].shape for b in m.blocks] == [(784, 100), (100, 100), (100, 100)]
    assert all(b.proj.bias is None and b.activation == "sigmoid" for b in m.blocks)
    collect = {}
    out = m(jnp.ones((5, 28, 28, 1)), collect=collect)
    assert out.shape == (5, 10)
    assert collect["block2"].shape == (5, 100)  # the input to the last hidden sigmoid
    np.testing.assert_allclose(collect["block2"].mean(0), 0.0, atol=1e-4)


def test_deep_linear_is_linear():
    m = DeepLinear(depth=25, dim=10, rngs=nnx.Rngs(0))
    assert len(m.blocks) == 25
    x1, x2 = jax.random.normal(jax.random.key(1), (2, 3, 10))
    np.testing.assert_allclose(m(2 * x1 - x2), 2 * m(x1) - m(x2), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "weight", "rms", "batch"])
def test_deep_linear_has_no_bias(norm):
    """Regression: under weight/RMS normalization the DLN gained biases (and became affine)."""
    m = DeepLinear(depth=4, dim=3, norm=norm, rngs=nnx.Rngs(0))
    paths = ["/".join(map(str, p)) for p, _ in jax.tree_util.tree_leaves_with_path(
        nnx.state(m, nnx.Param))]
    assert not [p for p in paths if p.endswith("bias")], paths
    if norm in ("none", "weight"):  # linear maps: f(0) = 0 exactly
        np.testing.assert_array_equal(np.asarray(m(jnp.zeros((2, 3)))), 0.0)


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")


@pytest.fixture(scope="module")
def bn_setup():
    model = build_model("vgg11", width=0.125, norm="batch", input_shape=(8, 8, 1), seed=0)
    x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1)) * 2 + 1
    y = jax.random.randint(jax.random.key(1), (16,), 0, 10)
    return model, x, y


def test_loss_modes_match_model_modes_and_never_mutate(bn_setup):
    model, x, y = bn_setup
    graphdef, params, state = bridge.split(model)
    # give the running statistics recognisable values
    state = jax.tree.map(lambda v: v + 0.25, state)
    nnx.update(model, state)
    before = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    batch = bridge.make_batch(x, y, state)
    for mode, ura in (("batch_stats", False), ("running_average", True)):
        loss_fn = jax.jit(bridge.make_loss_fn(model, mode=mode))
        value = loss_fn(params, batch)
        ref = bridge.merge(graphdef, params, state)
        expect = optax.softmax_cross_entropy_with_integer_labels(ref(x, use_running_average=ura), y).mean()
        np.testing.assert_allclose(value, expect, rtol=1e-5)
        jax.grad(loss_fn)(params, batch)
    after = nnx.state(model, nnx.BatchStat)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, after))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b + 0.25),
                 state, bridge.split(build_model("vgg11", width=0.125, norm="batch",
                                                 input_shape=(8, 8, 1), seed=0))[2])
    # the two modes really are different functions
    lb = bridge.make_loss_fn(model, mode="batch_stats")(params, batch)
    lr = bridge.make_loss_fn(model, mode="running_average")(params, batch)
    assert abs(float(lb) - float(lr)) > 1e-3
    with pytest.raises(ValueError, match="batch_stats, running_average"):
        bridge.make_loss_fn(model, mode="train")


def test_loss_fn_compiles_once_across_state_values(bn_setup):
    model, x, y = bn_setup
    traces = []
    inner = bridge.make_loss_fn(model, mode="running_average")

    def counted(params, batch):
        traces.append(1)
        return inner(params, batch)

    loss_fn = jax.jit(counted)
    _, params, _ = bridge.split(model)
    fresh = bridge.split(build_model("vgg11", width=0.125, norm="batch", input_shape=(8, 8, 1)))[2]
    a = loss_fn(params, bridge.make_batch(x, y, fresh))  # running means 0, variances 1
    b = loss_fn(params, bridge.make_batch(x, y, jax.tree.map(lambda v: v * 4.0, fresh)))
    assert len(traces) == 1
    assert float(a) != float(b)  # the state is an input, not a baked-in constant


def test_train_step_updates_statistics_and_reduces_loss(bn_setup):
    """The engine's step on the bridge's training objective (BridgeObjective, StepFunctions)."""
    model, x, y = bn_setup
    graphdef, params, state = bridge.split(model)
    tx = optax.sgd(0.05)
    fns = StepFunctions(BridgeObjective(model), tx)
    train_state = init_train_state(params, jax.tree.map(jnp.copy, state), tx, seed=0)  # donated
    losses = []
    for _ in range(5):
        train_state, metrics = fns.train(train_state, (x, y))
        losses.append(float(metrics.loss))
    assert losses[-1] < losses[0]
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), train_state.model_state, state)
    assert max(jax.tree.leaves(moved)) > 1e-4  # a train step does advance running statistics


def test_mse_loss_for_deep_linear():
    model = DeepLinear(depth=3, dim=4, rngs=nnx.Rngs(0))
    _, params, state = bridge.split(model)
    x = jnp.ones((2, 4))
    target = jnp.zeros((2, 4))
    loss = bridge.make_loss_fn(model)(params, bridge.make_batch(x, target, state))
    np.testing.assert_allclose(loss, jnp.mean(jnp.sum(model(x) ** 2, axis=-1)), rtol=1e-6)


def test_summed_mse_and_norm_position_for_deep_linear():
    """loss_reduction="sum" is the batch total ‖WX − AX‖²_F, also in chunked evaluation."""
    model = DeepLinear(depth=3, dim=4, loss_reduction="sum", rngs=nnx.Rngs(0))
    _, params, state = bridge.split(model)
    x = jax.random.normal(jax.random.key(0), (6, 4))
    target = jnp.zeros((6, 4))
    total = float(jnp.sum(model(x) ** 2))
    loss = bridge.make_loss_fn(model)(params, bridge.make_batch(x, target, state))
    np.testing.assert_allclose(loss, total, rtol=1e-6)
    chunked, _ = bridge.evaluate(model, params, state, x, target, batch_size=4)  # chunks 4 + 2
    np.testing.assert_allclose(chunked, total, rtol=1e-6)
    every = DeepLinear(depth=3, dim=4, norm="batch", norm_position="after_all", rngs=nnx.Rngs(0))
    last = DeepLinear(depth=3, dim=4, norm="batch", rngs=nnx.Rngs(0))
    assert type(every.blocks[-1].norm).__name__ == "BatchNorm"
    assert type(last.blocks[-1].norm).__name__ != "BatchNorm"
    with pytest.raises(ValueError, match="loss_reduction"):
        DeepLinear(depth=2, dim=2, loss_reduction="median", rngs=nnx.Rngs(0))
