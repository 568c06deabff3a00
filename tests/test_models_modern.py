"""Today's architectures: Dynamic Tanh, per-token layer / RMS norms, CIFAR ResNets (with and
without shortcuts) and the decoder-only transformer LM, through the bridge and a probe.

Tiny sizes, float32. The causal-mask checks run eagerly (no compilation per configuration); the
bridge / probe checks share one compiled model through module fixtures.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from landscape import bridge, probes
from landscape import normalization as N
from landscape.models import ResNet, TransformerLM, build_model, is_model_name, model_names

NORMS = ("layer", "rms", "dyt", "none")


def _data(shape, seed=0):
    return np.asarray(jax.random.normal(jax.random.key(seed), shape))


def _flat_params(model) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(nnx.as_pure(nnx.state(model, nnx.Param)))[0]
    return {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def _tiny_lm(**kw):
    base = dict(vocab=7, context=6, layers=2, d_model=8, heads=2, rngs=nnx.Rngs(0))
    return TransformerLM(**{**base, **kw})


# ---------------------------------------------------------------------------------- normalization


def test_dyt_formula_and_init():
    assert "dyt" in N.normalization_names() and not N.uses_batch_statistics("dyt")
    norm = N.make_normalization("dyt", 3)
    assert norm.alpha[...].shape == () and float(norm.alpha[...]) == 0.5
    np.testing.assert_array_equal(norm.scale[...], np.ones(3))
    np.testing.assert_array_equal(norm.bias[...], np.zeros(3))
    y = np.array([[0.0, 2.0, -4.0], [1.0, -1.0, 6.0]], np.float32)
    # tanh(0.5·y) by hand: tanh(1) = 0.76159416, tanh(−2) = −0.96402758
    np.testing.assert_allclose(norm(y)[0], [0.0, 0.76159416, -0.96402758], rtol=1e-6)
    custom = N.make_normalization("dyt", 3, alpha0=0.25)
    custom.scale[...] = jnp.array([1.0, 2.0, 3.0])
    custom.bias[...] = jnp.array([0.5, 0.0, -1.0])
    # γ ⊙ tanh(α y) + β, row 2: (1·tanh(0.25) + 0.5, 2·tanh(−0.25), 3·tanh(1.5) − 1)
    expect = [0.24491866 + 0.5, 2 * -0.24491866, 3 * 0.90514825 - 1.0]
    np.testing.assert_allclose(custom(y)[1], expect, rtol=1e-6)
    # elementwise: the same on (B, T, D), and train / eval modes agree
    y3 = _data((2, 4, 3), seed=1)
    np.testing.assert_allclose(custom(y3, use_running_average=True), custom(y3)[...], rtol=0)
    np.testing.assert_allclose(custom(y3)[1, 2], custom(y3[1, 2][None])[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["layer", "rms"])
def test_token_norms_reduce_over_features_only(name):
    # tokens with very different offsets and scales: per-example statistics over (T, D) cannot
    # standardize each token
    y = _data((3, 5, 8), seed=2) * np.arange(1, 6)[None, :, None] + np.arange(5)[None, :, None]

    def per_token(z):
        stat = np.mean(z, axis=-1) if name == "layer" else np.zeros(z.shape[:-1])
        spread = np.var(z, axis=-1) if name == "layer" else np.mean(np.square(z), axis=-1)
        return stat, spread

    z = np.asarray(N.make_normalization(name, 8, axes="last")(y))
    mean, spread = per_token(z)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(spread, 1.0, rtol=1e-3)
    wrong = np.asarray(N.make_normalization(name, 8)(y))  # axes="example": over (T, D) together
    w_mean, w_spread = per_token(wrong)
    assert not (np.allclose(w_mean, 0.0, atol=1e-3) and np.allclose(w_spread, 1.0, rtol=1e-2))
    # CNN behaviour unchanged by default: one statistic per example over (H, W, C)
    y4 = _data((2, 3, 3, 4), seed=3) + 1.0
    z4 = np.asarray(N.make_normalization(name, 4)(y4))
    rms = np.sqrt(np.mean(np.square(z4 - (z4.mean(axis=(1, 2, 3), keepdims=True)
                                          if name == "layer" else 0.0)), axis=(1, 2, 3)))
    np.testing.assert_allclose(rms, 1.0, rtol=1e-3)
    with pytest.raises(N.NormalizationError, match="axes"):
        N.make_normalization(name, 8, axes="tokens")
    # the transformer builds its layer / rms norms per token and refuses the per-example rule
    model = _tiny_lm(norm=name, qk_norm=True)
    assert model.blocks[0].norm1.axes == "last" and model.blocks[0].attn.q_norm.axes == "last"
    with pytest.raises(ValueError, match="axes='last'"):
        _tiny_lm(norm=name, norm_options={"axes": "example"})


# ------------------------------------------------------------------------------------------- ResNet


def _resnet_param_count(n: int, *, width: int = 1, classes: int = 10, in_ch: int = 3,
                        shortcut: bool = True) -> int:
    """He et al.'s CIFAR ResNet with BN (γ, β per channel), bias-free convs, option-B shortcuts."""
    def conv(a, b, k=3):
        return k * k * a * b

    def bn(c):
        return 2 * c

    widths = [16 * width, 32 * width, 64 * width]
    total = conv(in_ch, widths[0]) + bn(widths[0])
    cin = widths[0]
    for cout in widths:
        for _ in range(n):
            total += conv(cin, cout) + bn(cout) + conv(cout, cout) + bn(cout)
            if shortcut and cin != cout:
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    return total + cin * classes + classes


