"""Figures on their own canvas, saved as files: no ``pyplot``, no global state, no GUI backend.

:func:`new_figure` builds a :class:`~matplotlib.figure.Figure` on its own Agg canvas (the global
backend is left alone); :func:`axes_or_new` gives a panel function its Axes; :func:`finish_figure`
titles a composed figure, makes every axis readable and saves it; :func:`save_figure` writes
``path.png``/``path.pdf``; :func:`stack_figures` pastes several figures into one page.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from landscape.figures._axes import readable_axes

PathLike = str | os.PathLike

#: Resolution of saved raster files (PNG) when :func:`save_figure` is given no ``dpi``.
DEFAULT_DPI: int = 150


def new_figure(width: float, height: float) -> Figure:
    """A ``width`` × ``height`` inch figure with constrained layout on its own Agg canvas.

    Example:
        >>> ax = new_figure(5.0, 3.6).add_subplot()
    """
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def axes_or_new(ax: Axes | None, width: float, height: float, **subplot: object) -> Axes:
    """``ax``, or the single Axes of a new ``width`` × ``height`` figure (``subplot`` options,
    e.g. ``projection="3d"``, go to ``add_subplot``)."""
    return new_figure(width, height).add_subplot(**subplot) if ax is None else ax


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


def finish_figure(fig: Figure, path: PathLike | None = None,
                  formats: Sequence[str] = ("png", "pdf"), *, title: str | None = None,
                  title_size: float | None = None) -> Figure:
    """Readable tick labels on every axis (colorbars too), the title (if any), and the files
    ``path.<fmt>`` when ``path`` is given; returns ``fig``."""
    for ax in fig.axes:
        readable_axes(ax)
    if title:
        fig.suptitle(title, **({} if title_size is None else {"fontsize": title_size}))
    if path is not None:
        save_figure(fig, path, formats)
    return fig


def stack_figures(figures: Sequence[Figure], path: PathLike) -> list[Path]:
    """Save ``figures`` one above the other as ``path.png``/``.pdf`` (rendered at the save dpi).

    Each figure is rendered to pixels and the renderings are pasted into one page, centred (raster
    in the PDF too; save the parts themselves for vector files).

    Example:
        >>> stack_figures([plot_training(curves), plot_activation_histograms(series)], "out/fig1")
    """
    images = []
    for fig in figures:
        fig.set_dpi(DEFAULT_DPI)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[..., :3])
    width = max(im.shape[1] for im in images)
    rows = []
    for im in images:
        pad = width - im.shape[1]
        rows.append(np.pad(im, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)), constant_values=255))
    page = np.concatenate(rows, axis=0)
    fig = Figure(figsize=(page.shape[1] / DEFAULT_DPI, page.shape[0] / DEFAULT_DPI))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(page, interpolation="none")
    ax.set_axis_off()
    return save_figure(fig, path, dpi=DEFAULT_DPI)
