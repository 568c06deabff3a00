"""``landscape analyze``'s figure: the probes of a run's checkpoints against the checkpoint step.

:func:`checkpoint_panel` draws one quantity's mean over minibatches with its 95 % band (or λ_max);
:func:`plot_checkpoint_analysis` lays out the loss range, the gradient change, the effective β and,
when measured, λ_max. With one checkpoint each panel is a bar (the band) and a dot with their
numbers written, not a lone dot on an unreadable axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.figures._axes import draw_band, draw_line, readable_axes, tick_steps
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure

__all__ = ["ANALYSIS_PANELS", "checkpoint_panel", "plot_checkpoint_analysis"]

#: The probe quantities of ``analysis.jsonl`` drawn as mean and band, with their panel titles.
ANALYSIS_PANELS = {"loss_range": "loss range over η", "grad_change": "max ‖∇L(θ−ηg) − g‖",
                   "effective_beta": "effective β"}
_BLUE = "#1f77b4"


def checkpoint_panel(records: Sequence[Mapping[str, Any]], quantity: str, *,
                     ax: Axes | None = None) -> Axes:
    """One quantity against the checkpoint step: for a :data:`ANALYSIS_PANELS` key its
    ``{q}_mean`` (dots and line) inside the ``{q}_lo``..``{q}_hi`` 95 % band over minibatches;
    for ``"lambda_max"`` the Hessian's top eigenvalue (black).

    Args:
      records: ``analysis.jsonl`` rows, one per checkpoint (``step`` and the quantity's fields;
        missing values are skipped).
      quantity: a key of :data:`ANALYSIS_PANELS` or ``"lambda_max"``.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = checkpoint_panel([{"step": 4, "effective_beta_mean": 2.0,
        ...                         "effective_beta_lo": 1.9, "effective_beta_hi": 2.1}],
        ...                       "effective_beta")
    """
    ax = axes_or_new(ax, 3.6, 3.2)
    steps = np.array([r["step"] for r in records], float)

    def get(key: str) -> np.ndarray:
        return np.array([r.get(key, math.nan) for r in records], float)

    if quantity == "lambda_max":
        draw_line(ax, steps, get("lambda_max"), color="k", label=None, marker="o", ms=3)
        title = "Hessian λ_max"
    else:
        draw_band(ax, steps, get(f"{quantity}_lo"), get(f"{quantity}_hi"), color=_BLUE,
                  label="95 % band", log=False, alpha=0.25, edges=False)
        draw_line(ax, steps, get(f"{quantity}_mean"), color=_BLUE, label=None, marker="o", ms=3)
        title = ANALYSIS_PANELS[quantity]
    ax.set(xlabel="checkpoint step", title=title)
    tick_steps(ax, steps)
    ax.grid(alpha=0.3)
    return readable_axes(ax)


def plot_checkpoint_analysis(records: Sequence[Mapping[str, Any]], mode: str, *,
                             path: PathLike | None = None, formats: Sequence[str] = ("png",)
                             ) -> Figure:
    """One :func:`checkpoint_panel` per probe quantity (and λ_max when any record has it).

    Args:
      records: ``analysis.jsonl`` rows.
      mode: the BatchNorm mode of the loss (figure title).
      path, formats: save the figure (see :func:`save_figure`).

    Example:
        >>> plot_checkpoint_analysis(read_records("runs/x/analysis/analysis.jsonl"), "batch_stats")
    """
    quantities = list(ANALYSIS_PANELS) + (["lambda_max"] if any("lambda_max" in r for r in records)
                                          else [])
    fig = new_figure(3.6 * len(quantities), 3.2)
    for ax, quantity in zip(fig.subplots(1, len(quantities), squeeze=False)[0], quantities):
        checkpoint_panel(records, quantity, ax=ax)
    return finish_figure(fig, path, formats, title=f"checkpoint analysis ({mode}; mean ± 95 % "
                                                   "band over minibatches)")
