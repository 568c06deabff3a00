"""Activation distributions over training (Ioffe & Szegedy 2015 Fig. 1; Santurkar et al. 2018
Fig. 1/2): percentiles of one unit's input, and a layer's histograms step by step.

Panels: :func:`activation_percentiles`, :func:`activation_histogram` (each onto a given Axes, or a
new one, returned). Figures, one panel per label: :func:`plot_activation_percentiles`,
:func:`plot_activation_histograms`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.figures._axes import (draw_band, draw_line, figure_legend, no_data, readable_axes,
                                     tick_steps)
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import as_array, check_lengths

__all__ = ["activation_histogram", "activation_percentiles", "plot_activation_histograms",
           "plot_activation_percentiles"]


def activation_percentiles(label: str, series: Mapping[str, Any], *, color: str | None = None,
                           ax: Axes | None = None) -> Axes:
    """One label's 15th, 50th and 85th percentiles against the step: the 15–85 % range shaded,
    the median thicker (Ioffe & Szegedy 2015, Fig. 1(b, c)).

    Args:
      label: the panel title.
      series: dict with equal-length ``steps``, ``p15``, ``p50``, ``p85``.
      color: line colour (default: :func:`label_colors` of ``label``).
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = activation_percentiles("with BN", {"steps": [0, 10], "p15": [-1, -1],
        ...                                         "p50": [0, 0], "p85": [1, 1]})
    """
    ax = axes_or_new(ax, 4.2, 3.6)
    data = {k: as_array(series.get(k)) for k in ("steps", "p15", "p50", "p85")}
    check_lengths(f"series[{label!r}]", data)
    x, c = data["steps"], color or label_colors([label])[label]
    drawn = draw_band(ax, x, data["p15"], data["p85"], color=c, label=None, log=False,
                      alpha=0.15, edges=False)
    for key, style, lw in (("p15", "--", 1.0), ("p50", "-", 1.8), ("p85", ":", 1.2)):
        drawn |= draw_line(ax, x, data[key], color=c, label=f"{key[1:]}th percentile",
                           ls=style, lw=lw)
    tick_steps(ax, x)
    ax.set_title(label, fontsize=11)
    ax.set_xlabel("training step")
    ax.grid(True, alpha=0.3)
    if not drawn:
        no_data(ax)
    return readable_axes(ax)


def plot_activation_percentiles(series: Mapping[str, Mapping[str, Any]], *,
                                title: str | None = None, path: PathLike | None = None,
                                formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Ioffe & Szegedy (2015) Fig. 1(b, c): 15th, 50th, 85th percentiles of one unit's input.

    One panel per label (:func:`activation_percentiles`, shared y axis).

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
    fig = new_figure(4.2 * n + 0.5, 3.6)
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True, squeeze=False)[0])
    colors = label_colors(series)
    for ax, (label, s) in zip(axes, series.items()):
        activation_percentiles(label, s, color=colors[label], ax=ax)
    figure_legend(fig, axes)  # line styles name the percentiles; below the panels, off the data
    axes[0].set_ylabel("activation (input to the nonlinearity)")
    if not series:
        no_data(axes[0])
    return finish_figure(fig, path, formats, title=title)


def _densities(values: Sequence[np.ndarray], bins: int, clip_percentile: float
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Shared bin edges over the [clip, 100 − clip] percentiles of the pooled values, and each
    array's histogram density relative to ALL its values (trimmed tails are not re-spread)."""
    pooled = np.concatenate(values)
    lo, hi = np.percentile(pooled, [clip_percentile, 100 - clip_percentile])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    width = edges[1] - edges[0]
    return edges, [np.histogram(v, bins=edges)[0] / (max(v.size, 1) * width) for v in values]


