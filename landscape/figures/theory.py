"""Measurements against a theory's prediction: Theorem 4.1 of Santurkar et al. (2018) per unit,
and the gradient norm's scaling with depth in Pre-/Post-LN transformers (Xiong et al. 2020).

Panels (each onto a given Axes, or a new one, returned): :func:`theorem_4_1_panel`,
:func:`gradient_norm_against_depth`. Figures: :func:`plot_theorem_4_1`, :func:`plot_xiong_depth`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from landscape.figures._axes import no_data, readable_axes
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import as_array, valid_mask

__all__ = ["gradient_norm_against_depth", "plot_theorem_4_1", "plot_xiong_depth",
           "theorem_4_1_panel"]


def theorem_4_1_panel(name: str, layer: Mapping[str, Any], *, legend: bool = True,
                      ax: Axes | None = None) -> Axes:
    """Theorem 4.1 at one BatchNorm layer, log-log: each unit at (right-hand side, ‖∇_y L̂‖²)
    for the corrected 1/m form (dots) and the printed 1/√m form (crosses); points on or below
    the dashed diagonal satisfy the bound.

    Args:
      name: the layer's name (panel title, with its m).
      layer: ``{"lhs", "rhs", "rhs_printed", "m"}`` (per-unit arrays, see
        :func:`landscape.theory.check_theorem_4_1`).
      legend: name the two forms in a legend.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = theorem_4_1_panel("block0", {"lhs": [1.0], "rhs": [1.0], "rhs_printed": [0.5],
        ...                                   "m": 8})
    """
    ax = axes_or_new(ax, 3.3, 3.0)
    lhs, rhs, printed = (as_array(layer[k]) for k in ("lhs", "rhs", "rhs_printed"))
    ok = valid_mask(lhs, lhs, rhs, log=True)  # log=True checks > 0 on all but the first
    okp = valid_mask(lhs, lhs, printed, log=True)
    ax.loglog(rhs[ok], lhs[ok], "o", ms=3, color="tab:blue", label="corrected, 1/m")
    ax.loglog(printed[okp], lhs[okp], "x", ms=3, color="tab:red", label="printed, 1/√m")
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (lhs, rhs, printed)])
    if pos.size:
        ax.plot([pos.min(), pos.max()], [pos.min(), pos.max()], "k--", lw=0.8)
    else:
        no_data(ax)
    for axis in (ax.xaxis, ax.yaxis):  # minor log labels collide on narrow ranges
        axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=7)
    ax.set_title(f"{name} (m = {layer.get('m', '?')})", fontsize=9)
    ax.set_xlabel("right-hand side", fontsize=8)
    ax.set_ylabel(r"$\|\nabla_{y_j}\hat{\mathcal{L}}\|^2$", fontsize=8)
    if legend:
        ax.legend(fontsize=7)
    return readable_axes(ax)


def plot_theorem_4_1(layers: Mapping[str, Mapping[str, Any]], *, path: PathLike | None = None,
                     formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Theorem 4.1 per unit, one log-log panel per BatchNorm layer (:func:`theorem_4_1_panel`),
    up to four per row; the first panel names the two forms.

    Example:
        >>> plot_theorem_4_1({"block0": {"lhs": [1.0], "rhs": [1.0], "rhs_printed": [0.5], "m": 8}})
    """
    names = list(layers)
    cols = max(1, min(4, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = new_figure(3.3 * cols, 3.0 * rows + 0.5)
    for i, name in enumerate(names):
        theorem_4_1_panel(name, layers[name], legend=i == 0,
                          ax=fig.add_subplot(rows, cols, i + 1))
    return finish_figure(fig, path, formats, title="Theorem 4.1 per unit: on or below the "
                                                   "diagonal means the bound holds")


def gradient_norm_against_depth(slopes: Mapping[str, Mapping[str, Any]], *, title: str,
                                ax: Axes | None = None) -> Axes:
    """Log-log ‖∂L/∂W_last‖ against the number of layers, per LN position: the mean ± std points,
    the fitted power law and the theory's slope (dotted) (Xiong et al. 2020, Fig. 3).

    Args:
      slopes: position (``"pre"``, ``"post"``) → dict with ``depths``, ``mean``, ``std``,
        ``slope`` and ``theory_slope``
        (:func:`~landscape.experiments.transformer_norms.xiong_slopes`).
      title: the panel title.
      ax: the Axes to draw on (None: a new figure).
    """
    ax = axes_or_new(ax, 6.0, 4.5)
    colors = label_colors(list(slopes))
    for position, r in slopes.items():
        d, mean, c = np.asarray(r["depths"], float), np.asarray(r["mean"]), colors[position]
        ax.errorbar(d, mean, yerr=r["std"], color=c, marker="o", ls="", capsize=3,
                    label=f"{position.capitalize()}-LN (mean ± std, seeds × batches)")
        ax.plot(d, mean[0] * (d / d[0]) ** r["slope"], color=c, lw=1.2,
                label=f"fitted slope {r['slope']:.2f}")
        ax.plot(d, mean[0] * (d / d[0]) ** r["theory_slope"], color=c, lw=0.8, ls=":",
                label=f"theory slope {r['theory_slope']:g}")
    depths = next(iter(slopes.values()))["depths"]
    ax.set(xscale="log", yscale="log", xlabel="layers L", title=title,
           ylabel="‖∂L/∂W‖_F, last feed-forward layer")
    ax.set_xticks(depths, labels=[str(d) for d in depths])
    ax.xaxis.set_minor_formatter(NullFormatter())  # only the depths are labelled (no "3×10⁰")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return readable_axes(ax)


def plot_xiong_depth(xiong: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     init_names: Mapping[str, str], *, title: str,
                     path: PathLike | None = None,
                     formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """One :func:`gradient_norm_against_depth` panel per initialisation, side by side.

    Args:
      xiong: initialisation → position → slopes dict.
      init_names: initialisation → its description (panel title "init: …").
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).
    """
    fig = new_figure(6.0 * len(xiong), 4.5)
    for ax, (init, slopes) in zip(np.atleast_1d(fig.subplots(1, len(xiong))), xiong.items()):
        gradient_norm_against_depth(slopes, title=f"init: {init_names[init]}", ax=ax)
    return finish_figure(fig, path, formats, title=title, title_size=9)
