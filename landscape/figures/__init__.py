"""Every figure of the toolkit: panels that draw onto a Matplotlib Axes, figures that compose them.

Each panel function takes plain numbers (mappings of label → arrays; no JAX) and an ``ax=``
(a new figure's Axes when None), draws, and returns the Axes; each ``plot_*`` function lays out
panels on a :class:`matplotlib.figure.Figure` of its own Agg canvas (no ``pyplot``: no global
figure state, no GUI backend), returns it and, when ``path`` is given, writes ``path.png`` and
``path.pdf`` through :func:`save_figure`. Non-finite values (a diverged run; ``null`` in the JSON
records) are skipped, never an error. Tick labels are numbers written in full — no axis uses
Matplotlib's offset notation — and a series of one point is a labelled marker (or bar) with its
value written. Colours follow :func:`label_colors`: vanilla red, BatchNorm blue, as in the paper.

============================  ===================================================================
:mod:`.training`              Santurkar Fig. 4 bands and effective β, training curves, seed bands
:mod:`.activations`           activation percentiles and histograms (S Fig. 1/2, I Fig. 1)
:mod:`.ics`                   internal covariate shift through gradients (S Fig. 3)
:mod:`.surfaces`              1-D lines, 2-D contours, 3-D views, convexity maps of loss surfaces
:mod:`.spectra`               edge of stability, Hessian spectra over training, blockwise spectra
:mod:`.theory`                Theorem 4.1 per unit; gradient norm against depth (Xiong et al.)
:mod:`.analysis`              ``landscape analyze``'s probes against the checkpoint step
============================  ===================================================================

Shared helpers: :func:`new_figure`, :func:`save_figure`, :func:`finish_figure`,
:func:`stack_figures`, :func:`label_colors`, :class:`ReadableFormatter` and
:func:`readable_number`, :func:`moving_average`.

Example:
    >>> from landscape import figures
    >>> fig = figures.new_figure(9.0, 4.0)
    >>> left, right = fig.subplots(1, 2)
    >>> figures.fig4_band(models, "loss", ax=left)
    >>> figures.effective_beta_curves(models, ax=right)
    >>> figures.finish_figure(fig, "out/fig4_ab")
"""

from landscape.figures._axes import ReadableFormatter, readable_axes, readable_number
from landscape.figures._canvas import (DEFAULT_DPI, finish_figure, new_figure, save_figure,
                                       stack_figures)
from landscape.figures._colors import label_colors
from landscape.figures._series import moving_average
from landscape.figures.activations import (activation_histogram, activation_percentiles,
                                           plot_activation_histograms,
                                           plot_activation_percentiles)
from landscape.figures.analysis import checkpoint_panel, plot_checkpoint_analysis
from landscape.figures.ics import ics_panel, plot_ics
from landscape.figures.spectra import (blockwise_densities, full_batch_loss, js_distance_heatmap,
                                       outlier_against_bulk, plot_adam_eos, plot_blockwise,
                                       plot_eos, plot_spectrum, sharpness_curves,
                                       spectral_densities, top_eigenspace_fraction,
                                       top_eigenvalues)
from landscape.figures.surfaces import (convexity_panel, plot_skip_overview, plot_surface_1d,
                                        plot_surface_3d, plot_surface_contour,
                                        plot_surfaces_overview, surface_3d, surface_contour,
                                        surface_curves)
from landscape.figures.theory import (gradient_norm_against_depth, plot_theorem_4_1,
                                      plot_xiong_depth, theorem_4_1_panel)
from landscape.figures.training import (compare_bands, effective_beta_curves, fig4_band,
                                        plot_compare, plot_fig4, plot_training,
                                        summary_from_probe_rows, training_curve)

__all__ = [
    "DEFAULT_DPI", "ReadableFormatter", "activation_histogram", "activation_percentiles",
    "blockwise_densities", "checkpoint_panel", "compare_bands", "convexity_panel",
    "effective_beta_curves", "fig4_band", "finish_figure", "full_batch_loss",
    "gradient_norm_against_depth", "ics_panel", "js_distance_heatmap", "label_colors",
    "moving_average", "new_figure", "outlier_against_bulk", "plot_activation_histograms",
    "plot_activation_percentiles", "plot_adam_eos", "plot_blockwise", "plot_checkpoint_analysis",
    "plot_compare", "plot_eos", "plot_fig4", "plot_ics", "plot_skip_overview", "plot_spectrum",
    "plot_surface_1d", "plot_surface_3d", "plot_surface_contour", "plot_surfaces_overview",
    "plot_theorem_4_1", "plot_training", "plot_xiong_depth", "readable_axes", "readable_number",
    "save_figure", "sharpness_curves", "spectral_densities", "stack_figures",
    "summary_from_probe_rows", "surface_3d", "surface_contour", "surface_curves",
    "theorem_4_1_panel", "top_eigenspace_fraction", "top_eigenvalues", "training_curve",
]
