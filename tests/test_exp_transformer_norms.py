"""``landscape reproduce transformer-norms``: Xiong et al. (2020) at initialisation and the
Pre-/Post-LN × normalization × warm-up training grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from landscape.config import ConfigError
from landscape.data import load_text
from landscape.experiments.transformer_norms import (last_ffn_gradient_norms, smoothness_pairs,
                                                     transformer_norms_experiment, xiong_slopes)

XIONG_TINY = dict(depths=(2, 8), seeds=2, batches=1, batch_size=8, d_model=32, heads=2)


@pytest.mark.slow  # eager 8-layer gradients; the fast tier keeps the slope fit on exact norms
def test_pre_ln_last_layer_gradient_falls_with_depth_and_post_ln_does_not(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 30, encoding="utf-8")
    data = load_text(path, context=16)
    norms = last_ffn_gradient_norms(data, positions=("pre", "post"), **XIONG_TINY)
    assert norms["pre"].shape == norms["post"].shape == (2, 2, 1)
    assert np.all(np.isfinite(norms["pre"])) and np.all(norms["pre"] > 0)
    slopes = xiong_slopes(XIONG_TINY["depths"], norms)
    pre, post = slopes["pre"]["slope"], slopes["post"]["slope"]
    # theory −½ (‖x_L‖ ∝ √L divides the last layer's gradient); measured −0.50 for both seeds
    assert pre < -0.35 and all(s < -0.3 for s in slopes["pre"]["slope_over_seeds"]["values"])
    # theory 0 (a bound independent of L): no fall; measured +0.31 at this width
    assert post > -0.1 and post > pre + 0.4, post


def test_slope_fit_and_pairs():
    d = [2, 4, 8, 16]
    exact = {"pre": np.array([[[3 / math.sqrt(L)] * 2] * 3 for L in d]),
             "post": np.array([[[2.0] * 2] * 3 for _ in d])}
    s = xiong_slopes(d, exact)
    assert s["pre"]["slope"] == pytest.approx(-0.5) and s["post"]["slope"] == pytest.approx(0.0)
    assert s["pre"]["slope_over_seeds"]["n"] == 3 and s["pre"]["theory_slope"] == -0.5
    labels = ["pre-layer/warmup", "post-layer/warmup", "pre-layer/no-warmup", "pre-dyt/warmup",
              "pre-none/warmup", "post-none/warmup"]  # the last two are one network: no pair
    assert smoothness_pairs(labels) == [("pre-layer/warmup", "post-layer/warmup"),
                                        ("pre-layer/warmup", "pre-layer/no-warmup"),
                                        ("pre-layer/warmup", "pre-dyt/warmup"),
                                        ("pre-layer/warmup", "pre-none/warmup"),
                                        ("post-layer/warmup", "post-none/warmup")]


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="--norm-position does not apply"):
        transformer_norms_experiment(model_options={"norm_position": "post"})
    with pytest.raises(ConfigError, match="dataset text"):
        transformer_norms_experiment(dataset="mnist5k")
    with pytest.raises(ConfigError, match="configs"):
        transformer_norms_experiment(configs=[("pre", "batch", True)])
    exp = transformer_norms_experiment()
    # quick: 7 position × norm with warm-up (post-none is pre-none), Post-LN LayerNorm without
    assert len(exp.runs) == 8 and "post-none/warmup/seed0" not in exp.runs
    cfg = exp.runs["post-layer/no-warmup/seed0"]
    assert cfg.warmup_steps == 0 and cfg.model_options["norm_position"] == "post"
    assert exp.runs["post-layer/warmup/seed0"].warmup_steps > 0


def test_norms_keep_the_presets_configurations_of_those_norms():
    """``--norms layer``: Pre-LN and Post-LN with warm-up, and Post-LN without it."""
    exp = transformer_norms_experiment(norms=["layer"])
    assert list(exp.runs) == ["pre-layer/warmup/seed0", "post-layer/warmup/seed0",
                              "post-layer/no-warmup/seed0"]
    assert exp.options["configs"] == [["pre", "layer", True], ["post", "layer", True],
                                      ["post", "layer", False]]
    with pytest.raises(ConfigError, match="norms: batch"):
        transformer_norms_experiment(norms=["batch"])
    with pytest.raises(ConfigError, match="not both"):
        transformer_norms_experiment(norms=["layer"], configs=[("pre", "layer", True)])
