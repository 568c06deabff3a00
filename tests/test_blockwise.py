"""Blockwise Hessian spectra and the JS block heterogeneity (Zhang et al. 2024).

Exact references: a float64 quadratic ½θᵀHθ whose diagonal blocks have known spectra (dense blocks
with chosen eigenvalues, one diagonal block) and nonzero couplings between blocks, so the probe must
measure H_bb and not H. Tolerances: the Lanczos runs are as long as the blocks (m = n_b), so Ritz
values equal eigenvalues to rounding (≈ 1e-13 relative in float64; 1e-8 asked); Rademacher starts
make the quadrature moments of a DIAGONAL block exact (vᵀDv = tr D for v ∈ {±1}ⁿ), 1e-12; the
smoothed density adds only the kernel variance σ² to the second moment, and its grid (σ ≈ 25 grid
steps, tails cut at 5σ) costs < 1e-7 relative, 1e-6 asked.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.spatial.distance import jensenshannon

from landscape import bridge, models, probes
from landscape.config import ConfigError
from landscape.experiments import EXPERIMENTS
from landscape.experiments.blockwise import blockwise_experiment, blockwise_record
from landscape.figures import (blockwise_densities, js_distance_heatmap, new_figure,
                               plot_blockwise)
from tolerance import assert_close

SHAPES = {"a": (6,), "b": (3, 4), "c": (5,)}
EIG_A = np.array([0.5, 0.9, 1.3, 1.7, 2.4, 3.1])
EIG_B = np.linspace(0.05, 0.45, 12)
DIAG_C = np.array([2.0, 3.5, 4.25, 5.0, 6.0])


def _rotation(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


def _hessian():
    """H (23×23): blocks a, b dense with eigenvalues EIG_A, EIG_B; c diagonal; random couplings."""
    a = _rotation(6, 1) @ np.diag(EIG_A) @ _rotation(6, 1).T
    b = _rotation(12, 2) @ np.diag(EIG_B) @ _rotation(12, 2).T
    h = 0.1 * np.random.default_rng(3).standard_normal((23, 23))
    h = h + h.T
    for lo, block in ((0, a), (6, b), (18, np.diag(DIAG_C))):
        h[lo:lo + len(block), lo:lo + len(block)] = block
    return h


def _problem():
    """(loss_fn, params, blocks, H) in float64 (call under x64)."""
    params = {k: jnp.ones(s, jnp.float64) for k, s in SHAPES.items()}
    _, unravel = ravel_pytree(params)
    h = jnp.asarray(_hessian())

    def loss_fn(p, batch):
        flat = ravel_pytree(p)[0]
        return 0.5 * flat @ (batch @ flat)

    blocks = {k: probes.param_mask(params, lambda path, k=k: path == k) for k in SHAPES}
    return loss_fn, params, blocks, h


@pytest.fixture
def float64():
    """x64 for one test (the conftest's ``x64`` would hold it for the rest of the module)."""
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=1)
def _quadratic():
    with jax.enable_x64(True):
        loss_fn, params, blocks, h = _problem()
        spectra = probes.blockwise_spectra(loss_fn, params, h, blocks, key=jax.random.key(0),
                                           num_iters=12, num_runs=3, top_k=3, grid_size=20_000)
        return loss_fn, params, blocks, h, spectra


@pytest.fixture
def quadratic(float64):
    return _quadratic()


def test_top_eigenvalues_are_the_dense_blocks(quadratic):
    _, _, _, _, s = quadratic
    assert s.names == ("a", "b", "c") and s.sizes == (6, 12, 5)
    assert s.grid.dtype == jnp.float64 and s.densities.shape == (3, 20_000)
    for i, eig in enumerate((EIG_A, EIG_B, DIAG_C)):
        assert_close(s.top_eigenvalues[i], np.sort(eig)[::-1][:3], 1e-8, name=s.names[i])
    # the block's whole spectrum is found: m_b = n_b nodes per run, padded for the smaller blocks
    assert_close(np.sort(s.nodes[0, 0, :6]), EIG_A, 1e-8, name="all nodes of a")
    assert_close(s.weights[0, :, 6:], np.zeros((3, 6)), 0.0, name="padding weights")


