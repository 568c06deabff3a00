"""Each normalization's defining property, on generated data.

Tolerances: float32 statistics over a few hundred values agree to ~1e-6 relative; we use 1e-4 where
ε = 1e-5 enters a variance of order 1 (ε shifts a unit variance by 1e-5) and 1e-5 elsewhere.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from landscape import normalization as N
from landscape.models import Projection


def _data(shape, seed=0, loc=3.0, scale=2.5):
    """NumPy data (expectations below broadcast in NumPy; the suite makes JAX rank promotion raise)."""
    return np.asarray(loc + scale * jax.random.normal(jax.random.key(seed), shape))


def test_registry_names_and_unknown_name():
    names = N.normalization_names()
    for name in ("none", "batch", "noisy_batch", "lp1", "lp2", "lpinf", "layer", "group", "rms", "weight"):
        assert name in names
    with pytest.raises(N.NormalizationError, match="expected one of .*batch"):
        N.make_normalization("batchy", 4)
    with pytest.raises(N.NormalizationError, match="bad option"):
        N.make_normalization("batch", 4, not_an_option=1)
    assert N.uses_batch_statistics("noisy_batch") and not N.uses_batch_statistics("layer")
    assert N.uses_weight_norm("weight") and not N.uses_weight_norm("batch")


def test_batchnorm_train_standardizes_over_batch_and_space():
    y = _data((8, 5, 5, 3))
    bn = N.make_normalization("batch", 3)
    z = bn(y)
    # statistics over N, H, W together (a per-position normalisation would fail the 2nd check too)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    assert abs(float(z[:, 0, 0].mean())) > 1e-3 or abs(float(z[:, 0, 0].var() - 1)) > 1e-3


def test_batchnorm_running_average_update_and_eval_mode():
    y = _data((64, 3), seed=1)
    bn = N.BatchNorm(3, momentum=0.9)
    bn(y)  # train: updates EMA from (0, 1)
    np.testing.assert_allclose(bn.mean[...], 0.1 * y.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * y.var(0), rtol=1e-5)
    bn.mean[...] = jnp.array([1.0, 2.0, 3.0])
    bn.var[...] = jnp.array([4.0, 1.0, 0.25])
    bn.scale[...] = jnp.array([2.0, 1.0, 1.0])
    bn.bias[...] = jnp.array([0.5, 0.0, 0.0])
    before = (np.array(bn.mean[...]), np.array(bn.var[...]))
    z = bn(y, use_running_average=True)
    mean, var, scale, bias = (np.asarray(v[...]) for v in (bn.mean, bn.var, bn.scale, bn.bias))
    expect = (y - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(z, expect, rtol=1e-5)
    # eval mode never touches the running statistics
    np.testing.assert_array_equal(bn.mean[...], before[0])
    np.testing.assert_array_equal(bn.var[...], before[1])


@pytest.mark.parametrize("unbiased,ddof", [(False, 0), (True, 1)])
def test_batchnorm_running_variance_biased_or_unbiased(unbiased, ddof):
    """Default: the biased batch variance is stored; unbiased=True stores PyTorch's m/(m−1) form."""
    bn = N.BatchNorm(3, momentum=0.0, unbiased=unbiased)
    y = _data((4, 5, 5, 3))
    bn(y)
    expected = np.var(np.asarray(y).reshape(-1, 3), axis=0, ddof=ddof)  # m = 100 per feature
    np.testing.assert_allclose(np.asarray(bn.var[...]), expected, rtol=1e-5)


def test_model_eval_flips_mode():
    class Net(nnx.Module):
        def __init__(self):
            self.norm = N.BatchNorm(2)

    net = Net()
    assert net.norm.use_running_average is False
    net.eval()
    assert net.norm.use_running_average is True
    net.train()
    assert net.norm.use_running_average is False


