"""Training over steps: Santurkar et al.'s Figure 4 bands, training curves, seed comparisons.

Panels (each draws onto a given Axes, or a new one, and returns it):

- :func:`fig4_band` — S Fig. 4(a) loss band or 4(b) gradient-predictiveness band over η.
- :func:`effective_beta_curves` — S Fig. 4(c) effective β (with λ_max and gᵀHg/‖g‖² if measured).
- :func:`training_curve` — train loss, train accuracy or test accuracy against the step.
- :func:`compare_bands` — mean and spread over seeds of one metric, one band per normalization.

Figures: :func:`plot_fig4` (S Fig. 4), :func:`plot_training` (S Fig. 1/2/5, I Fig. 1(a)),
:func:`plot_compare`. Non-finite values (a diverged run; ``null`` in the JSON records) are skipped,
never an error; on log axes non-positive values are skipped too. A series of one point is a
labelled marker (or bar) with its value written.

Example:
    >>> from landscape.records import read_records
    >>> rows = read_records("runs/bn/probes.jsonl")
    >>> fig = plot_fig4({"batchnorm": summary_from_probe_rows(rows)}, path="figures/fig4")
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.figures._axes import (draw_band, draw_line, figure_legend, mark_diverged, no_data,
                                     readable_axes, tick_steps)
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import all_positive, as_array, check_lengths, moving_average

__all__ = ["compare_bands", "effective_beta_curves", "fig4_band", "plot_compare", "plot_fig4",
           "plot_training", "summary_from_probe_rows", "training_curve"]

#: The arrays of a Figure-4 summary that must share one length: the steps and the four band edges.
_BAND_FIELDS = ("steps", "loss_min", "loss_max", "grad_change_min", "grad_change_max",
                "effective_beta")
#: Panel → (lower edge, upper edge, y label, title) of the two Figure-4 bands.
_FIG4_BANDS = {
    "loss": ("loss_min", "loss_max", r"loss $\mathcal{L}(\theta-\eta g)$", "(a) loss landscape"),
    "grad_change": ("grad_change_min", "grad_change_max",
                    r"$\|\nabla\mathcal{L}(\theta-\eta g)-\nabla\mathcal{L}(\theta)\|_2$",
                    "(b) gradient predictiveness"),
}
#: Characters per title line of a step panel (≈ a 5-inch axis at font size 11).
_TITLE_CHARS = 64
#: Curvature fields drawn beside the effective β: (line style, legend name).
_CURVATURE = {"lambda_max": ("--", "λ_max(∇²L)"), "gradient_curvature": (":", "gᵀHg/‖g‖²")}


def _step_panel(ax: Axes, title: str, ylabel: str, drawn: bool, *, log: bool,
                steps: list[np.ndarray]) -> Axes:
    """Scale, title, labels and grid of a panel against the training ``steps`` drawn; a note
    when empty."""
    tick_steps(ax, np.concatenate(steps) if steps else np.zeros(0))
    if log:
        ax.set_yscale("log")
    # long lines (an experiment's settings) wrapped to the axis, not cut at the figure's edge
    ax.set_title("\n".join(textwrap.fill(line, _TITLE_CHARS) for line in title.split("\n")),
                 fontsize=11)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("training step")
    ax.grid(True, which="major", alpha=0.3)
    if not drawn:
        no_data(ax)
    return readable_axes(ax)


def fig4_band(models: Mapping[str, Mapping[str, Any]], panel: str, *, ax: Axes | None = None
              ) -> Axes:
    """Santurkar et al. (2018) Fig. 4(a) or (b): per model the band min_η..max_η, log y.

    With θ the parameters at a step, g = ∇L(θ) and η over the probe range: ``panel="loss"``
    draws L(θ − ηg), ``panel="grad_change"`` draws ‖∇L(θ − ηg) − ∇L(θ)‖₂. Two models: the
    paper's solid bands; more: lighter bands so overlaps stay readable.

    Args:
      models: label → summary (see :func:`plot_fig4`).
      panel: ``"loss"`` or ``"grad_change"``.
      ax: the Axes to draw on (None: a new figure).

    Returns:
      The Axes.

    Example:
        >>> ax = fig4_band({"bn": {"steps": [0], "loss_min": [1.0], "loss_max": [2.0]}}, "loss")
    """
    lo_key, hi_key, ylabel, title = _FIG4_BANDS[panel]
    ax = axes_or_new(ax, 4.5, 4.0)
    colors = label_colors(models)
    alpha = 0.35 if len(models) <= 2 else 0.12
    drawn, steps = False, []
    for label, summary in models.items():
        data = {k: as_array(summary.get(k)) for k in _BAND_FIELDS}
        check_lengths(f"models[{label!r}]", data)
        drawn |= draw_band(ax, data["steps"], data[lo_key], data[hi_key], color=colors[label],
                           label=label, log=True, alpha=alpha)
        steps.append(data["steps"])
    return _step_panel(ax, title, ylabel, drawn, log=True, steps=steps)


def effective_beta_curves(models: Mapping[str, Mapping[str, Any]], *, ax: Axes | None = None
                          ) -> Axes:
    """Santurkar et al. (2018) Fig. 4(c): effective β = max_η ‖∇L(θ − ηg) − g‖₂ / ‖ηg‖₂.

    One curve per model; where a summary has ``lambda_max`` or ``gradient_curvature`` (the true
    smoothness at the same steps) they are drawn dashed / dotted. Log y when every finite value
    is positive.

    Example:
        >>> ax = effective_beta_curves({"bn": {"steps": [0, 1], "effective_beta": [3.0, 2.5]}})
    """
    ax = axes_or_new(ax, 4.5, 4.0)
    colors = label_colors(models)
    log = all_positive(*[as_array(s.get(k)) for s in models.values()
                         for k in ("effective_beta", *_CURVATURE) if k in s])
    drawn, all_steps = False, []
    for label, summary in models.items():
        steps = as_array(summary.get("steps"))
        all_steps.append(steps)
        drawn |= draw_line(ax, steps, as_array(summary.get("effective_beta")),
                           color=colors[label], label=label, log=log, lw=1.2)
        for key, (style, name) in _CURVATURE.items():
            if key in summary:
                draw_line(ax, steps, as_array(summary[key]), color=colors[label],
                          label=f"{label}: {name}", log=log, lw=1.0, ls=style)
    ylabel = r"$\mathrm{max}_\eta\ \|\nabla\mathcal{L}(\theta-\eta g)-g\|_2\,/\,\|\eta g\|_2$"
    return _step_panel(ax, r'(c) "effective" $\beta$-smoothness', ylabel, drawn, log=log,
                       steps=all_steps)


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
    fig = new_figure(13.5, 4.0)
    axes = fig.subplots(1, 3, sharex=True)
    fig4_band(models, "loss", ax=axes[0])
    fig4_band(models, "grad_change", ax=axes[1])
    effective_beta_curves(models, ax=axes[2])
    mark_diverged(axes, diverged, label_colors(models))
    figure_legend(fig, axes)
    return finish_figure(fig, path, formats, title=title)


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
        values = as_array(row.get(source))
        return float(fn(values)) if values.size else math.nan

    out: dict[str, np.ndarray] = {"steps": np.asarray(steps, dtype=np.int64)}
    spec = (("loss_min", "loss", np.min), ("loss_max", "loss", np.max),
            ("grad_change_min", "grad_change", np.min), ("grad_change_max", "grad_change", np.max))
    for key, source, fn in spec:
        out[key] = np.asarray([reduce(by_step[s], key, source, fn) for s in steps], dtype=float)
    for key in ("effective_beta", "grad_norm", "loss0"):
        out[key] = np.asarray([scalar(by_step[s], key) for s in steps], dtype=float)
    return out


#: training_curve's series → (title, steps field, drawing options).
_CURVES = {"train_loss": ("train loss", "steps", dict(lw=1.0)),
           "train_accuracy": ("train accuracy", "steps", dict(lw=1.0)),
           "test_accuracy": ("test accuracy", "eval_steps", dict(lw=1.4, marker=".",
                                                                 markersize=4))}


def training_curve(curves: Mapping[str, Mapping[str, Any]], key: str, *, smooth: int = 0,
                   ax: Axes | None = None) -> Axes:
    """One training series per label against the step: ``train_loss`` (log y when positive),
    ``train_accuracy`` (both against ``steps``) or ``test_accuracy`` (against ``eval_steps``).

    Args:
      curves: label → dict with the series and its steps (see :func:`plot_training`).
      key: ``"train_loss"``, ``"train_accuracy"`` or ``"test_accuracy"``.
      smooth: trailing moving-average window of the per-step train series (0: raw).
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = training_curve({"bn": {"steps": [0, 1], "train_loss": [2.3, 2.0]}}, "train_loss")
    """
    title, steps_key, style = _CURVES[key]
    ax = axes_or_new(ax, 4.5, 4.0)
    colors = label_colors(curves)
    log = key == "train_loss" and all_positive(*[as_array(c.get(key)) for c in curves.values()])
    drawn, all_steps = False, []
    for label, c in curves.items():
        steps, y = as_array(c.get(steps_key)), as_array(c.get(key))
        if not y.size:
            continue
        all_steps.append(steps)
        check_lengths(f"curves[{label!r}]", {steps_key: steps, key: y})
        if steps_key == "steps":
            y = moving_average(y, smooth)
        drawn |= draw_line(ax, steps, y, color=colors[label], label=label, log=log, **style)
    return _step_panel(ax, title, title.split()[-1], drawn, log=log, steps=all_steps)


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
    fig = new_figure(13.5, 4.0)
    axes = fig.subplots(1, 3, sharex=True)
    for ax, key in zip(axes, _CURVES):
        training_curve(curves, key, smooth=smooth, ax=ax)
    mark_diverged(axes, diverged, label_colors(curves))
    figure_legend(fig, axes)
    return finish_figure(fig, path, formats, title=title)


def _auto_log(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> bool:
    """Log y when every finite mean/lo/hi value is positive and they span more than 20×."""
    vals = [d[k] for d in arrays.values() for k in ("mean", "lo", "hi")]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.zeros(0)
    return bool(finite.size and np.all(finite > 0) and finite.max() / finite.min() > 20)


def compare_bands(per_norm: Mapping[str, Mapping[str, Any]], metric: str, *,
                  log: bool | None = None, title: str | None = None, ax: Axes | None = None
                  ) -> Axes:
    """Mean ± spread over seeds of one metric vs step, one band and mean line per normalization.

    Args:
      per_norm: label → dict with equal-length ``steps``, ``mean``, ``lo``, ``hi`` (e.g. min/max or
        mean ± std over seeds, as the caller chooses) and optionally ``n`` (number of seeds, shown
        in the legend).
      metric: the metric's name (y label and default title).
      log: log y axis; ``None`` picks log when every finite value is positive and they span more
        than a factor of 20.
      title: panel title (default: ``metric``).
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = compare_bands({"batch": {"steps": [0, 1], "mean": [2, 1], "lo": [1.8, 0.9],
        ...                               "hi": [2.2, 1.1], "n": 3}}, "loss_max")
    """
    ax = axes_or_new(ax, 6.5, 4.2)
    colors = label_colors(per_norm)
    arrays = {lab: {k: as_array(d.get(k)) for k in ("steps", "mean", "lo", "hi")}
              for lab, d in per_norm.items()}
    for lab, d in arrays.items():
        check_lengths(f"per_norm[{lab!r}]", d)
    log = _auto_log(arrays) if log is None else log
    drawn = False
    for lab, d in arrays.items():
        n = per_norm[lab].get("n")
        name = f"{lab} (n={n})" if n is not None else lab
        drawn |= draw_band(ax, d["steps"], d["lo"], d["hi"], color=colors[lab], label=None,
                           log=log, alpha=0.25)
        drawn |= draw_line(ax, d["steps"], d["mean"], color=colors[lab], label=name, log=log,
                           lw=1.6)
    _step_panel(ax, title if title is not None else metric, metric, drawn, log=log,
                steps=[d["steps"] for d in arrays.values()])
    if drawn:
        ax.legend(fontsize=9, frameon=False)
    return ax


def _legend_outside(ax: Axes) -> None:
    """Move the axis' legend to the right of it, widening the figure (nine norms cover the data)."""
    legend = ax.get_legend()
    if legend is None:
        return
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    ax.figure.set_size_inches(8.2, 4.8)
    ax.figure.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=9)


def plot_compare(per_norm: Mapping[str, Mapping[str, Any]], metric: str, *,
                 log: bool | None = None, title: str | None = None,
                 diverged: Mapping[str, float | None] | None = None,
                 legend_outside: bool = False, path: PathLike | None = None,
                 formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """:func:`compare_bands` as a figure of its own, with divergence steps marked.

    Args:
      per_norm, metric, log: see :func:`compare_bands`.
      title: the axis title (default: ``metric``).
      diverged: label → divergence step, marked with a dashed line.
      legend_outside: the legend right of the axis, on a wider figure (many labels).
      path, formats: save the figure (see :func:`save_figure`).

    Returns:
      The figure (one axis).

    Example:
        >>> fig = plot_compare({"batch": {"steps": [0, 1], "mean": [2, 1], "lo": [1.8, 0.9],
        ...                               "hi": [2.2, 1.1], "n": 3}}, "loss_max")
    """
    ax = compare_bands(per_norm, metric, log=log, title=title, ax=new_figure(6.5, 4.2).subplots())
    mark_diverged([ax], diverged, label_colors(per_norm))
    if legend_outside:
        _legend_outside(ax)
    return finish_figure(ax.figure, path, formats)
