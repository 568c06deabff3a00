"""What every panel shares: readable tick labels, lines and bands that skip bad points, notes.

Numbers are written out in full: :class:`ReadableFormatter` replaces Matplotlib's default tick
formatter, so no axis relies on offset notation (``1e-7+2.141445897e5`` in a corner) or on a
``×10ⁿ`` corner label; :func:`readable_axes` is the one place that installs it. A series with one
drawable point, or a band of zero width, is drawn as a labelled marker (or bar) with its number
written beside it, since a lone dot on an axis says little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from landscape.figures._series import true_runs, valid_mask


class ReadableFormatter(ScalarFormatter):
    """Linear-axis tick labels written in full: no offset, no ``×10ⁿ`` corner label.

    Matplotlib's own :class:`~matplotlib.ticker.ScalarFormatter` with ``useOffset=False`` and
    scientific notation off: it still picks as many decimals as the tick spacing needs, so
    ticks 214144.58970 and 214144.58971 read as such rather than as ``0`` and ``1e-5`` plus an
    offset, and the labels of ordinary ranges look exactly as before.

    Example:
        >>> ax.yaxis.set_major_formatter(ReadableFormatter())
    """

    def __init__(self) -> None:
        super().__init__(useOffset=False)
        self.set_scientific(False)


def readable_number(value: float, digits: int = 6) -> str:
    """``value`` with ``digits`` significant digits, an exponent written short (``2.1e-7``).

    Example:
        >>> readable_number(214144.5897), readable_number(0.0123456789), readable_number(2.1e-7)
        ('214145', '0.0123457', '2.1e-7')
    """
    text = f"{float(value):.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def readable_range(lo: float, hi: float) -> str:
    """``"lo–hi"`` with the fewest significant digits (at least 4) that tell the ends apart.

    Example:
        >>> readable_range(214144.58970, 214144.58971)
        '214144.5897–214144.58971'
    """
    for digits in range(4, 17):
        low, high = readable_number(lo, digits), readable_number(hi, digits)
        if low != high:
            break
    return f"{low}–{high}"


def readable_axes(ax: Axes) -> Axes:
    """Give every linear axis of ``ax`` (x, y and a 3-D z) the :class:`ReadableFormatter`.

    Log, symlog and explicitly formatted axes keep their formatter (they use no offset). Call it
    after the axis scales are set: ``set_yscale`` installs a new formatter.
    """
    for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)):
        if axis is not None and isinstance(axis.get_major_formatter(), ScalarFormatter):
            axis.set_major_formatter(ReadableFormatter())
    return ax


def write_value(ax: Axes, x: float, y: float, text: str, *, color: str,
                left: bool = False) -> None:
    """Write ``text`` beside the data point (x, y): to its right, or its left with ``left``."""
    ax.annotate(text, xy=(x, y), xytext=(-6 if left else 6, 0), textcoords="offset points",
                ha="right" if left else "left", va="center", fontsize=8, color=color)


def draw_line(ax: Axes, x: np.ndarray, y: np.ndarray, *, color: str, label: str | None,
              log: bool = False, **kw: Any) -> bool:
    """Line over the valid points (NaN gaps split the line). True if anything was drawn.

    One valid point: a round marker with its value written beside it.
    """
    mask = valid_mask(x, y, log=log)
    if not mask.any():
        return False
    yy = np.where(mask, y, np.nan)
    lone = int(mask.sum()) == 1
    marker = kw.pop("marker", None)
    if lone and marker in (None, ".", ","):
        marker = "o"
    ax.plot(x, yy, color=color, label=label, marker=marker, **kw)
    if lone:
        i = int(np.flatnonzero(mask)[0])
        write_value(ax, x[i], y[i], readable_number(y[i]), color=color)
    return True


def _lone_band(ax: Axes, x: float, lo: float, hi: float, *, color: str, label: str | None
               ) -> None:
    """A band at one x: a vertical bar lo..hi with its ends written to its left (a line's value
    goes to the right), or a marker with its number if lo = hi."""
    if hi > lo:
        ax.vlines([x], lo, hi, color=color, lw=2.0, alpha=0.8, label=label)
        write_value(ax, x, (lo + hi) / 2, readable_range(lo, hi).replace("–", " –\n"),
                    color=color, left=True)
    else:
        ax.plot([x], [lo], marker="o", color=color, ls="", label=label)
        write_value(ax, x, lo, readable_number(lo), color=color, left=True)


def draw_band(ax: Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, color: str,
              label: str | None, log: bool, alpha: float = 0.35, edges: bool = True) -> bool:
    """Shaded band lo..hi over x, skipping invalid points (gaps stay gaps). True if drawn.

    ``edges`` draws thin lines along both edges. A stretch of one point is a labelled bar
    (:func:`_lone_band`); a stretch of zero width is a line, so it cannot vanish.
    """
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    mask = valid_mask(x, lo, hi, log=log)
    if not mask.any():
        return False
    first = True
    for sl in true_runs(mask):
        xs, low, high = x[sl], lo[sl], hi[sl]
        name = label if first else None
        if len(xs) == 1:
            _lone_band(ax, xs[0], low[0], high[0], color=color, label=name)
        else:
            ax.fill_between(xs, low, high, color=color, alpha=alpha, lw=0.0, label=name)
            if edges:
                ax.plot(xs, low, color=color, lw=0.6, alpha=0.9)
                ax.plot(xs, high, color=color, lw=0.6, alpha=0.9)
            elif np.all(high == low):
                ax.plot(xs, low, color=color, lw=1.0, alpha=0.9)
        first = False
    return True


def tick_steps(ax: Axes, steps: np.ndarray) -> None:
    """x ticks of a training-step axis at whole steps (not 0.5, 1.5, …); when every finite x is
    one step, one tick there (not 3.8 … 4.2 around step 4)."""
    finite = np.unique(steps[np.isfinite(steps)])
    if finite.size == 1:
        ax.set_xticks(finite)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def no_data(ax: Axes) -> None:
    """A grey "no finite data" note in the middle of an empty panel."""
    ax.text(0.5, 0.5, "no finite data", transform=ax.transAxes, ha="center", va="center",
            color="0.5", fontsize=9)


def mark_diverged(axes: Sequence[Axes], diverged: Mapping[str, float | None] | None,
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


def figure_legend(fig: Figure, axes: Sequence[Axes], ncols: int | None = None) -> None:
    """One legend for the whole figure, below the panels, from all axes' entries (deduplicated)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center",
                   ncols=ncols or min(len(seen), 6), frameon=False, fontsize=9)