def test_top_eigenvalues_equal_hessian_eigs_runs(quadratic):
    """With m < n_b each run's top Ritz value is hessian_eigs' with the same key; the best is
    kept."""
    loss_fn, params, blocks, h, _ = quadratic
    key = jax.random.key(7)
    s = probes.blockwise_spectra(loss_fn, params, h, blocks, key=key, num_iters=3, num_runs=2)
    for b, mask in enumerate(blocks.values()):
        runs = [probes.hessian_eigs(loss_fn, params, h, 1, mask=mask, num_iters=3,
                                    key=jax.random.fold_in(jax.random.fold_in(key, b), r))
                for r in range(2)]
        assert_close(s.top_eigenvalues[b, 0], max(float(r.eigenvalues[0]) for r in runs),
                     1e-12, name=f"block {b}")


def test_moments_of_a_diagonal_block_are_exact(quadratic):
    _, _, _, _, s = quadratic
    c = 2  # block c = diag(DIAG_C): Rademacher quadratic forms are exact
    nodes, weights = np.asarray(s.nodes[c]), np.asarray(s.weights[c])
    for k in (1, 2, 3):
        assert_close(np.mean(np.sum(weights * nodes**k, axis=1)), np.mean(DIAG_C**k), 1e-12,
                     name=f"quadrature moment {k}")
    grid, phi = np.asarray(s.grid), np.asarray(s.densities[c])
    assert_close(np.trapezoid(phi, grid), 1.0, 1e-12, name="mass")
    assert_close(np.trapezoid(grid * phi, grid), np.trace(np.diag(DIAG_C)) / 5, 1e-6, name="mean")
    assert_close(np.trapezoid(grid**2 * phi, grid) - float(s.variance), np.mean(DIAG_C**2), 1e-6,
                 name="second moment")


def test_first_moments_of_dense_blocks_match_trace_over_size(quadratic):
    """Dense blocks: the quadrature mean is vᵀAv/n, unbiased for tr A / n; 64 runs, within 4
    standard errors sqrt(2 Σ_{i≠j} A_ij² / R) / n (the Rademacher variance of vᵀAv)."""
    loss_fn, params, blocks, h, _ = quadratic
    s = probes.blockwise_spectra(loss_fn, params, h, blocks, key=jax.random.key(1),
                                 num_iters=12, num_runs=64)
    h = np.asarray(h)
    for b, (lo, n) in enumerate(((0, 6), (6, 12))):
        block = h[lo:lo + n, lo:lo + n]
        mean = np.mean(np.sum(np.asarray(s.weights[b] * s.nodes[b]), axis=1))
        off = block - np.diag(np.diag(block))
        stderr = math.sqrt(2 * np.sum(off**2) / 64) / n
        assert abs(mean - np.trace(block) / n) < 4 * stderr, (b, mean, np.trace(block) / n, stderr)


def test_js_distance_properties(quadratic):
    _, _, _, _, s = quadratic
    js = probes.js_distance_matrix(s)
    d = np.asarray(js.distances)
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0.0)
    assert np.all((d >= 0) & (d <= 1))
    assert_close(js.heterogeneity, np.mean(d[np.triu_indices(3, 1)]), 1e-15, name="mean of pairs")
    assert np.all((np.asarray(js.self_distances) >= 0) & (np.asarray(js.self_distances) <= 1))
    p = s.densities[0]
    assert float(probes.js_distance(s.grid, p, p)) == 0.0
    # no two eigenvalues of different blocks within 6σ (σ ≈ 0.008): disjoint spiky densities
    assert np.all(d[np.triu_indices(3, 1)] > 0.999)


