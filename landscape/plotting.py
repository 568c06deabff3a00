"""Figures for the Santurkar et al. (2018) and Ioffe & Szegedy (2015) reproductions.

Every ``plot_*`` function takes plain numbers (mappings of label → arrays; no JAX), builds a
:class:`matplotlib.figure.Figure` on its own Agg canvas (no ``pyplot``: no global figure state, no
GUI backend, the global backend is left alone), returns it, and — when ``path`` is given — writes ``path.png`` and ``path.pdf`` through
:func:`save_figure`. Non-finite values (NaN/±Inf: a diverged run; ``null`` in the JSON records) are
skipped, never an error; on log axes non-positive values are skipped too.

Colours are fixed by label so that every figure agrees: the unnormalized network ("vanilla",
"none", "standard", …) is red and BatchNorm ("batchnorm", "batch", "bn", …) is blue, as in the
paper; a label counts as one of them when its first word is one of those names, so
"vanilla lr=0.5" is a (darker) red too. Any other label gets the next colour of a qualitative
palette. See :func:`label_colors`.

Figures:

- :func:`plot_fig4` — S Fig. 4: (a) loss band, (b) gradient-predictiveness band, (c) effective β.
- :func:`plot_training` — S Fig. 1/2/5 and I Fig. 1(a): train loss, train and test accuracy.
- :func:`plot_activation_percentiles` — I Fig. 1(b, c): 15/50/85th percentiles over steps.
- :func:`plot_activation_histograms` — S Fig. 1/2: one layer's activation distribution over steps.
- :func:`plot_ics` — S Fig. 3: ‖G − G′‖₂ and cos∠(G, G′) per layer.
- :func:`plot_compare` — mean and spread over seeds of one metric, per normalization.

Example:
    >>> from landscape.records import read_records
    >>> rows = read_records("runs/bn/probes.jsonl")
    >>> fig = plot_fig4({"batchnorm": summary_from_probe_rows(rows)}, path="figures/fig4")
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from landscape.records import FIG4_FIELDS as RECORD_FIG4_FIELDS
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = [
    "DEFAULT_DPI",
    "FIG4_FIELDS",
    "label_colors",
    "plot_activation_histograms",
    "plot_activation_percentiles",
    "plot_compare",
    "plot_fig4",
    "plot_ics",
    "plot_training",
    "save_figure",
    "summary_from_probe_rows",
]

PathLike = str | os.PathLike

#: Resolution of saved raster files (PNG) when :func:`save_figure` is given no ``dpi``.
DEFAULT_DPI: int = 150

#: The per-step arrays :func:`plot_fig4` reads (all the same length as ``steps``).
FIG4_FIELDS: tuple[str, ...] = ("steps",) + RECORD_FIG4_FIELDS  # the arrays a Fig.-4 summary holds

# ----------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------

_VANILLA_NAMES = {"vanilla", "none", "standard", "plain", "nobn", "no_bn", "unnormalized",
                  "without_bn", "baseline"}
_BATCHNORM_NAMES = {"batchnorm", "batch", "bn", "batch_norm", "withbn", "with_bn"}
# Shades used in order when several labels share a family (first = the paper's colour).
_REDS = ("#d62728", "#8c1c13", "#f08a7e", "#b2432f", "#ffb3a7")
_BLUES = ("#1f77b4", "#0b3c6b", "#7fb3de", "#3e5f8a", "#b7d4ee")
_OTHERS = ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#98df8a", "#ffbb78", "#c5b0d5", "#c49c94")


def _family(label: str) -> str | None:
    key = label.strip().lower()
    if key.replace(" ", "_") in _VANILLA_NAMES:
        return "vanilla"
    if key.replace(" ", "_") in _BATCHNORM_NAMES:
        return "batch"
    words = re.split(r"[^a-z0-9]+", key)
    first = words[0] if words else ""
    if first in _VANILLA_NAMES:
        return "vanilla"
    if first in _BATCHNORM_NAMES:
        return "batch"
    return None


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label: vanilla-like labels red, BatchNorm-like labels blue, others a palette.

    Labels of one family get successive shades in the order given; other labels take the
    qualitative palette in order (cycling when it runs out).

    Example:
        >>> label_colors(["vanilla", "batchnorm", "layer"])
        {'vanilla': '#d62728', 'batchnorm': '#1f77b4', 'layer': '#2ca02c'}
    """
    out: dict[str, str] = {}
    counts = {"vanilla": 0, "batch": 0, None: 0}
    for label in labels:
        if label in out:
            continue
        fam = _family(str(label))
        shades = {"vanilla": _REDS, "batch": _BLUES, None: _OTHERS}[fam]
        out[label] = shades[counts[fam] % len(shades)]
        counts[fam] += 1
    return out


