"""Curvature over training and Hessian spectra: edge of stability (Cohen et al. 2021, 2022),
top eigenvalues and densities (Ghorbani et al. 2019), blockwise spectra (Zhang et al. 2024).

Panels (each onto a given Axes, or a new one, returned): :func:`full_batch_loss`,
:func:`sharpness_curves`, :func:`top_eigenvalues`, :func:`top_eigenspace_fraction`,
:func:`spectral_densities`, :func:`outlier_against_bulk`, :func:`blockwise_densities`,
:func:`js_distance_heatmap`. Figures: :func:`plot_eos`, :func:`plot_adam_eos`,
:func:`plot_spectrum`, :func:`plot_blockwise`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.figures._axes import draw_line, readable_axes, tick_steps
from landscape.figures._canvas import PathLike, axes_or_new, finish_figure, new_figure
from landscape.figures._colors import label_colors
from landscape.figures._series import as_array

__all__ = ["blockwise_densities", "full_batch_loss", "js_distance_heatmap", "outlier_against_bulk",
           "plot_adam_eos", "plot_blockwise", "plot_eos", "plot_spectrum", "sharpness_curves",
           "spectral_densities", "top_eigenspace_fraction", "top_eigenvalues"]

#: The spectrum experiment's series: BN blue, vanilla red, BN measured with running averages green.
SPECTRUM_COLORS = {"batchnorm": "#1f77b4", "vanilla": "#d62728",
                   "batchnorm_running_average": "#2ca02c"}


# ------------------------------------------------------------------------- edge of stability


def _all_steps(models: Mapping[str, Mapping[str, Any]], key: str = "steps") -> np.ndarray:
    """Every model's ``key`` steps in one array."""
    return np.concatenate([as_array(m.get(key)) for m in models.values()] or [np.zeros(0)])


def full_batch_loss(models: Mapping[str, Mapping[str, Any]], *,
                    legend: str = "η = {lr:.4g} (2/η = {threshold:.4g})",
                    ax: Axes | None = None) -> Axes:
    """The full-batch training loss against the step per step size η (log y).

    Args:
      models: label → dict with ``loss_steps``, ``train_loss``, ``lr`` and ``threshold``.
      legend: each curve's legend entry, formatted with the model's ``lr`` and ``threshold``.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = full_batch_loss({"lr0.01": {"loss_steps": [0, 1], "train_loss": [1.0, 0.9],
        ...                                  "lr": 0.01, "threshold": 200.0}})
    """
    ax = axes_or_new(ax, 7.5, 3.5)
    colors = label_colors(models)
    for label, m in models.items():
        draw_line(ax, as_array(m["loss_steps"]), as_array(m["train_loss"]), color=colors[label],
                  log=True, lw=1.0, label=legend.format(lr=m["lr"], threshold=m["threshold"]))
    tick_steps(ax, _all_steps(models, "loss_steps"))
    ax.set_yscale("log")
    ax.set_ylabel("train loss (full batch)")
    ax.set_title("(a) training loss")
    ax.legend(fontsize=8, frameon=False)
    return readable_axes(ax)


def sharpness_curves(models: Mapping[str, Mapping[str, Any]], key: str = "sharpness", *,
                     critical: bool = True,
                     threshold: Callable[[Mapping[str, Any]], float] = lambda m: m["threshold"],
                     threshold_width: float = 1.0, log: bool = False,
                     ax: Axes | None = None) -> Axes:
    """A curvature series against the step per model (dots), the critical sharpness 2/η_c
    (dotted ×, when ``critical`` and measured) and the model's stability threshold (dashed).

    Args:
      models: label → dict with ``steps``, ``key`` and optionally ``critical_sharpness``.
      key: the series: ``"sharpness"`` (λ_max(H)) or ``"preconditioned_sharpness"``.
      critical: draw ``critical_sharpness`` too.
      threshold: the horizontal line's height from the model's dict (default its ``threshold``).
      threshold_width: that line's width.
      log: log y.
      ax: the Axes to draw on (None: a new figure).

    Example:
        >>> ax = sharpness_curves({"lr0.01": {"steps": [0, 5], "sharpness": [10.0, 150.0],
        ...                                   "threshold": 200.0}})
    """
    ax = axes_or_new(ax, 7.5, 3.5)
    colors = label_colors(models)
    for label, m in models.items():
        c, steps = colors[label], as_array(m["steps"])
        draw_line(ax, steps, as_array(m[key]), color=c, label=None, log=log, lw=1.2,
                  marker=".", ms=3)
        crit = as_array(m.get("critical_sharpness", []))
        if critical and crit.size:
            draw_line(ax, steps, crit, color=c, label=None, log=log, lw=0.8, ls=":",
                      marker="x", ms=4)
        ax.axhline(threshold(m), color=c, ls="--", lw=threshold_width)
    tick_steps(ax, _all_steps(models))
    if log:
        ax.set_yscale("log")
    return readable_axes(ax)