def test_js_distance_is_base_2_and_bounded(float64):
    t = np.linspace(-10.0, 10.0, 4001)
    p = np.exp(-0.5 * (t + 1) ** 2)
    q = np.exp(-0.5 * (t - 1.5) ** 2 / 0.5)
    # densities vanishing at the ends: trapezoid = sums, so scipy's discrete JS (base 2) agrees
    assert_close(probes.js_distance(t, p, q), jensenshannon(p, q, base=2), 1e-9, name="vs scipy")
    far = np.exp(-0.5 * (t - 8) ** 2 / 0.01)
    assert_close(probes.js_distance(t, np.exp(-0.5 * (t + 8) ** 2 / 0.01), far), 1.0, 1e-12,
                 name="disjoint")
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = float(probes.js_distance(t, rng.random(4001), rng.random(4001) ** 8))
        assert 0.0 <= d <= 1.0


def test_well_separated_blocks_are_at_distance_one():
    def loss_fn(p, batch):
        return 0.5 * (jnp.sum(batch["a"] * p["a"] ** 2) + jnp.sum(batch["b"] * p["b"] ** 2))

    params = {"a": jnp.ones(8), "b": jnp.ones(8)}
    batch = {"a": jnp.linspace(1.0, 2.0, 8), "b": jnp.linspace(100.0, 101.0, 8)}
    blocks = probes.named_blocks(params, lambda path: path)
    s = probes.blockwise_spectra(loss_fn, params, batch, blocks, key=jax.random.key(0),
                                 num_iters=8, num_runs=2)
    js = probes.js_distance_matrix(s)
    assert_close(js.distances[0, 1], 1.0, 1e-6, name="separated")
    assert_close(js.heterogeneity, 1.0, 1e-6, name="heterogeneity")
    one = probes.blockwise_spectra(loss_fn, params, batch, blocks, key=jax.random.key(0),
                                   num_iters=8, num_runs=1)
    assert np.all(np.isnan(probes.js_distance_matrix(one).self_distances))


def test_js_matrix_compiles_once_per_shape(quadratic):
    from landscape.probes._blockwise import _js_matrix

    _, _, _, _, s = quadratic
    probes.js_distance_matrix(s)
    before = _js_matrix._cache_size()
    probes.js_distance_matrix(s._replace(densities=s.densities[::-1] + 0.0))
    assert _js_matrix._cache_size() == before


# ----------------------------------------------------------------------------------------------
# named blocks


def _params(model):
    return bridge.split(model)[1]


def _coverage(params, blocks):
    """Per leaf, the number of blocks holding it."""
    return np.sum([jax.tree.leaves(m) for m in blocks.values()], axis=0)


def test_named_blocks_transformer():
    params = _params(models.build_model("transformer", norm="layer", input_shape=(16,),
                                        num_classes=20, layers=2, d_model=32, heads=4))
    blocks = probes.named_blocks(params, "transformer")
    layer = ["qk", "vo", "mlp", "norm"]
    assert list(blocks) == (["embedding"] + [f"layer0/{k}" for k in layer]
                            + [f"layer1/{k}" for k in layer] + ["final_norm", "head"])
    assert np.all(_coverage(params, blocks) == 1)
    paths = probes.param_paths(params)
    chosen = {n: [p for p, m in zip(paths, jax.tree.leaves(b)) if m] for n, b in blocks.items()}
    assert chosen["layer1/qk"] == ["blocks/1/attn/bk", "blocks/1/attn/bq", "blocks/1/attn/wk",
                                   "blocks/1/attn/wq"]
    assert chosen["layer0/vo"] == ["blocks/0/attn/bo", "blocks/0/attn/bv", "blocks/0/attn/wo",
                                   "blocks/0/attn/wv"]
    assert chosen["embedding"] == ["embed", "pos"]
    # QK-norm, DyT (a scalar α per norm), tied embeddings: still every leaf exactly once
    params = _params(models.build_model("transformer", norm="dyt", input_shape=(8,),
                                        num_classes=11, layers=1, d_model=16, heads=2,
                                        qk_norm=True, tie_embeddings=True))
    blocks = probes.named_blocks(params, "transformer")
    assert list(blocks) == ["embedding", "layer0/qk", "layer0/vo", "layer0/mlp", "layer0/norm",
                            "final_norm"]
    assert np.all(_coverage(params, blocks) == 1)