def _ridges(ax: Axes, steps: Sequence[Any], edges: np.ndarray, densities: list[np.ndarray]
            ) -> None:
    """One filled ridge per step, the earliest on top (as the paper reads top to bottom)."""
    cmap, centers = colormaps["viridis"], 0.5 * (edges[:-1] + edges[1:])
    peak = max((d.max() for d in densities), default=1.0) or 1.0
    T = len(steps)
    for k, dens in enumerate(densities):
        color = cmap(k / max(T - 1, 1) * 0.9)
        base = T - 1 - k
        y = base + 1.6 * dens / peak
        ax.fill_between(centers, base, y, color=color, alpha=0.55, lw=0, zorder=k)
        ax.plot(centers, y, color=color, lw=1.0, zorder=k + 0.5)
    ax.set_yticks(np.arange(T)[::-1], [f"step {st}" for st in steps], fontsize=8)
    ax.set_ylim(-0.2, T + 0.8)
    ax.grid(True, axis="x", alpha=0.3)


def activation_histogram(label: str, series: Mapping[str, Any], *, bins: int = 60,
                         style: str = "ridge", clip_percentile: float = 0.5,
                         ax: Axes | None = None) -> Axes:
    """One label's activation distribution at each recorded step, coloured by step (viridis,
    early = dark); ``style="ridge"`` stacks the densities (y ticks name the steps),
    ``"overlay"`` overlays step-outline histograms. See :func:`plot_activation_histograms`.

    Args:
      label: the panel title.
      series: dict with ``steps`` (T ints) and ``values`` (T 1-D arrays; non-finite dropped).
      bins, style, clip_percentile: as in :func:`plot_activation_histograms`.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = activation_histogram("bn", {"steps": [0], "values": [np.random.randn(100)]})
    """
    if style not in ("ridge", "overlay"):
        raise ValueError(f"style must be 'ridge' or 'overlay', got {style!r}")
    ax = axes_or_new(ax, 4.2, 4.2)
    steps = list(series.get("steps", []))
    values = [as_array(v) for v in series.get("values", [])]
    if len(steps) != len(values):
        raise ValueError(f"series[{label!r}]: {len(steps)} steps but {len(values)} value arrays")
    values = [v[np.isfinite(v)] for v in values]
    ax.set_title(label, fontsize=11)
    ax.set_xlabel("activation value")
    if sum(v.size for v in values) == 0:
        no_data(ax)
        return readable_axes(ax)
    edges, densities = _densities(values, bins, clip_percentile)
    if style == "ridge":
        _ridges(ax, steps, edges, densities)
    else:
        cmap = colormaps["viridis"]
        for k, (step, dens) in enumerate(zip(steps, densities)):
            ax.stairs(dens, edges, color=cmap(k / max(len(steps) - 1, 1) * 0.9), lw=1.2,
                      label=f"step {step}")
        ax.set_ylabel("density")
        ax.legend(fontsize=7, frameon=False)
        ax.grid(True, alpha=0.3)
    return readable_axes(ax)


def plot_activation_histograms(series: Mapping[str, Mapping[str, Any]], *, bins: int = 60,
                               style: str = "ridge", clip_percentile: float = 0.5,
                               title: str | None = None, path: PathLike | None = None,
                               formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Santurkar et al. (2018) Fig. 1/2 style: one layer's activation distribution over training.

    One panel per label (:func:`activation_histogram`); the distribution at each recorded step is
    a histogram density coloured by step (viridis, early = dark). ``style="ridge"`` stacks the
    densities vertically, one ridge per step (the y tick labels name the steps);
    ``style="overlay"`` overlays step-outline histograms. All steps of a label share bins over the
    [``clip_percentile``, 100 − ``clip_percentile``] percentile range of that label's finite values
    (values outside are not drawn), so one outlier cannot squash the plot.

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
    fig = new_figure(4.2 * n + 0.8, 4.2)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
    for ax, (label, s) in zip(axes, series.items()):
        activation_histogram(label, s, bins=bins, style=style, clip_percentile=clip_percentile,
                             ax=ax)
    if not series:
        no_data(axes[0])
    return finish_figure(fig, path, formats, title=title)