# ----------------------------------------------------------------------------------------------
# Saving and checking
# ----------------------------------------------------------------------------------------------


def save_figure(fig: Figure, path_without_ext: PathLike, formats: Sequence[str] = ("png", "pdf"),
                *, dpi: int | None = None) -> list[Path]:
    """Write ``fig`` as ``<path_without_ext>.<fmt>`` for each format; returns the written paths.

    The extension is appended (not substituted), so names with dots such as ``"fig4_lr0.1"`` are
    kept whole. Parent folders are created. ``dpi`` (default :data:`DEFAULT_DPI`) sets the
    resolution of raster formats.

    Example:
        >>> save_figure(plot_fig4(models), "figures/fig4")   # figures/fig4.png, figures/fig4.pdf
    """
    base = Path(path_without_ext)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        fmt = fmt.lstrip(".")
        out = Path(f"{base}.{fmt}")
        fig.savefig(out, format=fmt, dpi=DEFAULT_DPI if dpi is None else dpi)
        written.append(out)
    return written


def _maybe_save(fig: Figure, path: PathLike | None, formats: Sequence[str], *,
                title: str | None = None) -> Figure:
    """Give ``fig`` its title (if any) and save it when ``path`` is given."""
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path, formats)
    return fig


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _arr(values: Any) -> np.ndarray:
    """1-D float array; ``None`` → NaN."""
    if values is None:
        return np.zeros(0)
    return np.asarray(values, dtype=float).reshape(-1)


def _valid(*arrays: np.ndarray, log: bool = False) -> np.ndarray:
    """Mask of positions where every array is finite (and > 0 for the non-x arrays when ``log``)."""
    mask = np.ones(arrays[0].shape, dtype=bool)
    for i, a in enumerate(arrays):
        mask &= np.isfinite(a)
        if log and i > 0:
            with np.errstate(invalid="ignore"):
                mask &= a > 0
    return mask


def _runs(mask: np.ndarray) -> list[slice]:
    """Contiguous True stretches of ``mask`` as slices."""
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append(slice(start, i))
            start = None
    if start is not None:
        out.append(slice(start, len(mask)))
    return out


def _check_lengths(name: str, data: Mapping[str, np.ndarray]) -> None:
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name}: arrays must have equal lengths, got {lengths}")


def _band(ax: Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, color: str, label: str,
          log: bool, alpha: float = 0.35, edges: bool = True) -> bool:
    """Shaded band lo..hi over x, skipping invalid points (gaps stay gaps). True if drawn."""
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    mask = _valid(x, lo, hi, log=log)
    if not mask.any():
        return False
    first = True
    for sl in _runs(mask):
        xs, l, h = x[sl], lo[sl], hi[sl]
        if len(xs) == 1:  # a lone point: a vertical bar from lo to hi
            ax.vlines(xs, l, h, color=color, lw=2.0, alpha=0.8, label=label if first else None)
        else:
            ax.fill_between(xs, l, h, color=color, alpha=alpha, lw=0.0,
                            label=label if first else None)
            if edges:
                ax.plot(xs, l, color=color, lw=0.6, alpha=0.9)
                ax.plot(xs, h, color=color, lw=0.6, alpha=0.9)
        first = False
    return True


def _line(ax: Axes, x: np.ndarray, y: np.ndarray, *, color: str, label: str | None,
          log: bool = False, **kw: Any) -> bool:
    """Line over the valid points (NaN gaps split the line). True if anything was drawn."""
    mask = _valid(x, y, log=log)
    if not mask.any():
        return False
    yy = np.where(mask, y, np.nan)
    marker = kw.pop("marker", "o" if mask.sum() == 1 else None)
    ax.plot(x, yy, color=color, label=label, marker=marker, **kw)
    return True


