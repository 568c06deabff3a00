"""Tests for landscape.figures: every public figure renders from tiny generated records (one-point
series included), panels draw onto the Axes they are given, no axis relies on Matplotlib's offset
notation, NaN/diverged runs are survived, and the Fig. 4 bands cover the data they show."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from images import is_blank
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from landscape import figures
from landscape.figures import (
    label_colors,
    moving_average,
    new_figure,
    plot_activation_histograms,
    plot_activation_percentiles,
    plot_compare,
    plot_fig4,
    plot_ics,
    plot_training,
    readable_number,
    save_figure,
    summary_from_probe_rows,
)
from landscape.records import FIG4_FIELDS, RecordWriter, read_records

#: Values a checkpoint analysis of one step produced: a huge level, a band of width 2e-7.
HUGE = 214144.5897


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


def assert_written(base, pdf: bool = True) -> None:
    """``base.png`` exists and is not blank; with ``pdf``, ``base.pdf`` is a real, non-empty PDF."""
    png = base.with_name(base.name + ".png")
    assert png.exists() and not is_blank(png)
    if pdf:
        out = base.with_name(base.name + ".pdf")
        assert out.read_bytes()[:5] == b"%PDF-" and out.stat().st_size > 1000


def assert_no_offset(fig: Figure) -> None:
    """Draw ``fig``; then no axis (colorbars and 3-D z axes included) shows an offset or a
    ×10ⁿ corner label."""
    fig.canvas.draw()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)):
            if axis is not None:
                assert axis.get_major_formatter().get_offset() == "", (ax.get_title(), axis)


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


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
    reds, blues = ("#d62728", "#8c1c13"), ("#1f77b4", "#0b3c6b")
    assert colors["vanilla"] == reds[0] and colors["none"] == reds[1]
    assert colors["batchnorm"] == blues[0] and colors["BN lr=0.5"] == blues[1]
    assert colors["layer"] not in reds + blues and colors["noisy_batch"] not in reds + blues
    assert colors["layer"] != colors["noisy_batch"]
    assert label_colors(["batch", "none"]) == {"batch": blues[0], "none": reds[0]}


def test_package_does_not_import_pyplot_or_jax():
    code = ("import sys, landscape.figures as f; "
            "print('matplotlib.pyplot' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_moving_average_skips_nan():
    y = np.array([1.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(moving_average(y, 2), [1.0, 2.0, np.nan, 5.0])
    np.testing.assert_array_equal(moving_average(y, 0), y)
    np.testing.assert_allclose(moving_average([2.0, 4.0, 6.0], 3), [2.0, 3.0, 4.0])


def test_readable_number():
    assert readable_number(HUGE) == "214145"
    assert readable_number(2.1e-7) == "2.1e-7" and readable_number(0.25) == "0.25"


def test_offset_notation_is_off_where_matplotlib_would_use_it():
    """The data of a one-checkpoint analysis: plain Matplotlib labels its axis with an offset;
    a figures panel writes the numbers out."""
    plain = Figure().add_subplot()
    plain.vlines([4], HUGE - 1e-7, HUGE + 1e-7)
    FigureCanvasAgg(plain.figure).draw()
    assert plain.yaxis.get_major_formatter().get_offset() != ""  # the test can fail
    ax = figures.checkpoint_panel([{"step": 4, "loss_range_mean": HUGE,
                                    "loss_range_lo": HUGE - 1e-7, "loss_range_hi": HUGE + 1e-7}],
                                  "loss_range")
    assert_no_offset(ax.figure)
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all("214144" in label for label in labels)


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
    assert_no_offset(fig)


def test_fig4_band_spans_min_to_max():
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


def test_fig4_panels_draw_on_the_given_axes():
    models = {"batchnorm": fig4_summary(1, 1.0)}
    axes = new_figure(9.0, 3.0).subplots(1, 3)
    assert figures.fig4_band(models, "loss", ax=axes[0]) is axes[0]
    assert figures.fig4_band(models, "grad_change", ax=axes[1]) is axes[1]
    assert figures.effective_beta_curves(models, ax=axes[2]) is axes[2]
    assert [len(fill_collections(ax)) for ax in axes] == [1, 1, 0]
    assert axes[2].get_lines()[0].get_label() == "batchnorm"
    own = figures.fig4_band(models, "loss")  # a figure of its own
    assert own.figure is not axes[0].figure and len(own.figure.axes) == 1
    with pytest.raises(KeyError):
        figures.fig4_band(models, "beta")


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
        assert any("diverged" in t for t in texts(ax))
    # vanilla's band is drawn only where it is finite: steps 0-20, 40, 60-190
    bands = [c for c in fill_collections(fig.axes[0]) if c.get_label() == "vanilla"]
    assert bands
    alone = plot_fig4({"vanilla": van})
    verts = np.concatenate([p.vertices for c in fill_collections(alone.axes[0])
                            for p in c.get_paths()])
    assert np.isfinite(verts).all() and verts[:, 0].max() == 190   # last finite step
    assert not np.any(np.isclose(verts[:, 0], 30))   # the NaN at step 30 is a gap


def test_fig4_all_nan_and_nonpositive_beta(tmp_path):
    dead = {k: [None] * 4 for k in ("steps", *FIG4_FIELDS)}
    dead["steps"] = [0, 1, 2, 3]
    fig = plot_fig4({"dead": dead}, path=tmp_path / "dead", formats=("png",))
    assert_written(tmp_path / "dead", pdf=False)   # axes, labels and "no finite data" notes
    assert any("no finite data" in t for t in texts(fig.axes[0]))
    s = fig4_summary(0, 1.0, n=4)
    s["effective_beta"] = np.array([0.0, -1.0, 2.0, np.nan])
    fig = plot_fig4({"batchnorm": s})
    assert fig.axes[2].get_yscale() == "linear"


def test_fig4_single_step_is_a_labelled_bar_and_dot(tmp_path):
    one = fig4_summary(0, 1.0, n=1)
    fig = plot_fig4({"batchnorm": one}, path=tmp_path / "one", formats=("png",))
    assert_written(tmp_path / "one", pdf=False)
    assert len(fig.axes) == 3
    a, b, c = fig.axes
    for ax, lo, hi in ((a, "loss_min", "loss_max"), (b, "grad_change_min", "grad_change_max")):
        bars = [col for col in ax.collections if isinstance(col, LineCollection)]
        assert len(bars) == 1 and bars[0].get_label() == "batchnorm"
        ends = (readable_number(one[lo][0], 4), readable_number(one[hi][0], 4))
        assert texts(ax) == [" –\n".join(ends)]
    assert c.get_lines()[0].get_marker() == "o"
    assert texts(c) == [readable_number(one["effective_beta"][0])]
    assert_no_offset(fig)
    bad = fig4_summary(0, 1.0, n=5)
    bad["loss_max"] = bad["loss_max"][:4]
    with pytest.raises(ValueError, match="equal lengths"):
        plot_fig4({"batchnorm": bad})


def test_zero_width_band_is_still_drawn():
    s = fig4_summary(0, 1.0, n=5)
    s["loss_max"] = s["loss_min"]            # L(θ − ηg) the same for every η
    s2 = fig4_summary(0, 1.0, n=1)
    s2["loss_max"] = s2["loss_min"]          # and at one step: a dot with its value
    ax = figures.fig4_band({"batchnorm": s, "vanilla": s2}, "loss")
    blue = label_colors(["batchnorm"])["batchnorm"]
    edges = [ln for ln in ax.get_lines() if ln.get_color() == blue]
    assert len(edges) == 2 and np.allclose(edges[0].get_ydata(), s["loss_min"])
    assert texts(ax) == [readable_number(s2["loss_min"][0])]


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
    assert {"steps", *FIG4_FIELDS} <= set(s)
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
# training curves, seed bands, ICS, activations


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
    assert [ax.get_title() for ax in fig.axes] == ["train loss", "train accuracy",
                                                   "test accuracy"]
    assert "0.5" in texts(fig.axes[2])    # "only_test" has one evaluation: its value is written
    assert_no_offset(fig)
    with pytest.raises(ValueError):
        plot_training({"x": {"steps": [0, 1], "train_loss": [1.0]}})


def test_training_curve_on_given_axes_and_one_point():
    ax = new_figure(4.0, 3.0).add_subplot()
    out = figures.training_curve({"bn": {"steps": [7], "train_loss": [HUGE]}}, "train_loss", ax=ax)
    assert out is ax and ax.get_lines()[0].get_marker() == "o"
    assert texts(ax) == ["214145"]
    assert_no_offset(ax.figure)


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
    wide = plot_compare(per_norm, "loss_max", legend_outside=True)
    assert wide.axes[0].get_legend() is None and tuple(wide.get_size_inches()) == (8.2, 4.8)
    assert [t.get_text() for t in wide.legends[0].get_texts()] == ["batch (n=3)", "none"]
    fig = plot_compare({"batch": {"steps": [0, 1], "mean": [0.5, -0.5], "lo": [0, -1],
                                  "hi": [1, 0]}}, "cosine")
    assert fig.axes[0].get_yscale() == "linear"
    one = figures.compare_bands({"batch": {"steps": [3], "mean": [1.5], "lo": [1.0],
                                           "hi": [2.0], "n": 2}}, "loss")
    assert "1.5" in texts(one) and "1 –\n2" in texts(one)
    assert_no_offset(one.figure)
    # a long title wraps to the axis; steps 0, 2, 4 get whole-step ticks only
    sparse = {"batch": {"steps": [0, 2, 4], "mean": [3.0, 2.0, 1.0], "lo": [2.5, 1.5, 0.5],
                        "hi": [3.5, 2.5, 1.5]}}
    long = "transformer (d_model=16, heads=2, layers=1) on text, AdamW lr 0.001, batch 4, 6 steps"
    ax = plot_compare(sparse, "loss", title=f"loss\n{long}", legend_outside=True).axes[0]
    lines = ax.get_title().split("\n")
    assert lines[0] == "loss" and len(lines) == 3 and max(map(len, lines)) <= 64
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


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
    assert_no_offset(fig)
    ax = figures.ics_panel({"bn": {"l": {"steps": [1], "l2": [0.3], "cosine": [0.9]}}}, "l",
                           "cosine")
    assert texts(ax) == ["0.9"]


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
    assert_no_offset(fig)
    ax = figures.activation_percentiles("one", {"steps": [0], "p15": [-1], "p50": [0],
                                                "p85": [1]})
    assert len(ax.get_lines()) == 3 and "0" in texts(ax)


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
    assert_no_offset(fig)
    if style == "ridge":
        ticks = {t.get_position()[1]: t.get_text() for t in fig.axes[0].get_yticklabels()}
        assert [ticks[y] for y in sorted(ticks, reverse=True)] == [
            "step 0", "step 100", "step 200"]   # the earliest step on top
    with pytest.raises(ValueError, match="style"):
        plot_activation_histograms(series, style="violin")


# ------------------------------------------------------------------------------------------------
# surfaces


@pytest.fixture(scope="module")
def bowl():
    a, b = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    A, B = np.meshgrid(a, b, indexing="ij")
    z = HUGE + 1e-6 * (A ** 2 + 3 * B ** 2)     # tiny variation on a huge level: offset bait
    traj = np.stack([np.linspace(0.8, 0, 5), 0.5 * np.linspace(0.8, 0, 5) ** 2], 1)
    return a, b, z, traj


def test_surface_panels_on_given_axes(bowl):
    a, b, z, traj = bowl
    fig = new_figure(9.0, 3.0)
    left, right = fig.subplots(1, 2)
    assert figures.surface_contour(a, b, z, trajectory=traj, log=True, ax=left) is left
    assert figures.surface_curves({"bn": (a, z[:, 3])}, marks=(0,), ax=right) is right
    assert len(left.get_lines()) == 3 and len(fig.axes) == 3    # + the colorbar
    assert left.get_legend() is not None
    assert_no_offset(fig)
    ax3 = figures.surface_3d(a, b, z)
    assert ax3.name == "3d"
    assert_no_offset(ax3.figure)


def test_plot_surfaces_overview_with_and_without_pca(tmp_path, bowl):
    a, b, z, traj = bowl
    alpha = np.linspace(-0.5, 1.5, 9)
    models = {"batchnorm": {"slice": (a, b, z), "line": (alpha, 1 + alpha ** 2),
                            "pca": (a, b, z, traj, [0.7, 0.2])},
              "vanilla": {"slice": (a, b, z), "line": (alpha, 2 + alpha ** 2), "pca": None,
                          "pca_missing": "one checkpoint"}}
    fig = figures.plot_surfaces_overview(models, title="t", path=tmp_path / "surfaces")
    assert_written(tmp_path / "surfaces")
    titles = [ax.get_title() for ax in fig.axes]
    assert "batchnorm: PCA plane (70%, 20%)" in titles and "vanilla: PCA plane" in titles
    missing = fig.axes[titles.index("vanilla: PCA plane")]
    assert texts(missing) == ["no PCA plane:\none checkpoint"]
    assert len(fig.axes) == 6 + 3   # 2 rows × 3 panels, a colorbar per drawn contour
    assert_no_offset(fig)


def test_plot_skip_overview(tmp_path, bowl):
    a, b, z, _ = bowl
    ratio = np.abs(np.sin(np.add.outer(a, b)))
    conv = {"resnet8": {"a": a, "b": b, "ratio": ratio},
            "resnet8-noshort": {"a": a, "b": b, "ratio": 2 * ratio}}
    fig = figures.plot_skip_overview([("resnet8", "resnet8-noshort")],
                                     {k: (a, b, z) for k in conv}, conv, title="skip",
                                     path=tmp_path / "skip")
    assert_written(tmp_path / "skip")
    assert len(fig.axes) == 4 + 4
    meshes = [ax.collections[0] for ax in fig.axes if ax.get_title().endswith("|λ_min/λ_max|")]
    # one colour scale, to the 95th percentile of all maps: an outlier cannot flatten the others
    top = np.percentile(np.concatenate([ratio.ravel(), 2 * ratio.ravel()]), 95)
    assert [m.get_clim() for m in meshes] == [(0, top)] * 2
    spiked = {**conv, "resnet8-noshort": {"a": a, "b": b, "ratio": np.where(ratio == ratio.max(), 1e3, ratio)}}
    fig = figures.plot_skip_overview([("resnet8", "resnet8-noshort")], {k: (a, b, z) for k in conv},
                                     spiked, title="skip")
    clims = [ax.collections[0].get_clim() for ax in fig.axes if ax.get_title().endswith("|λ_min/λ_max|")]
    assert clims[0][1] < 2  # the lone 10³ point takes the top colour, the maps keep their contrast
    assert_no_offset(fig)


# ------------------------------------------------------------------------------------------------
# spectra


def eos_models(n: int) -> dict[str, dict]:
    steps = list(range(0, 5 * n, 5))
    return {f"lr{lr}": {"lr": lr, "threshold": 2 / lr, "loss_steps": steps,
                        "train_loss": [HUGE - k * 1e-6 for k in range(n)], "steps": steps,
                        "sharpness": [2 / lr * (0.5 + 0.1 * k) for k in range(n)],
                        "preconditioned_sharpness": [38 / lr * 0.9] * n,
                        "critical_sharpness": [None] + [2 / lr] * (n - 1)}
            for lr in (0.01, 0.02)}


@pytest.mark.parametrize("n", [1, 6])
def test_plot_eos_and_adam_eos(tmp_path, n):
    fig = figures.plot_eos(eos_models(n), title="eos", path=tmp_path / "eos", formats=("png",))
    assert_written(tmp_path / "eos", pdf=False)
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and len(top.get_legend().get_texts()) == 2
    dashed = [ln for ln in bottom.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_ydata()[0] for ln in dashed) == [100.0, 200.0]
    if n == 1:
        assert len(texts(top)) == 2 and len(texts(bottom)) == 2   # the lone values, written
    assert_no_offset(fig)
    fig = figures.plot_adam_eos(eos_models(n), title="adam")
    assert len(fig.axes) == 3 and all(ax.get_yscale() == "log" for ax in fig.axes)
    assert_no_offset(fig)


def test_plot_spectrum(tmp_path):
    grid = np.linspace(-1, 5, 50)
    dens = np.exp(-grid ** 2)
    models = {label: {"steps": [0, 10], "eigenvalues": [[5.0, 2.0, 1.0], [6.0, 2.5, 1.0]],
                      "lambda_1": [5.0, 6.0], "lambda_k": [1.0, 1.0], "top_fraction": [0.3, 0.6],
                      "density_steps": [10], "bulk_edge_99": [2.0]}
              for label in ("batchnorm", "vanilla")}
    densities = {label: [(10, grid, dens)] for label in models}
    fig = figures.plot_spectrum(models, densities, title="spec", path=tmp_path / "spec",
                                formats=("png",))
    assert_written(tmp_path / "spec", pdf=False)
    a, b, c, d = fig.axes
    assert a.get_yscale() == "symlog" and c.get_yscale() == "log"
    assert a.get_lines()[0].get_color() == "#1f77b4"             # batchnorm blue
    assert len(c.get_lines()) == 2 and b.get_ylim() == (-0.02, 1.02)
    assert_no_offset(fig)


def test_plot_blockwise_rows():
    rec = {"blocks": ["a", "b"], "grid": np.linspace(0, 1, 20),
           "densities": np.abs(np.random.default_rng(0).normal(size=(2, 20))) + 0.1,
           "js_distances": np.array([[0.0, 0.4], [0.4, 0.0]]), "heterogeneity": 0.4,
           "noise_floor": 0.05}
    fig = figures.plot_blockwise({"transformer": rec, "cnn": rec})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["transformer: blockwise Hessian spectra",
                          "transformer: JS distance: mean over pairs 0.400, SLQ noise floor 0.050"]
    assert_no_offset(fig)


# ------------------------------------------------------------------------------------------------
# theory and checkpoint analysis


def test_plot_theorem_4_1(tmp_path):
    layers = {f"block{i}": {"lhs": [1.0, 0.5, 2.0], "rhs": [2.0, 1.0, 3.0],
                            "rhs_printed": [0.5, 0.2, 1.0], "m": 8} for i in range(5)}
    layers["dead"] = {"lhs": [np.nan], "rhs": [np.nan], "rhs_printed": [np.nan], "m": 4}
    fig = figures.plot_theorem_4_1(layers, path=tmp_path / "theory", formats=("png",))
    assert_written(tmp_path / "theory", pdf=False)
    assert len(fig.axes) == 6 and fig.axes[0].get_legend() is not None
    assert fig.axes[1].get_legend() is None and "no finite data" in texts(fig.axes[5])
    assert_no_offset(fig)


def test_plot_xiong_depth():
    slopes = {pos: {"depths": [2, 4, 8], "mean": [1.0, 0.7, 0.5], "std": [0.1, 0.1, 0.1],
                    "slope": s, "theory_slope": t}
              for pos, s, t in (("pre", -0.5, -0.5), ("post", 0.01, 0.0))}
    fig = figures.plot_xiong_depth({"xavier": slopes, "gpt2": slopes},
                                   {"xavier": "Xavier", "gpt2": "GPT-2"}, title="xiong")
    assert [ax.get_title() for ax in fig.axes] == ["init: Xavier", "init: GPT-2"]
    assert fig.axes[0].get_xscale() == "log"
    assert_no_offset(fig)


def test_plot_checkpoint_analysis_one_checkpoint(tmp_path):
    """`landscape analyze` on one checkpoint: bars and dots with their numbers, no offsets."""
    record = {"step": 4, "lambda_max": 12.5}
    for q in figures.analysis.ANALYSIS_PANELS:
        record.update({f"{q}_mean": HUGE, f"{q}_lo": HUGE - 1e-7, f"{q}_hi": HUGE + 1e-7})
    fig = figures.plot_checkpoint_analysis([record], "batch_stats", path=tmp_path / "analysis")
    assert_written(tmp_path / "analysis", pdf=False)
    assert len(fig.axes) == 4
    for ax in fig.axes[:3]:
        assert texts(ax) == ["214144.5896999 –\n214144.5897001", "214145"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["4"]
        assert len([c for c in ax.collections if isinstance(c, LineCollection)]) == 1
    assert texts(fig.axes[3]) == ["12.5"] and fig.axes[3].get_title() == "Hessian λ_max"
    assert_no_offset(fig)


def test_plot_checkpoint_analysis_several_checkpoints():
    records = [{"step": s, "effective_beta_mean": 2.0 + s, "effective_beta_lo": 1.5 + s,
                "effective_beta_hi": 2.5 + s} for s in (0, 4, 8)]
    fig = figures.plot_checkpoint_analysis(records, "batch_stats")
    assert len(fig.axes) == 3 and not texts(fig.axes[2])
    assert len(fill_collections(fig.axes[2])) == 1
    assert_no_offset(fig)
