"""Internal covariate shift through gradients (Santurkar et al. 2018, Fig. 3, Definition 2.1).

G is a layer's gradient at step t, G′ the same after only the earlier layers took their step-t
update (same batch). :func:`ics_panel` draws ‖G − G′‖₂ or cos∠(G, G′) of one layer per model;
:func:`plot_ics` lays them out, one column per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.figures._axes import (draw_line, figure_legend, no_data, readable_axes,
                                     tick_steps)
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import all_positive, as_array, check_lengths

__all__ = ["ics_panel", "plot_ics"]


def ics_panel(series: Mapping[str, Mapping[str, Mapping[str, Any]]], layer: str, quantity: str,
              *, ax: Axes | None = None) -> Axes:
    """One layer's ``"l2"`` (‖G − G′‖₂, log y when positive) or ``"cosine"`` (cos∠(G, G′)) against
    the step, one line per model label that measured the layer.

    Args:
      series: label → {layer name → dict with equal-length ``steps``, ``l2``, ``cosine``}.
      layer: the layer to draw.
      quantity: ``"l2"`` or ``"cosine"``.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = ics_panel({"bn": {"layer #5": {"steps": [0, 10], "l2": [0.1, 0.2],
        ...                                     "cosine": [0.9, 0.8]}}}, "layer #5", "l2")
    """
    ax = axes_or_new(ax, 4.0, 3.0)
    colors = label_colors(series)
    log = quantity == "l2" and all_positive(
        *[as_array(per.get(layer, {}).get("l2")) for per in series.values()])
    drawn, steps = False, [np.zeros(0)]
    for label, per_layer in series.items():
        if layer not in per_layer:
            continue
        d = {k: as_array(per_layer[layer].get(k)) for k in ("steps", "l2", "cosine")}
        check_lengths(f"series[{label!r}][{layer!r}]", d)
        drawn |= draw_line(ax, d["steps"], d[quantity], color=colors[label], label=label,
                           log=log, lw=1.2)
        steps.append(d["steps"])
    tick_steps(ax, np.concatenate(steps))
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if not drawn:
        no_data(ax)
    return readable_axes(ax)


def plot_ics(series: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str | None = None,
             path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Santurkar et al. (2018) Fig. 3: ICS as the change of a layer's gradient (Definition 2.1).

    Top row ‖G − G′‖₂ (log y when positive), bottom row cos∠(G, G′), one column per layer (in the
    order first seen), one line per model label (:func:`ics_panel`).

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
    fig = new_figure(4.0 * ncol + 0.8, 6.2)
    axes = fig.subplots(2, ncol, sharex="col", squeeze=False)
    for j, layer in enumerate(layers):
        ics_panel(series, layer, "l2", ax=axes[0, j])
        ics_panel(series, layer, "cosine", ax=axes[1, j])
        axes[0, j].set_title(str(layer), fontsize=11)
        axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel(r"$\|G-G'\|_2$")
    axes[1, 0].set_ylabel(r"$\cos\angle(G, G')$")
    if not layers:
        no_data(axes[0, 0])
    figure_legend(fig, axes.ravel())
    return finish_figure(fig, path, formats, title=title)