def _all_positive(*arrays: np.ndarray) -> bool:
    """True when the finite values are all > 0 and there is at least one."""
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    return vals.size > 0 and bool(np.all(vals > 0))


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no finite data", transform=ax.transAxes, ha="center", va="center",
            color="0.5", fontsize=9)


def _mark_diverged(axes: Sequence[Axes], diverged: Mapping[str, float | None] | None,
                   colors: Mapping[str, str]) -> None:
    """Dashed vertical line and a 'diverged' note at each label's divergence step, on every axis."""
    if not diverged:
        return
    for label, step in diverged.items():
        if step is None or not np.isfinite(float(step)):
            continue
        color = colors.get(label, "0.3")
        for ax in axes:
            ax.axvline(float(step), color=color, ls="--", lw=1.2, alpha=0.9)
            ax.annotate(f"{label} diverged" if len(diverged) > 1 else "diverged",
                        xy=(float(step), 0.97), xycoords=ax.get_xaxis_transform(),
                        xytext=(-3, 0), textcoords="offset points", rotation=90, ha="right",
                        va="top", fontsize=7, color=color)


def _legend(fig: Figure, axes: Sequence[Axes], ncols: int | None = None) -> None:
    """One legend for the whole figure, below the panels, from all axes' entries (deduplicated)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center",
                   ncols=ncols or min(len(seen), 6), frameon=False, fontsize=9)


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: headless, and no global ``pyplot`` state is touched."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Figure 4
# ----------------------------------------------------------------------------------------------

_FIG4_YLABELS = (
    r"loss $\mathcal{L}(\theta-\eta g)$",
    r"$\|\nabla\mathcal{L}(\theta-\eta g)-\nabla\mathcal{L}(\theta)\|_2$",
    r"$\mathrm{max}_\eta\ \|\nabla\mathcal{L}(\theta-\eta g)-g\|_2\,/\,\|\eta g\|_2$",
)
_FIG4_TITLES = ("(a) loss landscape", "(b) gradient predictiveness",
                r'(c) "effective" $\beta$-smoothness')


def plot_fig4(models: Mapping[str, Mapping[str, Any]], *, title: str | None = None,
              diverged: Mapping[str, float | None] | None = None, path: PathLike | None = None,
              formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Santurkar et al. (2018) Figure 4: the landscape along the gradient, per training step.

    With θ the parameters at a step, g = ∇L(θ) and η over the probe range:
    (a) band min_η..max_η of L(θ − ηg) (log y); (b) band of ‖∇L(θ − ηg) − ∇L(θ)‖₂ (log y);
    (c) effective β-smoothness max_η ‖∇L(θ − ηg) − g‖₂ / ‖ηg‖₂, one curve per model (log y when
    all finite values are positive). Raw per-step values, no smoothing; non-finite points skipped.

    Args:
      models: label → summary with equal-length arrays ``steps``, ``loss_min``, ``loss_max``,
        ``grad_change_min``, ``grad_change_max``, ``effective_beta`` (``grad_norm`` may be present;
        it is not drawn); optional ``lambda_max`` and ``gradient_curvature`` (the Hessian's top
        eigenvalue and gᵀHg/‖g‖² at the same steps) are drawn dashed / dotted in panel (c).
        :func:`summary_from_probe_rows` builds one from ``probes.jsonl`` rows.
      title: figure title.
      diverged: label → step at which that run diverged (``None`` = did not); drawn as a dashed line
        with a "diverged" note on every panel.
      path: when given, save ``path.png``/``path.pdf`` (see :func:`save_figure`).
      formats: file formats to write.

    Returns:
      The figure (three axes: a, b, c).

    Reference:
      Santurkar, Tsipras, Ilyas, Madry (2018), Fig. 4 and App. A.2.2.

    Example:
        >>> s = {"steps": [0, 1], "loss_min": [2.0, 1.5], "loss_max": [2.5, 2.0],
        ...      "grad_change_min": [0.1, 0.1], "grad_change_max": [0.5, 0.4],
        ...      "effective_beta": [3.0, 2.5], "grad_norm": [1.0, 0.9]}
        >>> fig = plot_fig4({"batchnorm": s})
        >>> len(fig.axes)
        3
    """
    fig = _new_figure(13.5, 4.0)
    axes = fig.subplots(1, 3, sharex=True)
    colors = label_colors(models)
    drawn = [False, False, False]
    for label, summary in models.items():
        data = {k: _arr(summary.get(k)) for k in FIG4_FIELDS[:6]}
        _check_lengths(f"models[{label!r}]", data)
        x = data["steps"]
        c = colors[label]
        # Two models: the paper's solid bands; more: lighter bands so overlaps stay readable.
        alpha = 0.35 if len(models) <= 2 else 0.12
        drawn[0] |= _band(axes[0], x, data["loss_min"], data["loss_max"], color=c, label=label,
                          log=True, alpha=alpha)
        drawn[1] |= _band(axes[1], x, data["grad_change_min"], data["grad_change_max"], color=c,
                          label=label, log=True, alpha=alpha)
    curvature = {"lambda_max": ("--", "λ_max(∇²L)"), "gradient_curvature": (":", "gᵀHg/‖g‖²")}
    beta_log = _all_positive(*[_arr(s.get(k)) for s in models.values()
                               for k in ("effective_beta", *curvature) if k in s])
    for label, summary in models.items():
        drawn[2] |= _line(axes[2], _arr(summary.get("steps")), _arr(summary.get("effective_beta")),
                          color=colors[label], label=label, log=beta_log, lw=1.2)
        for key, (style, name) in curvature.items():  # the true smoothness, when measured
            if key in summary:
                _line(axes[2], _arr(summary.get("steps")), _arr(summary[key]), color=colors[label],
                      label=f"{label}: {name}", log=beta_log, lw=1.0, ls=style)
    for i, ax in enumerate(axes):
        if i < 2 or beta_log:
            ax.set_yscale("log")
        ax.set_title(_FIG4_TITLES[i], fontsize=11)
        ax.set_ylabel(_FIG4_YLABELS[i])
        ax.set_xlabel("training step")
        ax.grid(True, which="major", alpha=0.3)
        if not drawn[i]:
            _no_data(ax)
    _mark_diverged(axes, diverged, colors)
    _legend(fig, axes)
    return _maybe_save(fig, path, formats, title=title)