def plot_eos(models: Mapping[str, Mapping[str, Any]], *, title: str | None = None,
             path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Cohen et al. (2021): (a) train loss vs step per η, (b) λ_max vs step with the critical
    sharpness (dotted ×) and dashed 2/η lines.

    Args:
      models: label → :func:`~landscape.experiments.eos.eos_summary` entry (``lr``,
        ``threshold``, ``loss_steps``, ``train_loss``, ``steps``, ``sharpness``,
        ``critical_sharpness``).
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).

    Example:
        >>> fig = plot_eos(summary["models"], path="runs/eos/eos")
    """
    fig = new_figure(7.5, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    full_batch_loss(models, ax=top)
    sharpness_curves(models, ax=bottom)
    bottom.set_ylabel(r"sharpness $\lambda_{\max}(\nabla^2 L)$")
    bottom.set_xlabel("step")
    bottom.set_title(r"(b) sharpness $\lambda_{\max}$; dotted ×: critical sharpness $2/\eta_c$; "
                     r"dashed: $2/\eta$")
    return finish_figure(fig, path, formats, title=title, title_size=10)


def plot_adam_eos(models: Mapping[str, Mapping[str, Any]], *, title: str | None = None,
                  path: PathLike | None = None, formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Cohen et al. (2022): (a) loss; (b) λ_max(P⁻¹H) with the dashed (2 + 2β₁)/((1 − β₁)η);
    (c) λ_max(H), the critical sharpness along Adam's step and the dashed 2/η.

    Args:
      models: label → :func:`~landscape.experiments.adam_eos.adam_eos_summary` entry.
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).
    """
    fig = new_figure(7.5, 9.0)
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    full_batch_loss(models, legend="η = {lr:.3g} (38/η = {threshold:.3g})", ax=top)
    sharpness_curves(models, "preconditioned_sharpness", critical=False, log=True, ax=middle)
    middle.set_ylabel(r"$\lambda_{\max}(P^{-1}H)$")
    middle.set_title(r"(b) preconditioned sharpness; dashed: $(2+2\beta_1)/((1-\beta_1)\eta)$")
    sharpness_curves(models, threshold=lambda m: 2 / m["lr"], threshold_width=0.8, log=True,
                     ax=bottom)
    bottom.set_ylabel("sharpness")
    bottom.set_xlabel("step")
    bottom.set_title(r"(c) solid: $\lambda_{\max}(H)$; dotted ×: critical sharpness $2/\eta_c$ "
                     r"along Adam's step; dashed: $2/\eta$", fontsize=9)
    return finish_figure(fig, path, formats, title=title, title_size=10)


# ------------------------------------------------------------------ spectra over training