def test_resnet_parameter_counts():
    for depth in (20, 56):
        for shortcut in (True, False):
            model = nnx.eval_shape(lambda: build_model(f"resnet{depth}", shortcut=shortcut))
            count = sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
            assert count == _resnet_param_count((depth - 2) // 6, shortcut=shortcut)
    assert _resnet_param_count(3) == 272_474  # ≈ 0.27 M (He et al., Table 6)
    assert len(ResNet(20, rngs=nnx.Rngs(0)).blocks) == 9


def test_noshort_removes_shortcuts_and_changes_the_function():
    kw = dict(width=0.25, input_shape=(8, 8, 3), seed=0)
    full, noshort = build_model("resnet8", **kw), build_model("resnet8", shortcut=False, **kw)
    pf, pn = _flat_params(full), _flat_params(noshort)
    shortcut_keys = {k for k in pf if "shortcut" in k}
    assert shortcut_keys and set(pn) == set(pf) - shortcut_keys
    for k in pn:  # the shortcut kernels come from their own key stream
        np.testing.assert_array_equal(pn[k], pf[k])
    x = _data((4, 8, 8, 3), seed=4)
    assert not np.allclose(full(x), noshort(x), atol=1e-4)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_residual_identity_with_zeroed_convs(norm):
    x = _data((2, 6, 6, 4), seed=5)  # negative entries: relu acts
    for shortcut, expect in ((True, np.maximum(x, 0.0)), (False, np.zeros_like(x))):
        model = ResNet(8, width=0.25, norm=norm, shortcut=shortcut, input_shape=(6, 6, 3),
                       rngs=nnx.Rngs(0))
        block = model.blocks[0]  # stage 1: 4 → 4 channels, stride 1, identity shortcut
        block.conv1.proj.kernel[...] = jnp.zeros_like(block.conv1.proj.kernel[...])
        block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
        out = block(x, name="b", use_running_average=False, rng=None, collect=None)
        np.testing.assert_allclose(out, expect, atol=1e-6)


def test_resnet_collect_and_activation_tap():
    model = build_model("resnet8", width=0.25, input_shape=(8, 8, 3), norm="group")
    assert model.block_names() == ("block0", "block1", "block2")
    collect = {}
    out = model(_data((2, 8, 8, 3)), collect=collect)
    assert out.shape == (2, 10)
    for name, hw, c in (("stem", 8, 4), ("block0", 8, 4), ("block1", 4, 8), ("block2", 2, 16)):
        assert collect[name].shape == (2, hw, hw, c)
    assert {"block1/pre_norm", "block1/conv1", "block1/conv1/pre_norm"} <= set(collect)
    with pytest.raises(ValueError, match="taps"):
        model(_data((2, 8, 8, 3)), taps={"block0": {}})


def test_names_and_bad_arguments():
    for name in ("resnet20", "resnet56", "transformer"):
        assert name in model_names() and is_model_name(name)
    assert is_model_name("resnet14") and is_model_name("resnet1202")
    assert not is_model_name("resnet21") and not is_model_name("resnet2")
    for depth in (21, 2, 0):
        with pytest.raises(ValueError, match=r"6n\+2"):
            build_model(f"resnet{depth}")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnetX")
    lm = dict(norm="layer", input_shape=(8,), num_classes=11)
    with pytest.raises(ValueError, match="heads=3 must divide d_model=64"):
        build_model("transformer", heads=3, **lm)
    with pytest.raises(ValueError, match="context must be >= 1"):
        build_model("transformer", **{**lm, "input_shape": (0,)})
    with pytest.raises(ValueError, match="norm_position"):
        build_model("transformer", norm_position="sandwich", **lm)
    with pytest.raises(ValueError, match="must be one of layer, rms, dyt, none"):
        build_model("transformer", **{**lm, "norm": "batch"})
    with pytest.raises(ValueError, match="input_shape=\\(context,\\)"):
        build_model("transformer", norm="layer")
    with pytest.raises(ValueError, match="1 <= T <= context"):
        _tiny_lm()(jnp.zeros((1, 7), jnp.int32))


# ------------------------------------------------------------------------------------- transformer


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("position", ["pre", "post"])
def test_causal_mask_exact(position, norm, qk_norm):
    model = _tiny_lm(norm=norm, norm_position=position, qk_norm=qk_norm,
                     positions="sinusoidal" if qk_norm else "learned")
    tokens = jnp.array([[1, 4, 2, 6, 0, 3]], jnp.int32)
    base = np.asarray(model(tokens))
    assert base.shape == (1, 6, 7)
    for t in range(5):  # change token t+1: positions ≤ t must not move at all
        changed = np.asarray(model(tokens.at[0, t + 1].set((tokens[0, t + 1] + 3) % 7)))
        np.testing.assert_array_equal(changed[:, : t + 1], base[:, : t + 1])
        assert not np.allclose(changed[:, t + 1], base[:, t + 1])


def test_final_norm_tied_embeddings_and_layouts():
    pre, post = _tiny_lm(norm_position="pre"), _tiny_lm(norm_position="post")
    assert isinstance(pre.final_norm, N.LayerNorm) and post.final_norm is None
    assert isinstance(_tiny_lm(norm="dyt").final_norm, N.DyT)
    attn = pre.blocks[0].attn
    assert attn.wq[...].shape == attn.wk[...].shape == attn.wv[...].shape == (8, 2, 4)
    assert attn.wo[...].shape == (2, 4, 8) and attn.q_norm is None
    tied, untied = _tiny_lm(tie_embeddings=True), _tiny_lm()
    assert tied.head is None and untied.head[...].shape == (8, 7)
    pt, pu = _flat_params(tied), _flat_params(untied)
    assert [k for k in pu if k not in pt] == ["['head']"]  # one embedding, no output matrix
    tokens = jnp.array([[1, 2, 3]], jnp.int32)
    collect = {}
    logits = tied(tokens, collect=collect)
    h = tied.final_norm(collect["block1"])
    np.testing.assert_allclose(logits, jnp.einsum("btd,vd->btv", h, tied.embed[...]), rtol=1e-6)
    tied.embed[...] = tied.embed[...] * 2.0  # the output layer moves with the embedding
    assert not np.allclose(tied(tokens), logits)
    qk = _tiny_lm(norm="none", qk_norm=True).blocks[0].attn
    assert isinstance(qk.q_norm, N.LayerNorm) and qk.q_norm is not qk.k_norm


def test_build_transformer_options():
    model = nnx.eval_shape(lambda: build_model(
        "transformer", norm="rms", input_shape=(12,), num_classes=20, width=0.5, layers=1, heads=4,
        qk_norm=True, positions="sinusoidal", tie_embeddings=True, norm_position="post"))
    assert (model.d_model, model.context, model.vocab, len(model.blocks)) == (32, 12, 20, 1)
    assert model.pos is None and model.head is None and model.norm_name == "rms"
    assert model.loss_kind == "cross_entropy"


@pytest.fixture(scope="module")
def lm_problem():
    # the shapes of _tiny_lm: its eager initialisation is compiled once for the whole file
    model = build_model("transformer", norm="layer", input_shape=(6,), num_classes=7, layers=2,
                        d_model=8, heads=2, qk_norm=True)
    _, params, state = bridge.split(model)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 7, (4, 7)), jnp.int32)
    batch = bridge.make_batch(tokens[:, :-1], tokens[:, 1:], state)
    return model, params, batch, bridge.make_loss_fn(model)