def summary_from_probe_rows(rows: Iterable[Mapping[str, Any]], *, tag: str | None = None
                            ) -> dict[str, np.ndarray]:
    """The :func:`plot_fig4` summary arrays from ``probes.jsonl`` rows, sorted by step.

    Each row gives one step: ``loss_min``/``loss_max``/``grad_change_min``/``grad_change_max`` are
    taken from the row, or, when absent, computed from its ``loss``/``grad_change`` lists (min/max
    with NaN propagating, as :func:`landscape.probes.summarize` does). Missing scalars and ``null``
    become NaN. If a step appears twice the later row wins.

    Args:
      rows: probe records (``landscape.train.read_run(workdir)["probes"]``).
      tag: keep only rows with this ``tag`` (``None``: all rows).

    Returns:
      dict of 1-D arrays: ``steps`` (int64) and float64 ``loss_min``, ``loss_max``,
      ``grad_change_min``, ``grad_change_max``, ``effective_beta``, ``grad_norm``, ``loss0``.

    Example:
        >>> rows = [{"step": 5, "loss": [1.0, 2.0], "grad_change": [0.1, 0.3],
        ...          "effective_beta": 4.0, "grad_norm": 1.0, "loss0": 1.1}]
        >>> summary_from_probe_rows(rows)["loss_max"]
        array([2.])
    """
    by_step: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        if tag is not None and row.get("tag") != tag:
            continue
        by_step[int(row["step"])] = row
    steps = sorted(by_step)

    def scalar(row: Mapping[str, Any], key: str) -> float:
        v = row.get(key)
        return math.nan if v is None else float(v)

    def reduce(row: Mapping[str, Any], key: str, source: str, fn: Any) -> float:
        if key in row:
            return scalar(row, key)
        values = _arr(row.get(source))
        return float(fn(values)) if values.size else math.nan

    out: dict[str, np.ndarray] = {"steps": np.asarray(steps, dtype=np.int64)}
    spec = (("loss_min", "loss", np.min), ("loss_max", "loss", np.max),
            ("grad_change_min", "grad_change", np.min), ("grad_change_max", "grad_change", np.max))
    for key, source, fn in spec:
        out[key] = np.asarray([reduce(by_step[s], key, source, fn) for s in steps], dtype=float)
    for key in ("effective_beta", "grad_norm", "loss0"):
        out[key] = np.asarray([scalar(by_step[s], key) for s in steps], dtype=float)
    return out


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """NaN-aware trailing moving average (window ≤ 1: unchanged)."""
    if window <= 1 or y.size == 0:
        return y
    ok = np.isfinite(y)
    vals = np.where(ok, y, 0.0)
    csum = np.cumsum(np.concatenate([[0.0], vals]))
    ccnt = np.cumsum(np.concatenate([[0], ok.astype(int)]))
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(idx - window, 0)
    cnt = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[idx] - csum[lo]) / cnt
    return np.where(ok, out, np.nan)


