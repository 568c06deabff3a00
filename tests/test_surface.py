"""Loss surfaces: directions, grid evaluation, PCA, save/load and the surface figures.

Tolerances: float64 closed forms are compared at rtol 1e-12 (a few roundings of O(1) sums);
normalized norms at rtol 1e-9 (the 1e-10 guard of ‖d_f‖ + 1e-10, Li et al.'s, is ~2e-11 relative);
float32 at rtol 1e-5 (a few float32 roundings of sums of ~10 terms). Statistical checks state
their own margins (several standard errors).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_close

from images import is_blank
from landscape import probes
from landscape.probes import (
    LossSurface,
    default_filter_axes,
    interpolation_direction,
    load_surface,
    loss_surface,
    param_paths,
    pca_directions,
    random_direction,
    save_surface,
)

pytestmark = pytest.mark.usefixtures("x64")

# ----------------------------------------------------------------------------------------------
# a float64 quadratic with closed-form slices: L(θ) = ½ θᵀHθ + gᵀθ + c over the flattened pytree

_SHAPES = {"w": (3, 2), "b": (2,)}
_P = 8


def _flat(tree):
    return np.concatenate([np.asarray(tree["w"], np.float64).ravel(),
                           np.asarray(tree["b"], np.float64).ravel()])


def _quad_batch(seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(_P, _P))
    return {"H": jnp.asarray(m @ m.T / _P + np.eye(_P)), "g": jnp.asarray(rng.normal(size=_P)),
            "c": jnp.asarray(0.7)}


def quad_loss(params, batch):
    theta = jnp.concatenate([params["w"].ravel(), params["b"].ravel()])
    H = batch["H"].astype(theta.dtype)
    return 0.5 * theta @ H @ theta + batch["g"].astype(theta.dtype) @ theta + batch["c"]


def quad_metric(params, batch):  # a second, different function of θ: ‖θ‖²
    return jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2)


def _tree(rng, dtype=np.float64):
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in _SHAPES.items()}


def _quad_expected(params, batch, dirs, coords):
    """Closed form L(θ + a d₁ + b d₂) = L(θ) + a gd₁ + b gd₂ + ½(a² h₁₁ + 2ab h₁₂ + b² h₂₂)."""
    th = _flat(params)
    H, g, c = (np.asarray(batch[k], np.float64) for k in ("H", "g", "c"))
    grad = H @ th + g
    L0 = 0.5 * th @ H @ th + g @ th + c
    ds = [_flat(d) for d in dirs]
    if len(ds) == 1:
        a = np.asarray(coords[0], np.float64)
        return L0 + a * (grad @ ds[0]) + 0.5 * a ** 2 * (ds[0] @ H @ ds[0])
    a = np.asarray(coords[0], np.float64)[:, None]
    b = np.asarray(coords[1], np.float64)[None, :]
    return (L0 + a * (grad @ ds[0]) + b * (grad @ ds[1])
            + 0.5 * (a ** 2 * (ds[0] @ H @ ds[0]) + 2 * a * b * (ds[0] @ H @ ds[1])
                     + b ** 2 * (ds[1] @ H @ ds[1])))


@pytest.fixture(scope="module")
def quad():
    rng = np.random.default_rng(1)
    params, d1, d2 = _tree(rng), _tree(rng), _tree(rng)
    a = np.sort(rng.uniform(-2, 2, size=5))   # N = 5 × 4 = 20; chunk 3 does not divide it
    b = np.sort(rng.uniform(-1, 3, size=4))
    return params, _quad_batch(), (d1, d2), (a, b)


@pytest.mark.parametrize("strategy", ["auto", "unroll", "vmap", "map"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_quadratic_2d_and_1d_match_closed_form(quad, strategy, chunk_size):
    params, batch, dirs, coords = quad
    s = loss_surface(quad_loss, params, batch, dirs, coords, strategy=strategy,
                     chunk_size=chunk_size)
    assert s.loss.dtype == jnp.float64 and s.metric is None
    assert_close(s.loss, _quad_expected(params, batch, dirs, coords), rtol=1e-12, name="2-D")
    assert_close(s.coords[0], coords[0], rtol=0) and assert_close(s.coords[1], coords[1], rtol=0)
    s1 = loss_surface(quad_loss, params, batch, dirs[1:], coords[:1], strategy=strategy,
                      chunk_size=chunk_size)   # 1-D, N = 5, also not divisible by 3
    assert s1.loss.shape == (5,)
    assert_close(s1.loss, _quad_expected(params, batch, dirs[1:], coords[:1]), rtol=1e-12,
                 name="1-D")


def test_metric_on_same_grid(quad):
    params, batch, dirs, coords = quad
    s = loss_surface(quad_loss, params, batch, dirs, coords, chunk_size=3, metrics_fn=quad_metric)
    th, d1, d2 = _flat(params), _flat(dirs[0]), _flat(dirs[1])
    expected = np.array([[np.sum((th + a * d1 + b * d2) ** 2) for b in coords[1]]
                         for a in coords[0]])
    assert_close(s.metric, expected, rtol=1e-12, name="metric")
    assert_close(s.loss, _quad_expected(params, batch, dirs, coords), rtol=1e-12, name="loss")


def test_float32_params_stay_float32(quad):
    params, batch, dirs, coords = quad
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    d32 = tuple(jax.tree.map(lambda x: x.astype(jnp.float32), d) for d in dirs)
    s = loss_surface(quad_loss, p32, batch, d32, coords, chunk_size=3)
    assert s.loss.dtype == jnp.float32 and s.coords[0].dtype == jnp.float32
    # expected from the float32-rounded inputs, computed in float64
    c32 = tuple(np.asarray(c, np.float32) for c in coords)
    assert_close(s.loss, _quad_expected(p32, batch, d32, c32), rtol=1e-5, name="float32")


_traces = {"n": 0}


def counting_loss(params, batch):
    _traces["n"] += 1     # runs only while tracing
    return quad_loss(params, batch)


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
def test_no_recompile_on_new_values(quad, strategy):
    params, batch, dirs, coords = quad
    loss_surface(counting_loss, params, batch, dirs, coords, strategy=strategy, chunk_size=3)
    before = _traces["n"]
    assert before > 0
    rng = np.random.default_rng(7)
    p2, e1, e2 = _tree(rng), _tree(rng), _tree(rng)
    new_coords = (coords[0] * 0.5 + 0.1, coords[1] - 1.0)
    s = loss_surface(counting_loss, p2, _quad_batch(3), (e1, e2), new_coords, strategy=strategy,
                     chunk_size=3)
    assert _traces["n"] == before, "second call with new values re-traced the chunk function"
    assert_close(s.loss, _quad_expected(p2, _quad_batch(3), (e1, e2), new_coords), rtol=1e-12)
    # Grids with other numbers of points reuse the same compiled chunk (same chunk size): the
    # last chunk is padded, never compiled at its own size (N = 9 fills its chunks exactly).
    loss_surface(counting_loss, p2, batch, (e1,), (np.linspace(-1, 1, 9),), strategy=strategy,
                 chunk_size=3)
    after_1d = _traces["n"]
    for n in (7, 11, 13):
        s1 = loss_surface(counting_loss, params, batch, (e2,), (np.linspace(0, 2, n),),
                          strategy=strategy, chunk_size=3)
        assert s1.loss.shape == (n,)
    assert _traces["n"] == after_1d, "a grid of another size compiled a new chunk function"


def test_bad_arguments(quad):
    params, batch, dirs, coords = quad
    with pytest.raises(ValueError, match="strategy"):
        loss_surface(quad_loss, params, batch, dirs, coords, strategy="loop")
    with pytest.raises(ValueError, match="chunk_size"):
        loss_surface(quad_loss, params, batch, dirs, coords, chunk_size=0)
    with pytest.raises(ValueError, match="coords"):
        loss_surface(quad_loss, params, batch, dirs, coords[:1])
    with pytest.raises(ValueError, match="directions"):
        loss_surface(quad_loss, params, batch, dirs + dirs[:1], coords + coords[:1])
    with pytest.raises(ValueError, match="shape"):
        loss_surface(quad_loss, params, batch, ({"w": jnp.ones((2, 3)), "b": jnp.ones(2)},),
                     coords[:1])
    with pytest.raises(ValueError, match="norm"):
        random_direction(jax.random.key(0), params, norm="unit")


# ----------------------------------------------------------------------------------------------
# random directions


def _layered_params():
    """Flax layouts: conv kernel HWIO (3, 3, 4, 6), dense (5, 7); filters of very unequal norm."""
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(3, 3, 4, 6)) * (1.0 + np.arange(6))          # filter f scaled by f+1
    dense = rng.normal(size=(5, 7)) * np.geomspace(0.1, 10.0, 7)          # unit j scaled
    return {"conv": {"kernel": jnp.asarray(conv), "bias": jnp.asarray(rng.normal(size=6))},
            "dense": {"kernel": jnp.asarray(dense), "bias": jnp.asarray(rng.normal(size=7))},
            "bn": {"scale": jnp.asarray(rng.normal(size=6)), "count": jnp.asarray(2.5)}}


def test_filter_norm_uses_last_axis():
    params = _layered_params()
    d = random_direction(jax.random.key(3), params)
    for name, axes in (("conv", (0, 1, 2)), ("dense", (0,))):
        p, q = np.asarray(params[name]["kernel"]), np.asarray(d[name]["kernel"])
        assert q.dtype == p.dtype
        assert_close(np.linalg.norm(q.reshape(-1, p.shape[-1]), axis=0),
                     np.linalg.norm(p.reshape(-1, p.shape[-1]), axis=0), rtol=1e-9, name=name)
        # A PyTorch-layout (first-axis) reading gives different norms on these params.
        first_p = np.linalg.norm(p.reshape(p.shape[0], -1), axis=1)
        first_q = np.linalg.norm(q.reshape(q.shape[0], -1), axis=1)
        assert not np.allclose(first_p, first_q, rtol=0.05)
        # Not just a rescaled copy of θ: the direction is random.
        assert abs(np.corrcoef(p.ravel(), q.ravel())[0, 1]) < 0.5


def test_layer_norm_and_none():
    params = _layered_params()
    d = random_direction(jax.random.key(4), params, norm="layer")
    for name in ("conv", "dense"):
        assert_close(np.linalg.norm(d[name]["kernel"]), np.linalg.norm(params[name]["kernel"]),
                     rtol=1e-9, name=name)
        per_filter = np.linalg.norm(np.asarray(d[name]["kernel"]).reshape(
            -1, params[name]["kernel"].shape[-1]), axis=0)
        target = np.linalg.norm(np.asarray(params[name]["kernel"]).reshape(
            -1, params[name]["kernel"].shape[-1]), axis=0)
        assert not np.allclose(per_filter, target, rtol=0.05)   # layer ≠ filter normalization
    raw = random_direction(jax.random.key(4), params, norm=None)
    raw2 = random_direction(jax.random.key(4), params, norm="none")
    assert_close(raw["conv"]["kernel"], raw2["conv"]["kernel"], rtol=0)
    # conv kernel: 216 N(0,1) entries → sample std within ±0.2 of 1 (≈ 4 standard errors)
    assert abs(np.std(np.asarray(raw["conv"]["kernel"])) - 1.0) < 0.2


def test_ignore_1d_zero_or_copy():
    params = _layered_params()
    zero = random_direction(jax.random.key(5), params, ignore_1d=True)
    copy = random_direction(jax.random.key(5), params, ignore_1d=False)
    for leaf in (("conv", "bias"), ("dense", "bias"), ("bn", "scale"), ("bn", "count")):
        p = params[leaf[0]][leaf[1]]
        assert_close(zero[leaf[0]][leaf[1]], np.zeros(np.shape(p)), rtol=0, name=str(leaf))
        assert_close(copy[leaf[0]][leaf[1]], p, rtol=0, name=str(leaf))
    # Kernels do not depend on ignore_1d (same key → same draw).
    assert_close(zero["conv"]["kernel"], copy["conv"]["kernel"], rtol=0)
    other = random_direction(jax.random.key(6), params)
    assert not np.allclose(other["conv"]["kernel"], zero["conv"]["kernel"])


def test_entries_are_gaussian_not_uniform():
    x = np.asarray(random_direction(jax.random.key(11), {"k": jnp.zeros((400, 500))},
                                    norm="none")["k"], np.float64).ravel()   # n = 200 000
    z = (x - x.mean()) / x.std()
    excess_kurtosis = np.mean(z ** 4) - 3.0     # Gaussian 0, uniform −1.2; s.e. ≈ √(24/n) ≈ 0.011
    assert abs(excess_kurtosis) < 0.08
    assert abs(x.mean()) < 0.01 and abs(x.var() - 1.0) < 0.02   # s.e. 0.0022 and 0.0032
    # Tails: P(|x| > 3) = 0.0027 for N(0,1); a uniform of variance 1 never exceeds √3.
    assert 0.0020 < np.mean(np.abs(x) > 3.0) < 0.0035


def test_random_direction_on_float32_tree():
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _layered_params())
    d = random_direction(jax.random.key(0), params)
    assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(d))
    k = np.asarray(params["conv"]["kernel"], np.float64)
    assert_close(np.linalg.norm(np.asarray(d["conv"]["kernel"], np.float64).reshape(-1, 6), axis=0),
                 np.linalg.norm(k.reshape(-1, 6), axis=0), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# which axes index the filters: layouts other than Flax's last axis (filter_axes)


def _filter_norms(x, filter_axes):
    """‖x_f‖_F in float64 for every filter f (an index into ``filter_axes``), in C order."""
    x = np.asarray(x, np.float64)
    front = np.moveaxis(x, filter_axes, tuple(range(len(filter_axes))))
    return np.linalg.norm(front.reshape(int(np.prod(front.shape[:len(filter_axes)])), -1), axis=1)


def _filters_match(d, theta, filter_axes):
    return np.allclose(_filter_norms(d, filter_axes), _filter_norms(theta, filter_axes), rtol=1e-6,
                       atol=0)


#: (params path, shape, filter axes of the layout, a wrong choice (for q/k/v: the old last-axis
#: rule), the filter_axes argument)
_LAYOUTS = {
    "flax_dense_in_out": (("dense", "kernel"), (5, 7), (1,), (0,), None),
    "equinox_out_in": (("linear", "weight"), (7, 5), (0,), (1,), 0),
    "attention_query": (("attn", "query", "kernel"), (6, 2, 4), (1, 2), (2,), None),
    "embedding": (("tok_embed", "embedding"), (11, 4), (0,), (1,), None),
}


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
def test_filter_axes_per_layout(layout):
    path, shape, axes, wrong, arg = _LAYOUTS[layout]
    fshape = [shape[a] if a in axes else 1 for a in range(len(shape))]
    scale = np.geomspace(0.1, 100.0, int(np.prod(fshape))).reshape(fshape)  # unequal filters
    theta = jnp.asarray(np.random.default_rng(8).normal(size=shape) * scale, jnp.float32)
    params = {path[-1]: theta}
    for name in reversed(path[:-1]):
        params = {name: params}
    leaf = lambda tree: jax.tree.leaves(tree)[0]
    d = leaf(random_direction(jax.random.key(2), params, filter_axes=arg))
    assert d.dtype == jnp.float32
    assert_close(_filter_norms(d, axes), _filter_norms(theta, axes), rtol=1e-6, name=layout)
    # The check can fail: the same draw normalized along the wrong axes does not pass it.
    d_wrong = leaf(random_direction(jax.random.key(2), params, filter_axes=wrong))
    assert not _filters_match(d_wrong, theta, axes)


def test_default_filter_axes_rules():
    cases = {
        ("dense/kernel", (5, 7)): (1,),
        ("conv/kernel", (3, 3, 4, 6)): (3,),
        ("attn/key/kernel", (6, 2, 4)): (1, 2),
        ("attn/value/kernel/value", (6, 2, 4)): (1, 2),   # non-pure nnx.State path
        ("blocks/0/q_proj/kernel", (6, 2, 4)): (1, 2),
        ("attn/out/kernel", (2, 4, 6)): (2,),
        ("conv1d/kernel/value", (3, 4, 6)): (2,),          # the Variable's "value" is no module
        ("Embed_0/embedding", (11, 4)): (0,),
        ("patch_embed/kernel", (4, 4, 3, 8)): (3,),        # a ViT patch conv stays a kernel
        ("embed_proj/kernel", (4, 8)): (1,),
        ("bias", (6,)): (0,),
    }
    got = {k: default_filter_axes(k[0], jnp.zeros(k[1])) for k in cases}
    assert got == cases


def test_default_filter_axes_on_real_flax_modules():
    from flax import nnx

    class Tiny(nnx.Module):
        def __init__(self):
            self.tok_embed = nnx.Embed(11, 8, rngs=nnx.Rngs(0))
            self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, qkv_features=8,
                                               out_features=6, decode=False, rngs=nnx.Rngs(1))
            self.head = nnx.Linear(6, 3, rngs=nnx.Rngs(2))

    expected = {"attn/key/kernel": (1, 2), "attn/out/kernel": (2,), "attn/query/kernel": (1, 2),
                "attn/value/kernel": (1, 2), "head/kernel": (1,), "tok_embed/embedding": (0,)}
    with jax.enable_x64(False):
        _, state, _ = nnx.split(Tiny(), nnx.Param, ...)
        params = nnx.as_pure(state)
        paths, leaves = param_paths(params), jax.tree.leaves(params)
        # The q/k/v biases are (heads, head_dim): 2-D, so drawn, with the last-axis rule.
        weights = lambda ps, xs: {p.removesuffix("/value"): default_filter_axes(p, x)
                                  for p, x in zip(ps, xs) if "bias" not in p.split("/")}
        assert weights(paths, leaves) == expected
        # Variables left in (".../kernel/value"): the same rule.
        assert weights(param_paths(state), jax.tree.leaves(state)) == expected
        d = random_direction(jax.random.key(3), params)
        for p, x, y in zip(paths, leaves, jax.tree.leaves(d)):
            if p in expected:
                assert_close(_filter_norms(y, expected[p]), _filter_norms(x, expected[p]),
                             rtol=1e-6, name=p)


def test_filter_axes_callable_overrides_one_leaf():
    from landscape.probes import _directions

    rng = np.random.default_rng(9)
    rows = np.geomspace(0.1, 10.0, 7)[:, None]          # unequal (out, in) filters
    params = {"b": jnp.asarray(rng.normal(size=7), jnp.float32),
              "enc": {"kernel": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)},
              "eqx": {"weight": jnp.asarray(rng.normal(size=(7, 5)) * rows, jnp.float32)}}
    seen = []

    def rule(path, leaf):
        seen.append(path)
        return 0 if path == "eqx/weight" else None

    d = random_direction(jax.random.key(4), params, filter_axes=rule)
    assert seen == ["enc/kernel", "eqx/weight"]         # ≥2-D float leaves, on the host
    assert_close(_filter_norms(d["eqx"]["weight"], (0,)),
                 _filter_norms(params["eqx"]["weight"], (0,)), rtol=1e-6)
    assert not _filters_match(d["eqx"]["weight"], params["eqx"]["weight"], (1,))
    # The same draw as without the rule: the default leaf is bit-identical, the other rescaled.
    default = random_direction(jax.random.key(4), params)
    np.testing.assert_array_equal(d["enc"]["kernel"], default["enc"]["kernel"])
    np.testing.assert_array_equal(d["eqx"]["weight"],
                                  random_direction(jax.random.key(4), params,
                                                   filter_axes=0)["eqx"]["weight"])
    # Resolved to static axes outside the jit: a new callable giving the same axes, on new
    # values, reuses the compiled program.
    compiled = _directions._normalize_direction._cache_size()
    moved = jax.tree.map(lambda x: x + 1.0, params)
    random_direction(jax.random.key(5), moved,
                     filter_axes=lambda p, x: (-2,) if "eqx" in p else None)
    assert _directions._normalize_direction._cache_size() == compiled


def test_filter_axes_bad_axis_names_the_leaf():
    params = {"blocks": {"0": {"w": jnp.ones((3, 4), jnp.float32)}}, "b": jnp.ones(3)}
    for bad in (2, (0, -3), (1, -1), 1.0, lambda p, x: (0, 5)):
        with pytest.raises(ValueError, match="blocks/0/w") as info:
            random_direction(jax.random.key(0), params, filter_axes=bad)
        assert "\n" not in str(info.value) and "(3, 4)" in str(info.value)
    assert_close(_filter_norms(random_direction(jax.random.key(0), params, filter_axes=-2)
                               ["blocks"]["0"]["w"], (0,)), np.full(3, 2.0), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# interpolation


def tanh_net_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"][None, :])
    return jnp.mean((h @ params["w2"] - batch["y"]) ** 2)


def test_interpolation_endpoints():
    rng = np.random.default_rng(2)
    shapes = {"w1": (4, 5), "b1": (5,), "w2": (5, 1)}
    theta0 = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    theta1 = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    batch = {"x": jnp.asarray(rng.normal(size=(16, 4))), "y": jnp.asarray(rng.normal(size=(16, 1)))}
    d = interpolation_direction(theta0, theta1)
    assert_close(d["w1"], np.asarray(theta1["w1"]) - np.asarray(theta0["w1"]), rtol=0)
    alphas = np.array([0.0, 0.25, 1.0, 1.5])
    s = loss_surface(tanh_net_loss, theta0, batch, (d,), (alphas,), chunk_size=3)
    assert_close(s.loss[0], tanh_net_loss(theta0, batch), rtol=1e-12, name="L(θ₀)")
    assert_close(s.loss[2], tanh_net_loss(theta1, batch), rtol=1e-12, name="L(θ₁)")
    mid = jax.tree.map(lambda a, b: 0.75 * a + 0.25 * b, theta0, theta1)   # (1−α)θ₀ + αθ₁
    assert_close(s.loss[1], tanh_net_loss(mid, batch), rtol=1e-12, name="L(θ(¼))")


# ----------------------------------------------------------------------------------------------
# PCA of a trajectory


def test_pca_recovers_planted_plane():
    rng = np.random.default_rng(4)
    shapes = {"k": (10, 8), "b": (30,)}
    num = sum(int(np.prod(s)) for s in shapes.values())
    q, _ = np.linalg.qr(rng.normal(size=(num, 2)))
    u, v = q[:, 0], q[:, 1]
    t = np.arange(12)
    ab = np.stack([3.0 * np.exp(-t / 6) * np.cos(t / 2), 1.0 * np.exp(-t / 6) * np.sin(t / 2)], 1)
    final_flat = rng.normal(size=num)
    pts = final_flat + ab @ np.stack([u, v]) + 1e-9 * rng.normal(size=(12, num))

    def unflat(x):
        return {"k": jnp.asarray(x[:80].reshape(10, 8)), "b": jnp.asarray(x[80:])}

    final = unflat(final_flat)
    traj = [unflat(p) for p in pts]
    pca = pca_directions(traj, final)
    assert len(pca.directions) == 2 and pca.projected.shape == (12, 2)
    assert pca.explained_variance_ratio.sum() > 1 - 1e-9
    assert pca.explained_variance_ratio[0] >= pca.explained_variance_ratio[1] > 0.01
    V = np.stack([np.concatenate([np.asarray(d["k"]).ravel(), np.asarray(d["b"])])
                  for d in pca.directions])
    assert_close(V @ V.T, np.eye(2), rtol=0, atol=1e-12, name="orthonormal")
    # Same subspace: the projectors onto span(V) and span(u, v) agree.
    assert_close(V.T @ V, np.outer(u, u) + np.outer(v, v), rtol=0, atol=1e-7, name="projector")
    # Coordinates equal (a_t, b_t) up to a rotation/reflection: all pairwise distances and norms.
    dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert_close(dist(pca.projected), dist(ab), rtol=0, atol=1e-7, name="distances")
    assert_close(np.linalg.norm(pca.projected, axis=1), np.linalg.norm(ab, axis=1), rtol=0,
                 atol=1e-7, name="distance to final")
    # A stacked trajectory (leading T axis) gives the same answer; so does centring here (span).
    stacked = {"k": jnp.stack([p["k"] for p in traj]), "b": jnp.stack([p["b"] for p in traj])}
    again = pca_directions(stacked, final)
    assert_close(again.projected, pca.projected, rtol=0, atol=1e-12)
    centered = pca_directions(traj, final, center=True)
    Vc = np.stack([np.concatenate([np.asarray(d["k"]).ravel(), np.asarray(d["b"])])
                   for d in centered.directions])
    assert_close(Vc.T @ Vc, np.outer(u, u) + np.outer(v, v), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="num"):
        pca_directions(traj, final, num=13)


def test_pca_rejects_degenerate_trajectory():
    final = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="fewer than"):
        pca_directions([final, final, final], final)


# ----------------------------------------------------------------------------------------------
# a real (tiny) Flax model through the bridge: nnx State pytrees, BN batch statistics


def test_bridge_model_surface_matches_direct_evaluation():
    # float32 as in real use (the normalization layers warn about float64 scatters under x64).
    with jax.enable_x64(False):
        _bridge_model_check()


def _bridge_model_check():
    from landscape import build_model, make_batch, make_loss_fn, split

    model = build_model("mlp", input_shape=(4, 4, 1), width=0.05, norm="batch")
    _, params, state = split(model)
    rng = np.random.default_rng(0)
    batch = make_batch(jnp.asarray(rng.normal(size=(8, 4, 4, 1)), jnp.float32),
                       jnp.asarray(rng.integers(0, 10, size=8), jnp.int32), state)
    loss_fn = make_loss_fn(model, mode="batch_stats")
    d1 = random_direction(jax.random.key(0), params)
    d2 = random_direction(jax.random.key(1), params)
    a = np.array([-0.5, 0.5], np.float32)
    b = np.array([0.0, 1.0, -1.0], np.float32)
    s = loss_surface(loss_fn, params, batch, (d1, d2), (a, b))
    assert s.loss.shape == (2, 3) and s.loss.dtype == jnp.float32
    moved = jax.tree.map(lambda p, x, y: p + a[1] * x + b[2] * y, params, d1, d2)
    assert_close(s.loss[1, 2], jax.jit(loss_fn)(moved, batch), rtol=1e-5)
    assert_close(s.loss[0, 0], jax.jit(loss_fn)(
        jax.tree.map(lambda p, x: p + a[0] * x, params, d1), batch), rtol=1e-5)
    assert not np.allclose(s.loss[0, 0], s.loss[1, 2], rtol=1e-3)   # the grid is not flat


# ----------------------------------------------------------------------------------------------
# save / load and figures


def test_save_load_round_trip(tmp_path):
    loss = np.arange(12.0).reshape(3, 4)
    loss[2, 3] = np.nan
    s = LossSurface((np.linspace(-1, 1, 3), np.linspace(0, 2, 4)), loss, loss * 0.1)
    paths = save_surface(tmp_path / "sub" / "surf.v1", s, mode="batch_stats", norm="filter",
                         ignore_1d=True, step=np.int64(5))
    assert [p.name for p in paths] == ["surf.v1.npz", "surf.v1.json"]
    back, record = load_surface(tmp_path / "sub" / "surf.v1")
    for x, y in zip(back.coords, s.coords):
        assert_close(x, y, rtol=0)
    np.testing.assert_array_equal(back.loss, loss)          # NaN in the same place
    np.testing.assert_array_equal(back.metric, loss * 0.1)
    assert record["meta"] == {"mode": "batch_stats", "norm": "filter", "ignore_1d": True, "step": 5}
    assert record["coords_ranges"] == [[-1.0, 1.0, 3], [0.0, 2.0, 4]]
    assert record["shape"] == [3, 4] and record["loss_max"] == 10.0
    one = LossSurface((jnp.linspace(0, 1, 5, dtype=jnp.float32),), jnp.ones(5, jnp.float32))
    save_surface(tmp_path / "one", one)
    back1, rec1 = load_surface(tmp_path / "one")
    assert back1.metric is None and rec1["meta"]["mode"] is None and back1.loss.shape == (5,)


@pytest.fixture(scope="module")
def fabricated():
    a, b = np.linspace(-1, 1, 21), np.linspace(-1, 1, 17)
    A, B = np.meshgrid(a, b, indexing="ij")
    z = 1 + A ** 2 + 3 * B ** 2 + 0.3 * np.sin(5 * A)
    z[0, 0] = np.nan
    traj = np.stack([np.linspace(0.8, 0, 9), 0.5 * np.linspace(0.8, 0, 9) ** 2], 1)
    return a, b, z, traj


def test_plots_write_files(tmp_path, fabricated):
    from landscape import figures

    a, b, z, traj = fabricated
    x = np.linspace(-0.5, 1.5, 41)
    figs = {
        "curve": figures.plot_surface_1d(
            {"vanilla": (x, 1 + (x - 1) ** 2), "batchnorm": (x, 0.5 + x ** 2)}, log_y=True,
            marks=(0, 1), path=tmp_path / "curve", title="interpolation"),
        "contour": figures.plot_surface_contour(a, b, z, trajectory=traj,
                                                path=tmp_path / "contour"),
        "contour_log": figures.plot_surface_contour(a, b, z, log=True,
                                                    path=tmp_path / "contour_log"),
        "surf3d": figures.plot_surface_3d(a, b, z, log=True, path=tmp_path / "surf3d"),
    }
    for name, fig in figs.items():
        assert (tmp_path / f"{name}.pdf").stat().st_size > 0
        assert not is_blank(tmp_path / f"{name}.png"), name
    contour_ax = figs["contour"].axes[0]
    assert len(contour_ax.lines) == 3        # trajectory, start, end
    with pytest.raises(ValueError, match="trajectory"):
        figures.plot_surface_contour(a, b, z, trajectory=traj[:, :1])
    with pytest.raises(ValueError, match="values"):
        figures.plot_surface_contour(a, b, z.T)


@pytest.mark.parametrize("name", ["_surface", "_directions"])
def test_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(f"landscape.probes.{name}")
    with jax.enable_x64(False):   # the examples show float32 results
        failures, attempted = doctest.testmod(
            module, globs={**vars(module), "jnp": jnp, "jax": jax},
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert attempted > 0 and failures == 0


def test_curvature_directions_are_the_dense_eigenvectors():
    """On a quadratic ½θᵀAθ the directions are A's top eigenvectors (up to sign; float64), and
    the slice along v₁ is exactly ½λ₁a² + a·θᵀAv₁ + L(θ)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
        a_mat = q @ np.diag([9.0, 5.0, 2.0, 1.0, 0.5]) @ q.T
        loss = lambda p, b: 0.5 * p["w"] @ (jnp.asarray(a_mat) @ p["w"])  # noqa: E731
        params = {"w": jnp.asarray(rng.normal(size=5))}
        d1, d2 = probes.curvature_directions(loss, params, None, key=jax.random.key(0), num_iters=5)
        for d, col in ((d1, 0), (d2, 1)):
            assert abs(abs(float(d["w"] @ q[:, col])) - 1.0) < 1e-10
        alphas = jnp.linspace(-1.0, 1.0, 5)
        s = probes.loss_surface(loss, params, None, (d1,), (alphas,))
        w, v = np.asarray(params["w"]), np.asarray(d1["w"])
        exact = 0.5 * w @ a_mat @ w + np.asarray(alphas) * (w @ a_mat @ v) + 4.5 * np.asarray(alphas) ** 2
        np.testing.assert_allclose(np.asarray(s.loss), exact, rtol=1e-10)
        big = probes.curvature_directions(loss, params, None, 1, key=jax.random.key(0),
                                          num_iters=5, scale="params")[0]
        assert abs(float(jnp.linalg.norm(big["w"])) - float(jnp.linalg.norm(params["w"]))) < 1e-10
