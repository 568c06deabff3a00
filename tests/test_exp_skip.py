"""``landscape reproduce skip`` (Li et al. 2018): ResNets with and without shortcuts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import bridge, probes
from landscape.config import ConfigError
from landscape.engine import build_config_model
from landscape.experiments.skip import convexity_map, skip_experiment

TINY = dict(dataset="synthetic", width=0.125, steps=2, batch_size=16, checkpoint_every=2,
            probe_every=1, num_step_sizes=2, eval_every=2)


def _flat(params):
    return {probes.path_str(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def test_noshort_and_short_share_every_non_shortcut_parameter_at_init():
    runs = skip_experiment(depths=(8,), **TINY).runs
    assert list(runs) == ["resnet8", "resnet8-noshort"]
    short, noshort = (runs[k].to_dict() for k in runs)
    assert {k for k in short if short[k] != noshort[k]} == {"model_options", "tag"}
    assert short["model_options"] == {"shortcut": True}
    assert noshort["model_options"] == {"shortcut": False}
    full, bare = (_flat(bridge.split(build_config_model(runs[k], (8, 8, 1), 10))[1]) for k in runs)
    extra = set(full) - set(bare)
    assert extra and all("shortcut" in k for k in extra) and set(bare) <= set(full)
    for k in bare:
        np.testing.assert_array_equal(full[k], bare[k])


def test_convexity_map_is_the_curvature_ratio_of_a_quadratic():
    a = jnp.array([[3.0, 1.0, 0.0, 0.0], [1.0, 2.0, 0.5, 0.0], [0.0, 0.5, -1.0, 0.3],
                   [0.0, 0.0, 0.3, 0.5]])
    exact = np.linalg.eigvalsh(np.asarray(a, np.float64))

    def loss_fn(theta, batch):  # H = batch everywhere; the map is constant
        return 0.5 * theta @ batch @ theta

    d = (jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 1.0, 0.0]))
    m = convexity_map(loss_fn, jnp.ones(4), a, d, (np.linspace(-1, 1, 3),) * 2,
                      key=jax.random.key(0), num_iters=4)
    assert m["ratio"].shape == (3, 3) and np.all(np.isfinite(m["ratio"])) and np.all(m["ratio"] >= 0)
    np.testing.assert_allclose(m["lambda_max"], exact[-1], rtol=1e-5)
    np.testing.assert_allclose(m["lambda_min"], exact[0], rtol=1e-5)
    np.testing.assert_allclose(m["ratio"], abs(exact[0] / exact[-1]), rtol=1e-5)
    # fewer Lanczos steps: the ends of one run's Ritz values are hessian_eigs' largest / smallest
    few = convexity_map(loss_fn, jnp.ones(4), a, d, ([0.5], [0.0]), key=jax.random.key(0),
                        num_iters=2)
    point = jnp.ones(4) + 0.5 * d[0]
    for which, field in (("largest", "lambda_max"), ("smallest", "lambda_min")):
        r = probes.hessian_eigs(loss_fn, point, a, 1, key=jax.random.key(0), num_iters=2,
                                which=which)
        np.testing.assert_allclose(few[field][0, 0], r.eigenvalues[0], rtol=1e-5)


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="--no-shortcut does not apply"):
        skip_experiment(model_options={"shortcut": False})
    with pytest.raises(ConfigError, match="resnetN"):
        skip_experiment(model="vgg5")
    assert list(skip_experiment(model="resnet14", **TINY).runs) == ["resnet14", "resnet14-noshort"]