def test_named_blocks_per_layer_and_rules():
    params = _params(models.build_model("vgg5", norm="none", width=0.25, input_shape=(16, 16, 3)))
    blocks = probes.named_blocks(params, "per_layer")
    assert list(blocks) == ["layer0", "layer1", "layer2", "layer3", "head"]
    assert np.all(_coverage(params, blocks) == 1)
    with pytest.raises(ValueError, match="blocks/0/proj/bias"):
        probes.named_blocks(params, "transformer")
    with pytest.raises(ValueError, match="rule must be"):
        probes.named_blocks(params, "per_leaf")
    # a callable; 1-parameter blocks merge into "small", an empty leaf is in no block
    toy = {"w": jnp.ones((2, 3)), "s": jnp.ones(()), "t": jnp.ones((1,)), "e": jnp.ones((0,))}
    blocks = probes.named_blocks(toy, lambda path: path)
    assert {k: jax.tree.leaves(m) for k, m in blocks.items()} == {
        "small": [False, True, True, False], "w": [False, False, False, True]}
    assert list(probes.named_blocks(toy, lambda p: p, min_size=3)) == ["w"]  # small (2) dropped
    assert list(probes.named_blocks(toy, lambda p: None if p == "w" else "rest")) == ["rest"]


def test_blockwise_spectra_errors(quadratic):
    loss_fn, params, blocks, h, _ = quadratic
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="non-empty"):
            probes.blockwise_spectra(loss_fn, params, h, {}, key=jax.random.key(0))
        with pytest.raises(ValueError, match="top_k"):
            probes.blockwise_spectra(loss_fn, params, h, blocks, key=jax.random.key(0),
                                     num_iters=2, top_k=3)
        empty = {"none": probes.param_mask(params, lambda p: False)}
        with pytest.raises(ValueError, match="selects no parameter"):
            probes.blockwise_spectra(loss_fn, params, h, empty, key=jax.random.key(0))
        with pytest.raises(ValueError, match="structure of params"):
            probes.blockwise_spectra(loss_fn, params, h, {"x": {"a": True}}, key=jax.random.key(0))


def test_plot_blockwise_draws_on_given_axes(quadratic):
    _, _, _, _, s = quadratic
    record = blockwise_record(s, probes.js_distance_matrix(s))
    axes = new_figure(8.0, 3.0).subplots(1, 2)
    assert blockwise_densities(record, title="quadratic", ax=axes[0]) is axes[0]
    assert js_distance_heatmap(record, title="quadratic", ax=axes[1]) is axes[1]
    assert len(axes[0].get_lines()) == 3
    cells = [t.get_text() for t in axes[1].texts]
    assert len(cells) == 9 and cells[0] == "0.00"
    dens_ax = blockwise_densities(record)  # a figure of its own
    assert dens_ax.figure is not axes[0].figure
    fig = plot_blockwise({"quadratic": record, "again": record})  # one row per network
    assert len(fig.axes) == 2 * 2 + 2  # two panels per row and each heatmap's colorbar


# ----------------------------------------------------------------------------------------------
# the experiment

TINY = dict(layers=1, d_model=8, heads=2, context=4, vocab=5, sequences=2, width=0.125,
            image_size=8, images=4, num_iters=3, num_runs=2, top_k=2, grid_size=200)


def test_experiment_trains_nothing_and_its_options_rebuild_it():
    """The end-to-end run is the README command's (tests/test_readme_commands.py)."""
    exp = EXPERIMENTS["blockwise"]("quick", **TINY)
    assert exp.runs == {} and blockwise_experiment(**exp.options).manifest() == exp.manifest()


def test_experiment_rejects_training_flags():
    with pytest.raises(ConfigError, match="steps is not accepted"):
        blockwise_experiment(steps=10)
    with pytest.raises(ConfigError, match="dataset"):
        blockwise_experiment(dataset="cifar10")
    with pytest.raises(ConfigError, match="heads=3"):
        blockwise_experiment(heads=3)
    with pytest.raises(ConfigError, match="cnn="):
        blockwise_experiment(model="transformer")
