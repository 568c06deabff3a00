"""Tests for landscape.plotting: every figure renders non-blank PNG/PDF files from small generated
data, survives NaN/diverged runs, and the Fig. 4 bands cover the data they show."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from images import is_blank
from landscape import plotting
from landscape.plotting import (
    label_colors,
    plot_activation_histograms,
    plot_activation_percentiles,
    plot_compare,
    plot_fig4,
    plot_ics,
    plot_training,
    save_figure,
    summary_from_probe_rows,
)
from landscape.records import RecordWriter, read_records


def fig4_summary(seed: int, scale: float, n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n) * 10
    lo = scale * np.exp(-steps / 200) + 0.05
    hi = lo * np.exp(rng.uniform(0.1, 1.0, n))
    gmin = 0.1 * scale * np.exp(rng.normal(0, 0.2, n))
    gmax = gmin * np.exp(rng.uniform(0.2, 2.0, n))
    return {"steps": steps, "loss_min": lo, "loss_max": hi, "grad_change_min": gmin,
            "grad_change_max": gmax, "effective_beta": scale * 5 * np.exp(rng.normal(0, .3, n)),
            "grad_norm": np.ones(n)}


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    """Small PNGs keep the tests fast; blankness does not depend on resolution."""
    monkeypatch.setattr(plotting, "DEFAULT_DPI", 50)


def assert_written(base, pdf: bool = True) -> None:
    """``base.png`` exists and is not blank; with ``pdf``, ``base.pdf`` is a real, non-empty PDF."""
    png = base.with_name(base.name + ".png")
    assert png.exists() and not is_blank(png)
    if pdf:
        out = base.with_name(base.name + ".pdf")
        assert out.read_bytes()[:5] == b"%PDF-" and out.stat().st_size > 1000


def fill_collections(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ------------------------------------------------------------------------------------------------
# helpers


def test_save_figure_appends_extensions_and_keeps_dots(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    written = save_figure(fig, tmp_path / "sub" / "fig_lr0.1")
    assert [p.name for p in written] == ["fig_lr0.1.png", "fig_lr0.1.pdf"]
    assert all(p.exists() for p in written)
    assert save_figure(fig, tmp_path / "only", formats=(".png",))[0].suffix == ".png"


def test_is_blank(tmp_path):
    empty = Figure()
    save_figure(empty, tmp_path / "empty", ("png",))
    assert is_blank(tmp_path / "empty.png")
    drawn = Figure()
    drawn.add_subplot().plot([0, 1], [0, 1])
    save_figure(drawn, tmp_path / "drawn", ("png",))
    assert not is_blank(tmp_path / "drawn.png")


def test_label_colors_follow_the_paper():
    colors = label_colors(["vanilla", "batchnorm", "layer", "none", "BN lr=0.5", "noisy_batch"])
    reds, blues = plotting._REDS, plotting._BLUES
    assert colors["vanilla"] == reds[0] and colors["none"] == reds[1]
    assert colors["batchnorm"] == blues[0] and colors["BN lr=0.5"] == blues[1]
    assert colors["layer"] not in reds + blues and colors["noisy_batch"] not in reds + blues
    assert colors["layer"] != colors["noisy_batch"]
    assert label_colors(["batch", "none"]) == {"batch": blues[0], "none": reds[0]}


def test_module_does_not_import_pyplot_or_jax():
    code = ("import sys, landscape.plotting as p; "
            "print('matplotlib.pyplot' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------------
# Figure 4


def test_fig4_writes_files_with_three_panels_and_log_scales(tmp_path):
    fig = plot_fig4({"vanilla": fig4_summary(0, 2.0), "batchnorm": fig4_summary(1, 1.0)},
                    title="fake", path=tmp_path / "fig4")
    assert_written(tmp_path / "fig4")
    assert len(fig.axes) == 3
    a, b, c = fig.axes
    assert a.get_yscale() == "log" and b.get_yscale() == "log" and c.get_yscale() == "log"
    assert all(ax.get_xlabel() == "training step" for ax in fig.axes)
    assert "nabla" in b.get_ylabel() and "eta g" in c.get_ylabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["vanilla", "batchnorm"]


def test_fig4_band_spans_min_to_max(tmp_path):
    models = {"vanilla": fig4_summary(0, 2.0), "batchnorm": fig4_summary(1, 1.0)}
    fig = plot_fig4(models)
    for ax, (lo_key, hi_key) in zip(fig.axes[:2], [("loss_min", "loss_max"),
                                                   ("grad_change_min", "grad_change_max")]):
        bands = {c.get_label(): c for c in fill_collections(ax)}
        assert set(bands) == set(models)
        for label, summary in models.items():
            verts = np.concatenate([p.vertices for p in bands[label].get_paths()])
            # x covers every step; y reaches both edges of the data's range
            assert verts[:, 0].min() == pytest.approx(summary["steps"].min())
            assert verts[:, 0].max() == pytest.approx(summary["steps"].max())
            assert verts[:, 1].min() == pytest.approx(summary[lo_key].min())
            assert verts[:, 1].max() == pytest.approx(summary[hi_key].max())
            # at each step the band's vertical extent is exactly [min, max]
            for x, lo, hi in zip(summary["steps"], summary[lo_key], summary[hi_key]):
                ys = verts[np.isclose(verts[:, 0], x), 1]
                assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)


def test_fig4_nan_and_diverged_do_not_crash(tmp_path):
    van = fig4_summary(0, 2.0)
    for key in ("loss_min", "loss_max", "grad_change_min", "grad_change_max", "effective_beta"):
        van[key] = van[key].copy()
        van[key][20:] = np.nan
        van[key][5] = np.inf
    van["loss_min"][3] = np.nan          # a hole in the middle
    dead = {k: np.full(30, np.nan) for k in van}
    dead["steps"] = np.arange(30)
    fig = plot_fig4({"vanilla": van, "batchnorm": fig4_summary(1, 1.0), "dead": dead},
                    diverged={"vanilla": 200, "batchnorm": None}, path=tmp_path / "div")
    assert_written(tmp_path / "div")
    for ax in fig.axes:
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert any(np.allclose(ln.get_xdata(), 200) for ln in dashed)
        assert any("diverged" in t.get_text() for t in ax.texts)
    # vanilla's band is drawn only where it is finite: steps 0-20, 40, 60-190
    bands = [c for c in fill_collections(fig.axes[0]) if c.get_label() == "vanilla"]
    assert bands
    alone = plot_fig4({"vanilla": van})
    verts = np.concatenate([p.vertices for c in fill_collections(alone.axes[0])
                            for p in c.get_paths()])
    assert np.isfinite(verts).all() and verts[:, 0].max() == 190   # last finite step
    assert not np.any(np.isclose(verts[:, 0], 30))   # the NaN at step 30 is a gap


def test_fig4_all_nan_and_nonpositive_beta(tmp_path):
    dead = {k: [None] * 4 for k in plotting.FIG4_FIELDS}
    dead["steps"] = [0, 1, 2, 3]
    fig = plot_fig4({"dead": dead}, path=tmp_path / "dead",
                    formats=("png",))
    assert_written(tmp_path / "dead", pdf=False)               # axes, labels and "no finite data" notes
    assert any("no finite data" in t.get_text() for t in fig.axes[0].texts)
    s = fig4_summary(0, 1.0, n=4)
    s["effective_beta"] = np.array([0.0, -1.0, 2.0, np.nan])
    fig = plot_fig4({"batchnorm": s})
    assert fig.axes[2].get_yscale() == "linear"


def test_fig4_single_step_and_bad_lengths(tmp_path):
    fig = plot_fig4({"batchnorm": fig4_summary(0, 1.0, n=1)}, path=tmp_path / "one",
                    formats=("png",))
    assert_written(tmp_path / "one", pdf=False)
    assert len(fig.axes) == 3
    bad = fig4_summary(0, 1.0, n=5)
    bad["loss_max"] = bad["loss_max"][:4]
    with pytest.raises(ValueError, match="equal lengths"):
        plot_fig4({"batchnorm": bad})


# ------------------------------------------------------------------------------------------------
# summary_from_probe_rows


def test_summary_from_probe_rows_sorts_and_maps_fields():
    rows = [
        {"step": 20, "tag": "batch", "loss0": 1.0, "grad_norm": 2.0, "effective_beta": 3.0,
         "loss_min": 0.5, "loss_max": 1.5, "grad_change_min": 0.1, "grad_change_max": 0.9,
         "loss": [0.5, 1.5], "grad_change": [0.1, 0.9]},
        {"step": 0, "tag": "batch", "loss0": 2.0, "grad_norm": 4.0, "effective_beta": float("nan"),
         "loss": [2.5, 2.0, 3.0], "grad_change": [0.2, float("nan"), 0.3]},   # no summaries
        {"step": 10, "tag": "none", "loss0": 9.0, "grad_norm": 9.0, "effective_beta": 9.0,
         "loss_min": 9.0, "loss_max": 9.0, "grad_change_min": 9.0, "grad_change_max": 9.0},
        {"step": 20, "tag": "batch", "loss0": 1.0, "grad_norm": 2.5, "effective_beta": 3.5,
         "loss_min": 0.6, "loss_max": 1.6, "grad_change_min": 0.2, "grad_change_max": 0.8},
    ]
    s = summary_from_probe_rows(rows, tag="batch")
    assert s["steps"].tolist() == [0, 20] and s["steps"].dtype == np.int64
    np.testing.assert_array_equal(s["loss_min"], [2.0, 0.6])       # step 20: last row wins
    np.testing.assert_array_equal(s["loss_max"], [3.0, 1.6])
    np.testing.assert_array_equal(s["grad_change_min"], [np.nan, 0.2])  # NaN propagates
    np.testing.assert_array_equal(s["grad_change_max"], [np.nan, 0.8])
    np.testing.assert_array_equal(s["effective_beta"], [np.nan, 3.5])
    np.testing.assert_array_equal(s["grad_norm"], [4.0, 2.5])
    np.testing.assert_array_equal(s["loss0"], [2.0, 1.0])
    assert set(plotting.FIG4_FIELDS) <= set(s)
    everything = summary_from_probe_rows(rows)
    assert everything["steps"].tolist() == [0, 10, 20]
    empty = summary_from_probe_rows([])
    assert all(v.shape == (0,) for v in empty.values())


def test_probe_records_round_trip_to_a_figure(tmp_path):
    path = tmp_path / "probes.jsonl"
    with RecordWriter(path, fsync=False) as w:
        for step in (4, 0, 2):
            diverged = step == 4
            w.write({"step": step, "tag": "none", "step_sizes": [0.05, 0.4], "loss0": 1.0,
                     "grad_norm": 1.0, "loss": [float("nan") if diverged else 1.0, 2.0],
                     "grad_change": [0.1, float("inf") if diverged else 0.2],
                     "effective_beta": float("nan") if diverged else 4.0,
                     "loss_min": float("nan") if diverged else 1.0,
                     "loss_max": float("nan") if diverged else 2.0,
                     "grad_change_min": 0.1, "grad_change_max": float("nan") if diverged else 0.2})
    s = summary_from_probe_rows(read_records(path))     # nulls come back as NaN
    assert s["steps"].tolist() == [0, 2, 4]
    assert np.isnan(s["loss_max"][2]) and np.isnan(s["effective_beta"][2])
    plot_fig4({"vanilla": s}, diverged={"vanilla": 4}, path=tmp_path / "rt")
    assert_written(tmp_path / "rt")


# ------------------------------------------------------------------------------------------------
# the other figures


def test_plot_training(tmp_path):
    steps = np.arange(50)
    loss = 2.0 * np.exp(-steps / 20)
    loss_nan = loss.copy()
    loss_nan[30:] = np.nan
    curves = {
        "vanilla": {"steps": steps, "train_loss": loss_nan, "train_accuracy": 1 - loss_nan / 2,
                    "eval_steps": [0, 25], "test_accuracy": [0.1, np.nan]},
        "batchnorm": {"steps": steps, "train_loss": loss / 2, "train_accuracy": 1 - loss / 4,
                      "eval_steps": [0, 25, 49], "test_accuracy": [0.1, 0.6, 0.8]},
        "only_test": {"eval_steps": [10], "test_accuracy": [0.5]},
    }
    fig = plot_training(curves, smooth=5, diverged={"vanilla": 30}, path=tmp_path / "train")
    assert_written(tmp_path / "train")
    assert len(fig.axes) == 3 and fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError):
        plot_training({"x": {"steps": [0, 1], "train_loss": [1.0]}})


def test_moving_average_skips_nan():
    y = np.array([1.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(plotting._moving_average(y, 2), [1.0, 2.0, np.nan, 5.0])
    np.testing.assert_array_equal(plotting._moving_average(y, 0), y)


def test_plot_activation_percentiles(tmp_path):
    steps = np.arange(0, 100, 5)
    series = {"without BN": {"steps": steps, "p15": -1 - steps / 50, "p50": steps / 100,
                             "p85": 1 + steps / 30},
              "with BN": {"steps": steps, "p15": np.full(20, -1.0), "p50": np.zeros(20),
                          "p85": np.r_[np.ones(19), np.nan]}}
    fig = plot_activation_percentiles(series, path=tmp_path / "pct")
    assert_written(tmp_path / "pct")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])


@pytest.mark.parametrize("style", ["ridge", "overlay"])
def test_plot_activation_histograms(tmp_path, style):
    rng = np.random.default_rng(0)
    with_nan = rng.normal(size=300)
    with_nan[:10] = np.nan
    series = {"vanilla": {"steps": [0, 100, 200],
                          "values": [rng.normal(size=300), rng.normal(1, 2, 300), with_nan]},
              "batchnorm": {"steps": [0, 200], "values": [rng.normal(size=300), np.full(5, 3.0)]},
              "empty": {"steps": [0], "values": [np.array([np.nan])]}}
    fig = plot_activation_histograms(series, style=style, path=tmp_path / f"hist_{style}")
    assert_written(tmp_path / f"hist_{style}")
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="style"):
        plot_activation_histograms(series, style="violin")


def test_plot_ics(tmp_path):
    steps = np.arange(10)
    series = {
        "vanilla": {"layer #5": {"steps": steps, "l2": np.linspace(0.1, 1, 10),
                                 "cosine": np.linspace(1, 0.5, 10)},
                    "layer #10": {"steps": steps, "l2": np.r_[np.ones(5), np.full(5, np.nan)],
                                  "cosine": np.r_[np.ones(5), np.full(5, np.nan)]}},
        "batchnorm": {"layer #5": {"steps": steps, "l2": np.full(10, 2.0),
                                   "cosine": np.full(10, 0.2)}},
    }
    fig = plot_ics(series, path=tmp_path / "ics")
    assert_written(tmp_path / "ics")
    assert len(fig.axes) == 4
    assert [fig.axes[i].get_title() for i in (0, 1)] == ["layer #5", "layer #10"]
    assert fig.axes[0].get_yscale() == "log" and fig.axes[2].get_yscale() == "linear"


def test_plot_compare(tmp_path):
    steps = np.arange(20)
    per_norm = {"batch": {"steps": steps, "mean": np.exp(-steps / 3), "lo": np.exp(-steps / 3) / 2,
                          "hi": np.exp(-steps / 3) * 2, "n": 3},
                "none": {"steps": steps, "mean": np.r_[np.ones(10), np.full(10, np.nan)],
                         "lo": np.r_[np.ones(10) / 2, np.full(10, np.nan)],
                         "hi": np.r_[np.ones(10) * 2, np.full(10, np.nan)]}}
    fig = plot_compare(per_norm, "loss_max", diverged={"none": 10}, path=tmp_path / "cmp")
    assert_written(tmp_path / "cmp")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss_max"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["batch (n=3)", "none"]
    fig = plot_compare({"batch": {"steps": [0, 1], "mean": [0.5, -0.5], "lo": [0, -1],
                                  "hi": [1, 0]}}, "cosine")
    assert fig.axes[0].get_yscale() == "linear"
