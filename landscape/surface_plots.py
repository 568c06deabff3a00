"""Figures for loss surfaces (Li et al. 2018; Goodfellow et al. 2015).

Like :mod:`landscape.plotting`: every function takes plain numbers (NumPy arrays or anything
``np.asarray`` reads, e.g. the fields of a :class:`landscape.probes.LossSurface` or what
:func:`landscape.probes.load_surface` returns), builds a :class:`matplotlib.figure.Figure` on its
own Agg canvas (no ``pyplot``, no global state), returns it, and writes ``path.png`` and
``path.pdf`` when ``path`` is given. Non-finite values (a diverged corner of the grid) are masked,
never an error; on log scales non-positive values are masked too.

- :func:`plot_surface_1d` — one or several labelled 1-D slices (e.g. interpolation θ₀ → θ₁).
- :func:`plot_surface_contour` — filled contours of a 2-D slice, with an optional trajectory
  (e.g. :func:`landscape.probes.pca_directions`' ``projected``), start and end marked.
- :func:`plot_surface_3d` — the same 2-D slice as a 3-D surface.

Example:
    >>> s, record = load_surface("runs/vgg/surface_bn")
    >>> fig = plot_surface_contour(*s.coords, s.loss, path="figures/surface_bn",
    ...                            title=f"VGG-11, BN ({record['meta']['mode']})")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from landscape.plotting import _maybe_save, label_colors

__all__ = ["plot_surface_1d", "plot_surface_3d", "plot_surface_contour"]

PathLike = str | os.PathLike


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(a: Any, b: Any, values: Any, *, log: bool) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """Validated (A,), (B,), masked (A, B) arrays; non-finite (and, for log, ≤ 0) masked."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    z = np.asarray(values, np.float64)
    if a.ndim != 1 or b.ndim != 1 or z.shape != (a.size, b.size):
        raise ValueError(
            f"need a (A,), b (B,) and values (A, B) with values[i, j] at (a_i, b_j); got "
            f"{a.shape}, {b.shape}, {z.shape}.")
    bad = ~np.isfinite(z)
    if log:
        bad |= z <= 0
    return a, b, np.ma.masked_array(z, mask=bad)


def _levels(z: np.ma.MaskedArray, levels: int | Sequence[float], log: bool) -> np.ndarray | None:
    """Contour levels spanning the unmasked values (log-spaced when ``log``); None if no data."""
    if not isinstance(levels, (int, np.integer)):
        return np.asarray(levels, np.float64)
    data = z.compressed()
    if data.size == 0:
        return None
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    if log:
        return np.geomspace(lo, hi, int(levels))
    return np.linspace(lo, hi, int(levels))


