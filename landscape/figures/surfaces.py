"""Loss surfaces (Li et al. 2018; Goodfellow et al. 2015): 1-D lines, 2-D contours, 3-D views.

Every function takes plain numbers (NumPy arrays or anything ``np.asarray`` reads, e.g. the fields
of a :class:`landscape.probes.LossSurface` or what :func:`landscape.probes.load_surface` returns).
Non-finite values (a diverged corner of the grid) are masked, never an error; on log scales
non-positive values are masked too.

Panels (each onto a given Axes, or a new one, returned): :func:`surface_curves` (labelled 1-D
slices, e.g. the interpolation θ₀ → θ₁), :func:`surface_contour` (filled contours of a 2-D slice
with its colorbar and an optional trajectory), :func:`surface_3d`, :func:`convexity_panel`
(|λ_min/λ_max| over a plane). Figures: :func:`plot_surface_1d`, :func:`plot_surface_contour`,
:func:`plot_surface_3d`, and the overviews of ``landscape reproduce surfaces``
(:func:`plot_surfaces_overview`) and ``skip`` (:func:`plot_skip_overview`).

Example:
    >>> s, record = load_surface("runs/vgg/surface_bn")
    >>> fig = plot_surface_contour(*s.coords, s.loss, path="figures/surface_bn",
    ...                            title=f"VGG-11, BN ({record['meta']['mode']})")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from landscape.figures._axes import draw_line, readable_axes
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import as_array

__all__ = ["convexity_panel", "plot_skip_overview", "plot_surface_1d", "plot_surface_3d",
           "plot_surface_contour", "plot_surfaces_overview", "surface_3d", "surface_contour",
           "surface_curves"]


def _grid(a: Any, b: Any, values: Any, *, log: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
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


def surface_curves(curves: Mapping[str, tuple[Any, Any]], *, log_y: bool = False,
                   xlabel: str = "α", ylabel: str = "loss", marks: Sequence[float] = (),
                   legend: bool = True, colors: Mapping[str, str] | None = None,
                   ax: Axes | None = None) -> Axes:
    """Several labelled 1-D loss curves on one Axes (e.g. Goodfellow et al.'s interpolation).

    Args:
      curves: ``{label: (x, y)}``, each a pair of equal-length 1-D arrays. Colours follow
        :func:`label_colors` (vanilla red, BatchNorm blue).
      log_y: logarithmic y axis (non-positive values are skipped).
      xlabel, ylabel: axis labels.
      marks: x positions marked with thin dashed lines (e.g. ``(0, 1)`` for θ₀ and θ₁).
      legend: name the curves in a legend.
      colors: label → colour (default: :func:`label_colors` of the labels).
      ax: the Axes to draw on (None: a new figure).

    Raises:
      ValueError: a curve's x and y differ in shape or are not 1-D.

    Example:
        >>> ax = surface_curves({"bn": (alpha, loss)}, log_y=True, marks=(0, 1))
    """
    ax = axes_or_new(ax, 5.0, 3.6)
    colors = colors or label_colors(list(curves))
    for label, (x, y) in curves.items():
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"curve {label!r}: x and y must be 1-D of equal length; got "
                             f"{x.shape} and {y.shape}.")
        draw_line(ax, x, y, color=colors[label], label=str(label), log=log_y, lw=1.6)
    for m in marks:
        ax.axvline(float(m), color="0.6", lw=0.8, ls="--", zorder=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if curves and legend:
        ax.legend(frameon=False)
    return readable_axes(ax)


def plot_surface_1d(curves: Mapping[str, tuple[Any, Any]], *, log_y: bool = False,
                    xlabel: str = "α", ylabel: str = "loss", title: str | None = None,
                    marks: Sequence[float] = (), path: PathLike | None = None,
                    formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """:func:`surface_curves` as a figure of its own.

    Args:
      curves, log_y, xlabel, ylabel, marks: see :func:`surface_curves`.
      title: figure title.
      path: when given, save ``path.png`` and ``path.pdf`` (``formats``).

    Returns:
      The :class:`~matplotlib.figure.Figure`.

    Reference:
      Goodfellow, Vinyals, Saxe (2015), Fig. 1; Li et al. (2018), Fig. 2–3 (1-D slices).

    Example::

        fig = plot_surface_1d({"vanilla": (alpha, loss_a), "batchnorm": (alpha, loss_b)},
                              log_y=True, marks=(0, 1), path="figures/interp")
    """
    ax = surface_curves(curves, log_y=log_y, xlabel=xlabel, ylabel=ylabel, marks=marks)
    return finish_figure(ax.figure, path, formats, title=title)


def _colorbar(filled: Any, ax: Axes, *, label: str | None, log: bool) -> None:
    """The colorbar of a filled contour; on a log scale a few 1-2-5 ticks as plain numbers."""
    bar = ax.figure.colorbar(filled, ax=ax, **({} if label is None else {"label": label}))
    if log:
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())


def _trajectory(ax: Axes, trajectory: Any, *, compact: bool) -> None:
    """A (T, 2) path as a line with dots, its start a square and its end a star."""
    t = np.asarray(trajectory, np.float64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"trajectory must be (T, 2); got {t.shape}.")
    dot, square, star, lw = (2.5, 6, 10, 1.0) if compact else (3, 7, 12, 1.2)
    ax.plot(t[:, 0], t[:, 1], color="#d62728", lw=lw, marker="o", ms=dot, label="trajectory")
    ax.plot(t[0, 0], t[0, 1], "s", color="white", mec="k", ms=square, label="start")
    ax.plot(t[-1, 0], t[-1, 1], "*", color="gold", mec="k", ms=star, label="end")
    if not compact:
        ax.legend(frameon=True, fontsize="small", loc="best")


def surface_contour(a: Any, b: Any, values: Any, *, trajectory: Any = None,
                    levels: int | Sequence[float] = 30, log: bool = False,
                    xlabel: str = "δ₁", ylabel: str = "δ₂", zlabel: str | None = "loss",
                    cmap: str = "viridis", compact: bool = False, ax: Axes | None = None) -> Axes:
    """Filled contours of a 2-D slice ``values[i, j]`` at (a_i, b_j), contour lines, a colorbar.

    Args:
      a: (A,) coordinates along the first direction (x axis).
      b: (B,) coordinates along the second direction (y axis).
      values: (A, B) loss (or metric) with ``values[i, j]`` at (a_i, b_j) — the layout of
        :func:`landscape.probes.loss_surface`.
      trajectory: optional (T, 2) points (x, y) drawn as a line with dots, the first marked with
        a square ("start") and the last with a star ("end"), e.g. ``pca.projected``.
      levels: number of levels spanning the finite values, or explicit level values.
      log: log-spaced levels and a log colour scale (non-positive values masked).
      xlabel, ylabel, zlabel: labels (``zlabel`` on the colorbar; None: none).
      cmap: a Matplotlib colormap name.
      compact: thinner lines, smaller markers and no legend, for a panel among many.
      ax: the Axes to draw on (None: a new figure).

    Raises:
      ValueError: shapes do not match, or ``trajectory`` is not (T, 2).

    Reference:
      Li et al. (2018), Figs. 5–6 (contours), Fig. 9 (trajectories on PCA directions).

    Example:
        >>> ax = surface_contour(*s.coords, s.loss, trajectory=pca.projected, log=True)
    """
    a, b, z = _grid(a, b, values, log=log)
    ax = axes_or_new(ax, 5.2, 4.4)
    lv = _levels(z, levels, log)
    if lv is not None:
        X, Y = np.meshgrid(a, b, indexing="ij")
        norm = LogNorm(vmin=lv[0], vmax=lv[-1]) if log else None
        filled = ax.contourf(X, Y, z, levels=lv, cmap=cmap, norm=norm, extend="both")
        ax.contour(X, Y, z, levels=lv, colors="k", linewidths=0.3 if compact else 0.4,
                   alpha=0.5, norm=norm)
        _colorbar(filled, ax, label=zlabel, log=log)
    if trajectory is not None:
        _trajectory(ax, trajectory, compact=compact)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if a.size > 1:
        ax.set_xlim(a.min(), a.max())
    if b.size > 1:
        ax.set_ylim(b.min(), b.max())
    return readable_axes(ax)


def plot_surface_contour(a: Any, b: Any, values: Any, *, trajectory: Any = None,
                         levels: int | Sequence[float] = 30, log: bool = False,
                         xlabel: str = "δ₁", ylabel: str = "δ₂", zlabel: str = "loss",
                         title: str | None = None, cmap: str = "viridis",
                         path: PathLike | None = None,
                         formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """:func:`surface_contour` as a figure of its own.

    Args:
      a, b, values, trajectory, levels, log, xlabel, ylabel, zlabel, cmap: see
        :func:`surface_contour`.
      title: figure title.
      path: when given, save ``path.png`` and ``path.pdf`` (``formats``).

    Returns:
      The :class:`~matplotlib.figure.Figure`.

    Raises:
      ValueError: shapes do not match, or ``trajectory`` is not (T, 2).

    Example::

        fig = plot_surface_contour(*s.coords, s.loss, trajectory=pca.projected, log=True,
                                   path="figures/contour")
    """
    ax = surface_contour(a, b, values, trajectory=trajectory, levels=levels, log=log,
                         xlabel=xlabel, ylabel=ylabel, zlabel=zlabel, cmap=cmap)
    return finish_figure(ax.figure, path, formats, title=title)


def surface_3d(a: Any, b: Any, values: Any, *, log: bool = False, xlabel: str = "δ₁",
               ylabel: str = "δ₂", zlabel: str = "loss", cmap: str = "viridis",
               elev: float = 30.0, azim: float = -60.0, ax: Axes | None = None) -> Axes:
    """A 3-D surface (``mpl_toolkits.mplot3d``) of a 2-D slice ``values[i, j]`` at (a_i, b_j).

    Args:
      a, b, values: as in :func:`surface_contour`.
      log: plot log10(values) (non-positive and non-finite masked); the z label says so.
      xlabel, ylabel, zlabel: labels.
      cmap: a Matplotlib colormap name.
      elev, azim: the viewing angle in degrees.
      ax: a 3-D Axes (``projection="3d"``) to draw on (None: a new figure).

    Reference:
      Li et al. (2018), Figs. 1, 5 (3-D renderings).

    Example:
        >>> ax = surface_3d(*s.coords, s.loss, log=True)
    """
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)

    a, b, z = _grid(a, b, values, log=log)
    if log:
        z = np.ma.log10(z)
        zlabel = f"log10 {zlabel}"
    ax = axes_or_new(ax, 5.6, 4.6, projection="3d")
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
    return readable_axes(ax)


def plot_surface_3d(a: Any, b: Any, values: Any, *, log: bool = False, xlabel: str = "δ₁",
                    ylabel: str = "δ₂", zlabel: str = "loss", title: str | None = None,
                    cmap: str = "viridis", elev: float = 30.0, azim: float = -60.0,
                    path: PathLike | None = None,
                    formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """:func:`surface_3d` as a figure of its own (``path``: save ``path.png``/``.pdf``).

    Example::

        fig = plot_surface_3d(*s.coords, s.loss, log=True, path="figures/surface3d")
    """
    ax = surface_3d(a, b, values, log=log, xlabel=xlabel, ylabel=ylabel, zlabel=zlabel,
                    cmap=cmap, elev=elev, azim=azim)
    return finish_figure(ax.figure, path, formats, title=title)


def convexity_panel(a: Any, b: Any, ratio: Any, *, vmax: float, label: str,
                  ax: Axes | None = None) -> Axes:
    """|λ_min/λ_max| of the Hessian over a plane, ``ratio[i, j]`` at (a_i, b_j), on [0, vmax]
    with a colorbar: ≈ 0 convex, large where the negative curvature is strong (Li et al. 2018,
    Sec. 6, Fig. 7). ``label`` names the model in the title.

    Example:
        >>> ax = convexity_panel(m["a"], m["b"], m["ratio"], vmax=1.0, label="resnet8")
    """
    ax = axes_or_new(ax, 4.0, 3.6)
    mesh = ax.pcolormesh(as_array(a), as_array(b), np.asarray(ratio, np.float64).T, vmin=0,
                         vmax=vmax, cmap="viridis", shading="nearest")
    ax.figure.colorbar(mesh, ax=ax, extend="max")  # points above vmax take the top colour
    ax.set(title=f"{label}: |λ_min/λ_max|", xlabel="δ₁", ylabel="δ₂")
    return readable_axes(ax)


def _missing(ax: Axes, why: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.4",
            fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_surfaces_overview(models: Mapping[str, Mapping[str, Any]], *, title: str | None = None,
                           path: PathLike | None = None,
                           formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """One row per model: the random 2-D slice, the interpolation θ₀ → θ_final (log y), and the
    loss on the trajectory's PCA plane with the trajectory (``landscape reproduce surfaces``).

    Args:
      models: label → dict with ``slice`` ``(a, b, loss)``, ``line`` ``(alpha, loss)`` and
        ``pca``: ``(a, b, loss, trajectory, explained_variance_ratio)``, or ``None`` with
        ``pca_missing`` saying why in a line or two (the panel then says so).
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).

    Example:
        >>> plot_surfaces_overview({"bn": {"slice": (a, b, z), "line": (alpha, loss),
        ...                                "pca": None, "pca_missing": "one checkpoint"}})
    """
    colors = label_colors(list(models))
    fig = new_figure(12, 3.6 * len(models))
    axes = fig.subplots(len(models), 3, squeeze=False)
    for row, (label, m) in zip(axes, models.items()):
        surface_contour(*m["slice"], levels=20, log=True, zlabel=None, compact=True, ax=row[0])
        row[0].set(title=f"{label}: random 2-D slice", xlabel="δ₁", ylabel="δ₂")
        surface_curves({label: m["line"]}, log_y=True, marks=(0, 1), legend=False,
                       colors=colors, ax=row[1])
        row[1].set(title=f"{label}: θ₀ → θ_final", xlabel="α", ylabel="loss")
        if m.get("pca") is None:
            _missing(row[2], f"no PCA plane:\n{m.get('pca_missing', 'not measured')}")
            row[2].set(title=f"{label}: PCA plane")
            continue
        a, b, loss, trajectory, ev = m["pca"]
        surface_contour(a, b, loss, trajectory=trajectory, levels=20, log=True, zlabel=None,
                        compact=True, ax=row[2])
        row[2].set(title=f"{label}: PCA plane ({ev[0]:.0%}, {ev[1]:.0%})", xlabel="PC 1",
                   ylabel="PC 2")
    return finish_figure(fig, path, formats, title=title)


def plot_skip_overview(pairs: Sequence[Sequence[str]], slices: Mapping[str, tuple[Any, Any, Any]],
                       convexity: Mapping[str, Mapping[str, Any]], *, title: str,
                       path: PathLike | None = None,
                       formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Per depth (rows): the random 2-D slice with and without shortcuts, then both convexity
    maps on one colour scale (Li et al. 2018, Figs. 5 and 7; ``landscape reproduce skip``).

    Args:
      pairs: per row the two model labels (e.g. ``("resnet8", "resnet8-noshort")``).
      slices: label → ``(a, b, loss)`` of its filter-normalized slice.
      convexity: label → dict with ``a``, ``b``, ``ratio``
        (:func:`~landscape.experiments.skip.convexity_map`).
      title: the first line of the figure title.
      path, formats: save the figure (see :func:`save_figure`).
    """
    fig = new_figure(16, 3.6 * max(1, len(pairs)))
    axes = fig.subplots(max(1, len(pairs)), 4, squeeze=False)
    # one scale for all maps, to their 95th percentile: a lone point at 10³ would flatten the rest
    ratios = np.concatenate([np.ravel(np.asarray(c["ratio"], np.float64)) for c in convexity.values()])
    finite = ratios[np.isfinite(ratios)]
    vmax = max(float(np.percentile(finite, 95)) if finite.size else 0.0, 1e-3)
    for row, labels in zip(axes, pairs):
        for ax, label in zip(row[:2], labels):
            surface_contour(*slices[label], levels=20, log=True, zlabel=None, compact=True, ax=ax)
            ax.set(title=f"{label}: loss, random 2-D slice", xlabel="δ₁", ylabel="δ₂")
        for ax, label in zip(row[2:], labels):
            c = convexity[label]
            convexity_panel(c["a"], c["b"], c["ratio"], vmax=vmax, label=label, ax=ax)
    return finish_figure(fig, path, formats, title=f"{title}\nblue: convex (|λ_min/λ_max| ≈ 0); "
                                                   "yellow: strong negative curvature")