def top_eigenvalues(models: Mapping[str, Mapping[str, Any]], *, ax: Axes | None = None) -> Axes:
    """The top-k Hessian eigenvalues against the step per series (λ₁ bold), symlog y.

    ``models``: label → dict with ``steps`` and ``eigenvalues`` (steps × k).
    """
    ax = axes_or_new(ax, 6.0, 4.2)
    for label, m in models.items():
        col = SPECTRUM_COLORS.get(label, "k")
        eig = np.asarray(m["eigenvalues"], float)
        if eig.size:
            for i in range(eig.shape[1]):
                draw_line(ax, as_array(m["steps"]), eig[:, i], color=col,
                          lw=1.4 if i == 0 else 0.6, alpha=1.0 if i == 0 else 0.5,
                          label=label if i == 0 else None)
    tick_steps(ax, _all_steps(models))
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set(title="(a) top-10 Hessian eigenvalues (λ₁ bold)", xlabel="step", ylabel="eigenvalue")
    ax.legend(fontsize=7, frameon=False)
    return readable_axes(ax)


def top_eigenspace_fraction(models: Mapping[str, Mapping[str, Any]], *, ax: Axes | None = None
                            ) -> Axes:
    """‖P₁₀g‖²/‖g‖², the gradient's share in the top-10 eigenspace, against the step.

    ``models``: label → dict with ``steps`` and ``top_fraction``.
    """
    ax = axes_or_new(ax, 6.0, 4.2)
    for label, m in models.items():
        draw_line(ax, as_array(m["steps"]), as_array(m["top_fraction"]),
                  color=SPECTRUM_COLORS.get(label, "k"), label=label, marker="o", ms=3)
    tick_steps(ax, _all_steps(models))
    ax.set(title=r"(b) gradient in the top-10 eigenspace $\|P_{10}g\|^2/\|g\|^2$", xlabel="step",
           ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, frameon=False)
    return readable_axes(ax)


def spectral_densities(densities: Mapping[str, Sequence[tuple[int, Any, Any]]], *,
                       ax: Axes | None = None) -> Axes:
    """Smoothed SLQ spectral densities (log y), the first step dotted and later ones solid.

    ``densities``: label → list of ``(step, grid, density)`` (e.g. the Gaussian-smoothed SLQ of
    :func:`landscape.probes.spectral_density`).
    """
    ax = axes_or_new(ax, 6.0, 4.2)
    for label, curves in densities.items():
        for j, (step, grid, dens) in enumerate(curves):
            ax.semilogy(grid, np.maximum(dens, 1e-12), color=SPECTRUM_COLORS.get(label, "k"),
                        ls="-" if j else ":", lw=1.0, label=f"{label}, step {step}")
    ax.set(title="(c) SLQ spectral density (dotted: early, solid: late)", xlabel="eigenvalue",
           ylabel="density (log)")
    ax.set_ylim(bottom=1e-8)
    ax.legend(fontsize=7, frameon=False)
    return readable_axes(ax)


def outlier_against_bulk(models: Mapping[str, Mapping[str, Any]], *, ax: Axes | None = None
                         ) -> Axes:
    """λ₁ (dots), λ₁₀ (dashed) and the SLQ 99 % quantile of the density (×) against the step.

    ``models``: label → dict with ``steps``, ``lambda_1``, ``lambda_k``, ``density_steps`` and
    ``bulk_edge_99``.
    """
    ax = axes_or_new(ax, 6.0, 4.2)
    for label, m in models.items():
        col = SPECTRUM_COLORS.get(label, "k")
        steps = as_array(m["steps"])
        draw_line(ax, steps, as_array(m["lambda_1"]), color=col, marker="o", ms=3,
                  label=f"{label} λ₁")
        draw_line(ax, steps, as_array(m["lambda_k"]), color=col, ls="--", lw=1.0,
                  label=f"{label} λ₁₀")
        ax.plot(m["density_steps"], m["bulk_edge_99"], color=col, ls="", marker="x", ms=7,
                label=f"{label} SLQ 99 % quantile")
    tick_steps(ax, _all_steps(models))
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set(title="(d) λ₁ against the bulk edge", xlabel="step", ylabel="eigenvalue")
    ax.legend(fontsize=7, frameon=False)
    return readable_axes(ax)