def plot_training(curves: Mapping[str, Mapping[str, Any]], *, title: str | None = None,
                  smooth: int = 0, diverged: Mapping[str, float | None] | None = None,
                  path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Training curves per label: train loss (log y), train accuracy and test accuracy vs step.

    Used for S Fig. 1 (BN vs vanilla at two learning rates), Fig. 2 (noisy BN), Fig. 5 (ℓp
    normalizations) and I Fig. 1(a).

    Args:
      curves: label → dict with any of ``steps``, ``train_loss``, ``train_accuracy`` (same length as
        ``steps``) and ``eval_steps``, ``test_accuracy`` (same length as ``eval_steps``). Missing
        series are simply not drawn.
      title: figure title.
      smooth: trailing moving-average window for the per-step train series (0 = raw, the default).
      diverged: label → divergence step, marked on every panel.
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (three axes: train loss, train accuracy, test accuracy).

    Example:
        >>> fig = plot_training({"vanilla": {"steps": [0, 1, 2], "train_loss": [2.3, 2.0, 1.8],
        ...                                  "train_accuracy": [0.1, 0.2, 0.3],
        ...                                  "eval_steps": [2], "test_accuracy": [0.25]}})
    """
    fig = _new_figure(13.5, 4.0)
    axes = fig.subplots(1, 3, sharex=True)
    colors = label_colors(curves)
    loss_log = _all_positive(*[_arr(c.get("train_loss")) for c in curves.values()])
    drawn = [False, False, False]
    for label, c in curves.items():
        col = colors[label]
        steps = _arr(c.get("steps"))
        for i, key in ((0, "train_loss"), (1, "train_accuracy")):
            y = _arr(c.get(key))
            if y.size:
                _check_lengths(f"curves[{label!r}]", {"steps": steps, key: y})
                drawn[i] |= _line(axes[i], steps, _moving_average(y, smooth), color=col,
                                  label=label, log=loss_log and i == 0, lw=1.0)
        ev, acc = _arr(c.get("eval_steps")), _arr(c.get("test_accuracy"))
        if acc.size:
            _check_lengths(f"curves[{label!r}]", {"eval_steps": ev, "test_accuracy": acc})
            drawn[2] |= _line(axes[2], ev, acc, color=col, label=label, lw=1.4, marker=".",
                              markersize=4)
    names = ("train loss", "train accuracy", "test accuracy")
    for i, ax in enumerate(axes):
        if i == 0 and loss_log:
            ax.set_yscale("log")
        ax.set_title(names[i], fontsize=11)
        ax.set_ylabel(names[i].split()[-1])
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
        if not drawn[i]:
            _no_data(ax)
    _mark_diverged(axes, diverged, colors)
    _legend(fig, axes)
    return _maybe_save(fig, path, formats, title=title)


# ----------------------------------------------------------------------------------------------
# Activation distributions
# ----------------------------------------------------------------------------------------------


def plot_activation_percentiles(series: Mapping[str, Mapping[str, Any]], *,
                                title: str | None = None, path: PathLike | None = None,
                                formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Ioffe & Szegedy (2015) Fig. 1(b, c): 15th, 50th, 85th percentiles of one unit's input.

    One panel per label (shared y axis), the 15–85 % range shaded and the median drawn thicker.

    Args:
      series: label → dict with equal-length ``steps``, ``p15``, ``p50``, ``p85``.
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (one axis per label).

    Example:
        >>> fig = plot_activation_percentiles({"without BN": {"steps": [0, 10], "p15": [-1, -2],
        ...                                                   "p50": [0, 0], "p85": [1, 2]}})
    """
    n = max(len(series), 1)
    fig = _new_figure(4.2 * n + 0.5, 3.6)
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True, squeeze=False)[0])
    colors = label_colors(series)
    for ax, (label, s) in zip(axes, series.items()):
        data = {k: _arr(s.get(k)) for k in ("steps", "p15", "p50", "p85")}
        _check_lengths(f"series[{label!r}]", data)
        x, c = data["steps"], colors[label]
        any_drawn = _band(ax, x, data["p15"], data["p85"], color=c, label=None, log=False,
                          alpha=0.15, edges=False)
        for key, style, lw in (("p15", "--", 1.0), ("p50", "-", 1.8), ("p85", ":", 1.2)):
            any_drawn |= _line(ax, x, data[key], color=c, label=f"{key[1:]}th percentile",
                               ls=style, lw=lw)
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
        if not any_drawn:
            _no_data(ax)
    _legend(fig, axes)  # line styles name the percentiles; below the panels, clear of the data
    axes[0].set_ylabel("activation (input to the nonlinearity)")
    if not series:
        _no_data(axes[0])
    return _maybe_save(fig, path, formats, title=title)


