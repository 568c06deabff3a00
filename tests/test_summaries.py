"""Summaries and figures from fabricated records (no training): Figure 4 over seeds, tail means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from landscape.experiments.base import final_train_loss, mean_interval, tail_mean
from landscape.experiments.fig4 import fig4_finalize, fig4_seeds_finalize


def _run(betas, changes, losses=(1.0, 2.0), train=(3.0, 2.0, 1.0)):
    """A read_run-shaped dict with one probe row per β value (steps 0, 10, 20, …)."""
    probes = [{"step": 10 * i, "loss": list(losses), "grad_change": [c / 2, c],
               "effective_beta": b, "grad_norm": 1.0, "loss0": 1.5, "grad_change_floor": 1e-6,
               "num_beta_excluded": 0}
              for i, (b, c) in enumerate(zip(betas, changes))]
    return {"probes": probes, "train": [{"step": i, "loss": v} for i, v in enumerate(train)],
            "eval": [{"step": 3, "test_accuracy": 0.5}], "run": {"diverged_at_step": None},
            "config": {}}


def test_fig4_seeds_interval_comes_from_per_seed_fractions(tmp_path):
    # seed 0: BN below at 4/4 steps (β) — seed 1: 2/4 — seed 2: 3/4
    bn_betas = {0: [1, 1, 1, 1], 1: [1, 5, 1, 5], 2: [1, 1, 1, 5]}
    runs = {}
    for s, betas in bn_betas.items():
        runs[f"batchnorm/seed{s}"] = _run(betas, [1, 1, 1, 1])
        runs[f"vanilla/seed{s}"] = _run([2, 2, 2, 2], [2, 0.5, 2, 2])
    summary = fig4_seeds_finalize(tmp_path, runs, seeds=[0, 1, 2], title="fabricated")
    beta = summary["comparison_over_seeds"]["fraction_steps_bn_beta_below_vanilla"]
    per_seed = [1.0, 0.5, 0.75]
    assert beta["values"] == per_seed
    assert beta["mean"] == pytest.approx(0.75)
    half = 4.303 * np.std(per_seed, ddof=1) / math.sqrt(3)  # t_{0.975, 2} = 4.303
    assert beta["ci95"] == pytest.approx([0.75 - half, 0.75 + half])
    assert summary["comparison"]["fraction_steps_bn_beta_below_vanilla"] == pytest.approx(0.75)
    change = summary["comparison_over_seeds"]["fraction_steps_bn_grad_change_below_vanilla"]
    assert change["values"] == [0.75, 0.75, 0.75] and change["ci95"] == pytest.approx([0.75, 0.75])
    bn = summary["models"]["batchnorm"]
    assert bn["steps"] == [0, 10, 20, 30]
    assert bn["effective_beta"] == pytest.approx([1, 7 / 3, 1, 11 / 3])  # mean over seeds
    assert bn["effective_beta_hi"] == [1, 5, 1, 5] and bn["effective_beta_lo"] == [1, 1, 1, 1]
    for name in ("fig4.png", "fig4_seeds_effective_beta.png", "fig4_seeds_grad_change_max.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_fig4_summary_records_floor_and_fractions(tmp_path):
    runs = {"batchnorm": _run([1, 3], [1, 1]), "vanilla": _run([2, 2], [2, 2])}
    summary = fig4_finalize(tmp_path, runs, title="fabricated")
    assert summary["comparison"]["fraction_steps_bn_beta_below_vanilla"] == 0.5
    assert summary["models"]["batchnorm"]["grad_change_floor"] == [1e-6, 1e-6]
    assert summary["models"]["batchnorm"]["train_loss"] == 1.0  # the last 10 % (one row)


def test_tail_mean_is_the_one_final_rule():
    assert tail_mean(list(range(20))) == 18.5          # the last 2 of 20
    assert tail_mean([5.0]) == 5.0 and math.isnan(tail_mean([]))
    assert math.isnan(tail_mean([1.0] * 9 + [math.nan]))  # a diverged tail has no final value
    assert final_train_loss({"train": [{"loss": v} for v in (3.0, 2.0, 1.0)]}) == 1.0


def test_mean_interval_single_value_and_nan():
    assert mean_interval([0.4])["ci95"] == [0.4, 0.4]
    r = mean_interval([math.nan, 1.0, 3.0])
    assert r["n"] == 2 and r["mean"] == 2.0


def test_fig4_with_curvature_records_tracks_the_proxy(tmp_path):
    """λ_max / gᵀHg/‖g‖² rows land beside β in the summary; the ratios and rank correlation."""
    from landscape.experiments.fig4 import proxy_against_curvature

    run = _run([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])
    run["curvature"] = [{"step": 10 * i, "lambda_max": 2.0 * b, "gradient_curvature": b}
                        for i, b in enumerate([1.0, 2.0, 3.0, 4.0])]
    summary = fig4_finalize(tmp_path, {"batchnorm": run, "vanilla": _run([2] * 4, [2] * 4)})
    bn = summary["models"]["batchnorm"]
    assert bn["lambda_max"] == [2.0, 4.0, 6.0, 8.0]
    tracked = summary["proxy_against_true_beta"]["batchnorm"]
    assert tracked["median_beta_over_lambda_max"] == pytest.approx(0.5)
    assert tracked["median_beta_over_gradient_curvature"] == pytest.approx(1.0)
    assert tracked["rank_correlation_beta_lambda_max"] == pytest.approx(1.0)
    anti = proxy_against_curvature({"effective_beta": [1, 2, 3], "lambda_max": [3, 2, 1],
                                    "gradient_curvature": [1, 1, 1]})
    assert anti["rank_correlation_beta_lambda_max"] == pytest.approx(-1.0)
    assert "vanilla" not in summary["proxy_against_true_beta"]
