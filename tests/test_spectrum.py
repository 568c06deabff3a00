"""The ``spectrum`` experiment (Ghorbani et al. 2019) end to end on a tiny float64 MLP.

Numeric check: at step 0 the recorded top-10 eigenvalues and the gradient's share in their span
‖P₁₀g‖²/‖g‖² equal those of the dense float64 Hessian (``jax.hessian``, ``numpy.linalg.eigh``) of
the step's minibatch loss. Lanczos runs n = dim(θ) iterations there (exact up to rounding); the
projection depends on the top-10 eigenspace, which is well defined while λ₁₀ > λ₁₁ (the test
checks the gap), so rtol 1e-6 is ≥ 10⁶× the rounding; a wrong gradient or non-orthonormal
vectors would be O(1e-1).
"""

from __future__ import annotations

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from dense import dense_at_init
from tolerance import assert_close

from landscape import bridge
from landscape.config import TrainConfig
from landscape.engine.configured import build_config_model
from landscape.experiments import EXPERIMENTS
from landscape.experiments.spectrum import gradient_fraction, spectral_quantile
from landscape.reproduce import run_experiment

WIDTH = 0.03  # MLP hidden (100, 100, 100) × 0.03 → (3, 3, 3)


def _options(n_params):
    return dict(model="mlp", dataset="synthetic", width=WIDTH, batch_size=16, steps=2,
                dtype="float64", eval_every=2, checkpoint_every=2, spectrum_every=0,
                density_at=[0], lanczos_iters=40, density_iters=8, density_runs=2)


def _n_params(norm):
    cfg = TrainConfig(model="mlp", dataset="synthetic", width=WIDTH, norm=norm)
    model = build_config_model(cfg, (8, 8, 1), 10)
    return ravel_pytree(bridge.split(model)[1])[0].size


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("spectrum")
    n = min(_n_params("none"), _n_params("batch"))
    return out, run_experiment(EXPERIMENTS["spectrum"](**_options(n)), out, progress=False)


@pytest.mark.slow
def test_files_and_summary(result):
    out, summary = result
    assert (out / "spectrum.png").exists() and (out / "summary.json").exists()
    assert set(summary["models"]) == {"batchnorm", "vanilla", "batchnorm_running_average"}
    for m in summary["models"].values():
        assert m["steps"] == [0] and m["density_steps"] == [0]
        n = len(m["steps"])
        for key in ("lambda_1", "lambda_k", "outlier_ratio", "top_fraction", "grad_norm",
                    "eigenvalues"):
            assert len(m[key]) == n, key
        assert len(m["eigenvalues"][0]) == 10
        assert len(m["bulk_edge_99"]) == len(m["density_nodes"]) == 1
        assert all(0.0 <= f <= 1.0 + 1e-9 for f in m["top_fraction"])
        assert m["bulk_edge_99"][0] <= m["lambda_1"][0] * (1 + 1e-6)
    assert all(isinstance(v, float) for v in summary["comparison"].values())
    assert isinstance(summary["note"], str)
    assert summary["config"]["batchnorm"]["norm"] == "batch"


@pytest.mark.slow
def test_top10_matches_dense_hessian(result):
    _, summary = result
    cfg = TrainConfig.from_dict(summary["config"]["vanilla"])
    _, hess, g, _ = dense_at_init(cfg)
    evals, evecs = np.linalg.eigh(0.5 * (hess + hess.T))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    assert evals[9] - evals[10] > 1e-6 * abs(evals[0])  # the top-10 eigenspace is well defined
    m = summary["models"]["vanilla"]
    assert_close(m["eigenvalues"][0], evals[:10], rtol=1e-7, atol=1e-10 * abs(evals[0]),
                 name="top-10 eigenvalues")
    expected = np.sum((evecs[:, :10].T @ g) ** 2) / (g @ g)
    assert_close(m["top_fraction"][0], expected, rtol=1e-6, name="‖P₁₀g‖²/‖g‖²")


def test_gradient_fraction_and_quantile():
    u = {"w": np.eye(4)[:2]}
    frac, per = gradient_fraction(u, {"w": np.array([1.0, 2.0, 2.0, 0.0])})
    assert_close(frac, 5 / 9, rtol=1e-6)
    assert_close(per, [1 / 9, 4 / 9], rtol=1e-6)
    assert spectral_quantile([[0.0, 1.0, 9.0]], [[0.5, 0.49, 0.01]], 0.99) == 1.0
    assert spectral_quantile([[0.0, 1.0, 9.0]], [[0.5, 0.49, 0.01]], 0.999) == 9.0