def plot_activation_histograms(series: Mapping[str, Mapping[str, Any]], *, bins: int = 60,
                               style: str = "ridge", clip_percentile: float = 0.5,
                               title: str | None = None, path: PathLike | None = None,
                               formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Santurkar et al. (2018) Fig. 1/2 style: one layer's activation distribution over training.

    One panel per label; the distribution at each recorded step is a histogram density coloured by
    step (viridis, early = dark). ``style="ridge"`` stacks the densities vertically, one ridge per
    step (the y tick labels name the steps); ``style="overlay"`` overlays step-outline histograms.
    All steps of a label share bins over the [``clip_percentile``, 100 − ``clip_percentile``]
    percentile range of that label's finite values (values outside are not drawn), so one outlier
    cannot squash the plot.

    Args:
      series: label → dict with ``steps`` (list of T ints) and ``values`` (list of T 1-D arrays;
        non-finite values are dropped).
      bins: histogram bins per panel.
      style: ``"ridge"`` or ``"overlay"``.
      clip_percentile: percentile trimmed at each end when choosing the bin range.
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (one axis per label).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_activation_histograms({"vanilla": {"steps": [0, 100],
        ...     "values": [rng.normal(size=500), rng.normal(1, 2, size=500)]}})
    """
    if style not in ("ridge", "overlay"):
        raise ValueError(f"style must be 'ridge' or 'overlay', got {style!r}")
    n = max(len(series), 1)
    fig = _new_figure(4.2 * n + 0.8, 4.2)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
    cmap = colormaps["viridis"]
    for ax, (label, s) in zip(axes, series.items()):
        steps = list(s.get("steps", []))
        values = [_arr(v) for v in s.get("values", [])]
        if len(steps) != len(values):
            raise ValueError(f"series[{label!r}]: {len(steps)} steps but {len(values)} value arrays")
        values = [v[np.isfinite(v)] for v in values]
        pooled = np.concatenate(values) if values else np.zeros(0)
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("activation value")
        if pooled.size == 0:
            _no_data(ax)
            continue
        lo, hi = np.percentile(pooled, [clip_percentile, 100 - clip_percentile])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        centers = 0.5 * (edges[:-1] + edges[1:])
        width = edges[1] - edges[0]
        # density relative to all of a step's finite values, so trimmed tails are not re-spread
        densities = [np.histogram(v, bins=edges)[0] / (max(v.size, 1) * width) for v in values]
        peak = max((d.max() for d in densities), default=1.0) or 1.0
        T = len(steps)
        for k, (step, dens) in enumerate(zip(steps, densities)):
            color = cmap(k / max(T - 1, 1) * 0.9)
            if style == "ridge":
                base = T - 1 - k  # earliest step on top, as the paper reads top to bottom
                y = base + 1.6 * dens / peak
                ax.fill_between(centers, base, y, color=color, alpha=0.55, lw=0, zorder=k)
                ax.plot(centers, y, color=color, lw=1.0, zorder=k + 0.5)
            else:
                ax.stairs(dens, edges, color=color, lw=1.2, label=f"step {step}")
        if style == "ridge":
            ax.set_yticks(np.arange(T)[::-1], [f"step {st}" for st in steps], fontsize=8)
            ax.set_ylim(-0.2, T + 0.8)
            ax.grid(True, axis="x", alpha=0.3)
        else:
            ax.set_ylabel("density")
            ax.legend(fontsize=7, frameon=False)
            ax.grid(True, alpha=0.3)
    if not series:
        _no_data(axes[0])
    return _maybe_save(fig, path, formats, title=title)


# ----------------------------------------------------------------------------------------------
# Figure 3: internal covariate shift
# ----------------------------------------------------------------------------------------------


def plot_ics(series: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str | None = None,
             path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Santurkar et al. (2018) Fig. 3: ICS as the change of a layer's gradient (Definition 2.1).

    Top row ‖G − G′‖₂ (log y when positive), bottom row cos∠(G, G′), one column per layer (in the
    order first seen), one line per model label. G is the layer's gradient at step t, G′ the same
    after only the earlier layers took their step-t update (same batch).

    Args:
      series: label → {layer name → dict with equal-length ``steps``, ``l2``, ``cosine``}.
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (2 × number-of-layers axes, row-major).

    Example:
        >>> fig = plot_ics({"batchnorm": {"layer #5": {"steps": [0, 10], "l2": [0.1, 0.2],
        ...                                            "cosine": [0.9, 0.8]}}})
    """
    layers: list[str] = []
    for per_layer in series.values():
        for name in per_layer:
            if name not in layers:
                layers.append(name)
    ncol = max(len(layers), 1)
    fig = _new_figure(4.0 * ncol + 0.8, 6.2)
    axes = fig.subplots(2, ncol, sharex="col", squeeze=False)
    colors = label_colors(series)
    for j, layer in enumerate(layers):
        l2_log = _all_positive(*[_arr(per.get(layer, {}).get("l2")) for per in series.values()])
        drawn = [False, False]
        for label, per_layer in series.items():
            if layer not in per_layer:
                continue
            d = {k: _arr(per_layer[layer].get(k)) for k in ("steps", "l2", "cosine")}
            _check_lengths(f"series[{label!r}][{layer!r}]", d)
            drawn[0] |= _line(axes[0, j], d["steps"], d["l2"], color=colors[label], label=label,
                              log=l2_log, lw=1.2)
            drawn[1] |= _line(axes[1, j], d["steps"], d["cosine"], color=colors[label],
                              label=label, lw=1.2)
        if l2_log:
            axes[0, j].set_yscale("log")
        axes[0, j].set_title(str(layer), fontsize=11)
        axes[1, j].set_xlabel("training step")
        for i in range(2):
            axes[i, j].grid(True, alpha=0.3)
            if not drawn[i]:
                _no_data(axes[i, j])
    axes[0, 0].set_ylabel(r"$\|G-G'\|_2$")
    axes[1, 0].set_ylabel(r"$\cos\angle(G, G')$")
    if not layers:
        _no_data(axes[0, 0])
    _legend(fig, axes.ravel())
    return _maybe_save(fig, path, formats, title=title)


# ----------------------------------------------------------------------------------------------
# Seed comparison
# ----------------------------------------------------------------------------------------------


def plot_compare(per_norm: Mapping[str, Mapping[str, Any]], metric: str, *,
                 log: bool | None = None, title: str | None = None,
                 diverged: Mapping[str, float | None] | None = None,
                 path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Mean ± spread over seeds of one metric vs step, one band per normalization.

    Args:
      per_norm: label → dict with equal-length ``steps``, ``mean``, ``lo``, ``hi`` (e.g. min/max or
        mean ± std over seeds, as the caller chooses) and optionally ``n`` (number of seeds, shown
        in the legend).
      metric: the metric's name (y label and default title).
      log: log y axis; ``None`` picks log when every finite value is positive and they span more
        than a factor of 20.
      title: figure title (default: ``metric``).
      diverged: label → divergence step, marked with a dashed line.
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (one axis).

    Example:
        >>> fig = plot_compare({"batch": {"steps": [0, 1], "mean": [2, 1], "lo": [1.8, 0.9],
        ...                               "hi": [2.2, 1.1], "n": 3}}, "loss_max")
    """
    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    colors = label_colors(per_norm)
    arrays = {lab: {k: _arr(d.get(k)) for k in ("steps", "mean", "lo", "hi")}
              for lab, d in per_norm.items()}
    for lab, d in arrays.items():
        _check_lengths(f"per_norm[{lab!r}]", d)
    if log is None:
        vals = [v for d in arrays.values() for k in ("mean", "lo", "hi") for v in [d[k]]]
        finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.zeros(0)
        log = bool(finite.size and np.all(finite > 0) and finite.max() / finite.min() > 20)
    any_drawn = False
    for lab, d in arrays.items():
        n = per_norm[lab].get("n")
        name = f"{lab} (n={n})" if n is not None else lab
        any_drawn |= _band(ax, d["steps"], d["lo"], d["hi"], color=colors[lab], label=None,
                           log=log, alpha=0.25)
        any_drawn |= _line(ax, d["steps"], d["mean"], color=colors[lab], label=name, log=log,
                           lw=1.6)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else metric, fontsize=11)
    ax.grid(True, alpha=0.3)
    if any_drawn:
        ax.legend(fontsize=9, frameon=False)
    else:
        _no_data(ax)
    _mark_diverged([ax], diverged, colors)
    return _maybe_save(fig, path, formats)


# ----------------------------------------------------------------------------------------------
# Theorem 4.1
# ----------------------------------------------------------------------------------------------

def plot_theorem_4_1(layers: Mapping[str, Mapping[str, Any]], *, path: PathLike | None = None,
                     formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Theorem 4.1 per unit, one log-log panel per BatchNorm layer.

    ``layers`` maps a layer name to ``{"lhs", "rhs", "rhs_printed", "m"}`` (per-unit arrays, see
    :func:`landscape.theory.check_theorem_4_1`). Each unit is drawn at (right-hand side, ‖∇_y L̂‖²)
    for the corrected 1/m form (dots) and the printed 1/√m form (crosses); points on or below the
    dashed diagonal satisfy the bound.

    Example:
        >>> plot_theorem_4_1({"block0": {"lhs": [1.0], "rhs": [1.0], "rhs_printed": [0.5], "m": 8}})
    """
    names = list(layers)
    cols = max(1, min(4, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = _new_figure(3.3 * cols, 3.0 * rows + 0.5)
    for i, name in enumerate(names):
        d = layers[name]
        ax = fig.add_subplot(rows, cols, i + 1)
        lhs, rhs, printed = (_arr(d[k]) for k in ("lhs", "rhs", "rhs_printed"))
        ok = _valid(lhs, lhs, rhs, log=True)  # log=True checks > 0 on all but the first
        okp = _valid(lhs, lhs, printed, log=True)
        ax.loglog(rhs[ok], lhs[ok], "o", ms=3, color="tab:blue", label="corrected, 1/m")
        ax.loglog(printed[okp], lhs[okp], "x", ms=3, color="tab:red", label="printed, 1/√m")
        pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (lhs, rhs, printed)])
        if pos.size:
            ax.plot([pos.min(), pos.max()], [pos.min(), pos.max()], "k--", lw=0.8)
        else:
            _no_data(ax)
        for axis in (ax.xaxis, ax.yaxis):  # minor log labels collide on narrow ranges
            axis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=7)
        ax.set_title(f"{name} (m = {d.get('m', '?')})", fontsize=9)
        ax.set_xlabel("right-hand side", fontsize=8)
        ax.set_ylabel(r"$\|\nabla_{y_j}\hat{\mathcal{L}}\|^2$", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    return _maybe_save(fig, path, formats,
                       title="Theorem 4.1 per unit: on or below the diagonal means the bound holds")