def plot_spectrum(models: Mapping[str, Mapping[str, Any]],
                  densities: Mapping[str, Sequence[tuple[int, Any, Any]]], *,
                  title: str | None = None, path: PathLike | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """Ghorbani et al. (2019) over training: (a) top eigenvalues, (b) the gradient's share in the
    top eigenspace, (c) the spectral densities (log y), (d) λ₁ against the bulk edge.

    Args:
      models: series → :func:`~landscape.experiments.spectrum.spectrum_summary` entry.
      densities: series → list of ``(step, grid, density)`` (see :func:`spectral_densities`).
      title: figure title.
      path, formats: save the figure (see :func:`save_figure`).
    """
    fig = new_figure(12.0, 8.5)
    (a, b), (c, d) = fig.subplots(2, 2)
    top_eigenvalues(models, ax=a)
    top_eigenspace_fraction(models, ax=b)
    spectral_densities(densities, ax=c)
    outlier_against_bulk(models, ax=d)
    return finish_figure(fig, path, formats, title=title, title_size=10)


# ------------------------------------------------------------------------ blockwise spectra


def blockwise_densities(result: Mapping[str, Any], *, title: str | None = None,
                        ax: Axes | None = None) -> Axes:
    """Each block's Hessian spectral density (log y) against the eigenvalue (Zhang et al. 2024,
    Fig. 3); ``result`` is :func:`~landscape.experiments.blockwise.blockwise_record`'s dict
    (``blocks``, ``grid``, ``densities``); ``title`` prefixes the panel title."""
    ax = axes_or_new(ax, 6.0, 4.8)
    names, grid = result["blocks"], np.asarray(result["grid"], float)
    densities = np.asarray(result["densities"], float)
    floor = 1e-6 * float(np.max(densities))
    for i, (name, density) in enumerate(zip(names, densities)):
        ax.semilogy(grid, np.maximum(density, floor * 1e-3), color=f"C{i % 10}",
                    ls="-" if i < 10 else "--", lw=1.1, label=name)
    ax.set_ylim(bottom=floor)
    prefix = f"{title}: " if title else ""
    ax.set(title=f"{prefix}blockwise Hessian spectra", xlabel="eigenvalue", ylabel="density (log)")
    ax.legend(fontsize=7, frameon=False, ncols=1 + len(names) // 8)
    return readable_axes(ax)


def js_distance_heatmap(result: Mapping[str, Any], *, title: str | None = None,
                        ax: Axes | None = None) -> Axes:
    """The blocks' Jensen–Shannon distance matrix on [0, 1], values written in the cells, its
    mean over pairs and the SLQ noise floor in the title (Zhang et al. 2024, Fig. 4)."""
    ax = axes_or_new(ax, 6.0, 4.8)
    names, matrix = result["blocks"], np.asarray(result["js_distances"], float)
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    size = max(4.0, min(9.0, 80.0 / max(len(names), 1)))
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=size,
                color="black" if value > 0.6 else "white")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    prefix = f"{title}: " if title else ""
    ax.set_title(f"{prefix}JS distance: mean over pairs {result['heterogeneity']:.3f}, "
                 f"SLQ noise floor {result.get('noise_floor', math.nan):.3f}", fontsize=10)
    return readable_axes(ax)


def plot_blockwise(records: Mapping[str, Mapping[str, Any]], *, path: PathLike | None = None,
                   formats: Sequence[str] = ("png", "pdf")) -> Figure:
    """One row per network: its blocks' densities and their JS-distance heatmap.

    Args:
      records: network name → :func:`~landscape.experiments.blockwise.blockwise_record` dict.
      path, formats: save the figure (see :func:`save_figure`).

    Example:
        >>> plot_blockwise({"transformer": t, "cnn": c}, path="runs/blockwise/blockwise")
    """
    fig = new_figure(13.0, 10.0 * max(len(records), 1) / 2)
    axes = fig.subplots(max(len(records), 1), 2, squeeze=False)
    for (dens_ax, heat_ax), (name, record) in zip(axes, records.items()):
        blockwise_densities(record, title=name, ax=dens_ax)
        js_distance_heatmap(record, title=name, ax=heat_ax)
    return finish_figure(fig, path, formats)