def test_population_estimate_uses_unbiased_mean_of_variances():
    bn = N.BatchNorm(2, stats="population")
    batches = [_data((10, 2), seed=s) for s in range(3)]
    for b in batches:
        bn(b)
    m = 10
    mean = np.mean([np.asarray(b).mean(0) for b in batches], axis=0)
    var = m / (m - 1) * np.mean([np.asarray(b).var(0) for b in batches], axis=0)
    x = _data((4, 2), seed=9)
    z = bn(x, use_running_average=True)
    np.testing.assert_allclose(z, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5)
    bn.reset_population()
    assert float(bn.pop_count[...]) == 0.0


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_lp_norm_raw_scale_is_lp_average_of_uncentered_values(p):
    y = _data((32, 4), seed=2, loc=1.0)
    norm = N.make_normalization("lp", 4, p=p, epsilon=0.0)
    yhat = norm(y)
    a = np.abs(np.asarray(y))
    s = a.max(0) if math.isinf(p) else (a**p).mean(0) ** (1 / p)
    np.testing.assert_allclose(yhat, (np.asarray(y) - np.asarray(y).mean(0)) / s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(yhat).mean(0), 0.0, atol=1e-5)  # first moment fixed


def test_lp_inf_centered_makes_max_abs_one():
    y = _data((16, 3, 3, 5), seed=3)
    norm = N.make_normalization("lpinf", 5, scale_from="centered", epsilon=0.0)
    yhat = norm(y)  # γ = 1, β = 0: this is ŷ before the affine
    np.testing.assert_allclose(jnp.max(jnp.abs(yhat), axis=(0, 1, 2)), 1.0, rtol=1e-6)


def test_lp_rejects_bad_p():
    with pytest.raises(N.NormalizationError, match="p >= 1"):
        N.make_normalization("lp", 3, p=0.5)


def test_noisy_batchnorm_algorithm1():
    y = _data((256, 3), seed=4)
    norm = N.make_normalization("noisy_batch", 3)
    clean = N.make_normalization("batch", 3)(y)
    key = jax.random.key(0)
    z1, z2 = norm(y, rng=key), norm(y, rng=key)
    np.testing.assert_array_equal(z1, z2)  # the key fixes the noise
    assert not np.allclose(z1, norm(y, rng=jax.random.key(1)))
    noise_shift = np.asarray(z1 - clean)
    assert np.abs(noise_shift).max() > 0.1
    # a = s·â + m with s ≈ σ_j ∈ [1, 1.25] and m ∈ μ_j ± 0.1, μ_j ∈ [−0.5, 0.5]; fit per unit:
    for j in range(3):
        s_hat, m_hat = np.polyfit(np.asarray(clean[:, j]), np.asarray(z1[:, j]), 1)
        assert 1.0 - 0.05 < s_hat < 1.25 + 0.05
        assert -0.6 - 0.05 < m_hat < 0.6 + 0.05
    # eval mode: no noise
    expect = (y - np.asarray(norm.mean[...])) / np.sqrt(np.asarray(norm.var[...]) + norm.epsilon)
    np.testing.assert_allclose(norm(y, use_running_average=True), expect, rtol=1e-5)
    with pytest.raises(N.NormalizationError, match="rng"):
        norm(y)


def test_per_example_norms():
    y = _data((4, 3, 3, 6), seed=5)
    z = N.make_normalization("layer", 6)(y)
    np.testing.assert_allclose(z.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    z = N.make_normalization("rms", 6)(y)
    np.testing.assert_allclose(jnp.mean(z**2, axis=(1, 2, 3)), 1.0, rtol=1e-4)
    gn = N.make_normalization("group", 6, num_groups=3)
    z = np.asarray(gn(y)).reshape(4, 3, 3, 3, 2)
    np.testing.assert_allclose(z.mean(axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=(1, 2, 4)), 1.0, rtol=1e-4)
    with pytest.raises(N.NormalizationError, match="divide"):
        N.make_normalization("group", 6, num_groups=4)


def test_weight_norm_projection():
    rngs = nnx.Rngs(0)
    proj = Projection(5, 3, kernel_size=None, use_bias=False, weight_norm=True, rngs=rngs)
    x = _data((7, 5), seed=6)
    out0 = proj(x)
    w = proj.weight()
    np.testing.assert_allclose(jnp.linalg.norm(w, axis=0), proj.gain[...], rtol=1e-5)
    proj.kernel[...] = proj.kernel[...] * 3.0  # direction unchanged → function unchanged
    np.testing.assert_allclose(proj(x), out0, rtol=1e-5)
    proj.gain[...] = proj.gain[...] * 2.0
    np.testing.assert_allclose(proj(x), 2.0 * out0, rtol=1e-5)