def plot_surface_1d(curves: Mapping[str, tuple[Any, Any]], *, log_y: bool = False,
                    xlabel: str = "α", ylabel: str = "loss", title: str | None = None,
                    marks: Sequence[float] = (), path: PathLike | None = None,
                    formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Several labelled 1-D loss curves on one axes (e.g. Goodfellow et al.'s interpolation).

    Args:
      curves: ``{label: (x, y)}``, each a pair of equal-length 1-D arrays, e.g.
        ``{"batchnorm": (s.coords[0], s.loss)}``. Colours follow
        :func:`landscape.plotting.label_colors` (vanilla red, BatchNorm blue).
      log_y: logarithmic y axis (non-positive values are skipped).
      xlabel, ylabel, title: axis labels and figure title.
      marks: x positions to mark with thin vertical lines (e.g. ``(0, 1)`` for θ₀ and θ₁).
      path: when given, save ``path.png`` and ``path.pdf`` (``formats``).

    Returns:
      The :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: a curve's x and y differ in shape or are not 1-D.

    Reference:
      Goodfellow, Vinyals, Saxe (2015), Fig. 1; Li et al. (2018), Fig. 2–3 (1-D slices).

    Example::

        fig = plot_surface_1d({"vanilla": (alpha, loss_a), "batchnorm": (alpha, loss_b)},
                              log_y=True, marks=(0, 1), path="figures/interp")
    """
    fig = _new_figure((5.0, 3.6))
    ax = fig.add_subplot()
    colors = label_colors(list(curves))
    for label, (x, y) in curves.items():
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"curve {label!r}: x and y must be 1-D of equal length; got "
                             f"{x.shape} and {y.shape}.")
        keep = np.isfinite(x) & np.isfinite(y)
        if log_y:
            keep &= y > 0
        ax.plot(np.where(keep, x, np.nan), np.where(keep, y, np.nan), color=colors[label],
                label=str(label), lw=1.6)
    for m in marks:
        ax.axvline(float(m), color="0.6", lw=0.8, ls="--", zorder=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(frameon=False)
    return _maybe_save(fig, path, formats, title=title)


def plot_surface_contour(a: Any, b: Any, values: Any, *, trajectory: Any = None,
                         levels: int | Sequence[float] = 30, log: bool = False,
                         xlabel: str = "δ₁", ylabel: str = "δ₂", zlabel: str = "loss",
                         title: str | None = None, cmap: str = "viridis",
                         path: PathLike | None = None,
                         formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Filled contours of a 2-D slice ``values[i, j]`` at (a_i, b_j), contour lines and a colorbar.

    Args:
      a: (A,) coordinates along the first direction (x axis).
      b: (B,) coordinates along the second direction (y axis).
      values: (A, B) loss (or metric) with ``values[i, j]`` at (a_i, b_j) — the layout of
        :func:`landscape.probes.loss_surface`.
      trajectory: optional (T, 2) points (x, y) drawn as a line with dots, the first marked with
        a square ("start") and the last with a star ("end"), e.g. ``pca.projected``.
      levels: number of levels spanning the finite values, or explicit level values.
      log: log-spaced levels and a log colour scale (non-positive values masked).
      xlabel, ylabel, zlabel, title: labels (``zlabel`` on the colorbar).
      cmap: a Matplotlib colormap name.
      path: when given, save ``path.png`` and ``path.pdf`` (``formats``).

    Returns:
      The :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: shapes do not match, or ``trajectory`` is not (T, 2).

    Reference:
      Li et al. (2018), Figs. 5–6 (contours), Fig. 9 (trajectories on PCA directions).

    Example::

        fig = plot_surface_contour(*s.coords, s.loss, trajectory=pca.projected, log=True,
                                   path="figures/contour")
    """
    a, b, z = _grid(a, b, values, log=log)
    fig = _new_figure((5.2, 4.4))
    ax = fig.add_subplot()
    lv = _levels(z, levels, log)
    if lv is not None:
        X, Y = np.meshgrid(a, b, indexing="ij")
        norm = LogNorm(vmin=lv[0], vmax=lv[-1]) if log else None
        filled = ax.contourf(X, Y, z, levels=lv, cmap=cmap, norm=norm, extend="both")
        ax.contour(X, Y, z, levels=lv, colors="k", linewidths=0.4, alpha=0.5, norm=norm)
        bar = fig.colorbar(filled, ax=ax, label=zlabel)
        if log:  # a few 1-2-5 ticks, plain numbers (not one label per level)
            bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if trajectory is not None:
        t = np.asarray(trajectory, np.float64)
        if t.ndim != 2 or t.shape[1] != 2:
            raise ValueError(f"trajectory must be (T, 2); got {t.shape}.")
        ax.plot(t[:, 0], t[:, 1], color="#d62728", lw=1.2, marker="o", ms=3, label="trajectory")
        ax.plot(t[0, 0], t[0, 1], "s", color="white", mec="k", ms=7, label="start")
        ax.plot(t[-1, 0], t[-1, 1], "*", color="gold", mec="k", ms=12, label="end")
        ax.legend(frameon=True, fontsize="small", loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(a.min(), a.max()) if a.size > 1 else None
    ax.set_ylim(b.min(), b.max()) if b.size > 1 else None
    return _maybe_save(fig, path, formats, title=title)


def plot_surface_3d(a: Any, b: Any, values: Any, *, log: bool = False, xlabel: str = "δ₁",
                    ylabel: str = "δ₂", zlabel: str = "loss", title: str | None = None,
                    cmap: str = "viridis", elev: float = 30.0, azim: float = -60.0,
                    path: PathLike | None = None,
                    formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """A 3-D surface (``mpl_toolkits.mplot3d``) of a 2-D slice ``values[i, j]`` at (a_i, b_j).

    Args:
      a, b, values: as in :func:`plot_surface_contour`.
      log: plot log10(values) (non-positive and non-finite masked); the z label says so.
      xlabel, ylabel, zlabel, title: labels.
      cmap: a Matplotlib colormap name.
      elev, azim: the viewing angle in degrees.
      path: when given, save ``path.png`` and ``path.pdf`` (``formats``).

    Returns:
      The :class:`~matplotlib.figure.Figure`.

    Reference:
      Li et al. (2018), Figs. 1, 5 (3-D renderings).

    Example::

        fig = plot_surface_3d(*s.coords, s.loss, log=True, path="figures/surface3d")
    """
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)

    a, b, z = _grid(a, b, values, log=log)
    if log:
        z = np.ma.log10(z)
        zlabel = f"log10 {zlabel}"
    fig = _new_figure((5.6, 4.6))
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(a, b, indexing="ij")
    data = z.compressed()
    if data.size:
        # Masked cells are not drawn (NaN holes); colours span the finite values.
        ax.plot_surface(X, Y, z.filled(np.nan), cmap=cmap, vmin=float(data.min()),
                        vmax=float(data.max()), linewidth=0, antialiased=True,
                        rstride=1, cstride=1)
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_zlabel(zlabel)
    ax.zaxis.set_major_locator(MaxNLocator(5))
    return _maybe_save(fig, path, formats, title=title)