def test_bridge_loss_on_sequences(lm_problem):
    model, params, batch, loss_fn = lm_problem
    value = jax.jit(loss_fn)(params, batch)
    assert value.shape == () and np.isfinite(value)
    assert abs(float(value) - math.log(7)) < 0.1  # small init: near-uniform predictions
    logits = bridge.predict(nnx.graphdef(model), params, batch["state"], batch["x"])
    loss, acc = bridge.loss_value("cross_entropy", logits, batch["y"])
    logp = jax.nn.log_softmax(logits, axis=-1)
    manual = -np.mean(np.take_along_axis(np.asarray(logp), np.asarray(batch["y"])[..., None], -1))
    np.testing.assert_allclose(loss, manual, rtol=1e-5)
    np.testing.assert_allclose(value, manual, rtol=1e-5)
    assert acc.shape == () and 0.0 <= float(acc) <= 1.0


def test_step_probe_on_transformer(lm_problem):
    _, params, batch, loss_fn = lm_problem
    result = probes.step_probe(loss_fn, params, batch, jnp.array([2.0]), floor_factor=0.0)
    assert np.all(np.isfinite(result.loss)) and np.all(np.isfinite(result.grad_change))
    assert np.isfinite(result.effective_beta) and float(result.grad_norm) > 0
    assert float(result.loss0) == pytest.approx(float(jax.jit(loss_fn)(params, batch)), rel=1e-5)
