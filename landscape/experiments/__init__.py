"""The paper reproductions behind ``landscape reproduce NAME``, one module per figure.

:data:`EXPERIMENTS` maps each NAME to its builder ``builder(preset="quick", **overrides) ->
Experiment``; :func:`landscape.reproduce.run_experiment` trains and summarises it. The registry is
explicit: nothing registers itself on import, and no experiment imports ``landscape.reproduce``.

======================  ==========================================================================
``fig4``                :mod:`.fig4` — Santurkar Fig. 4, landscape probes, BN vs vanilla
``fig1``, ``fig2``      :mod:`.activations` — Santurkar Fig. 1 and 2 (activation distributions)
``ioffe-fig1``          :mod:`.activations` — Ioffe & Szegedy Fig. 1
``fig3``                :mod:`.fig3` — internal covariate shift (Definition 2.1)
``fig5``                :mod:`.fig5` — ℓp normalizations
``dln``                 :mod:`.dln` — the deep linear network
``compare``             :mod:`.compare` — every normalization × seeds
``theory``              :mod:`.theorems` — Theorems 4.1/4.2 on a trained BN net
``surfaces``            :mod:`.surfaces` — Li et al. 2-D slices, Goodfellow interpolation, PCA path
``spectrum``            :mod:`.spectrum` — Ghorbani et al. Hessian outliers, BN vs vanilla
``eos``                 :mod:`.eos` — Cohen et al. edge of stability under full-batch GD
``adam-eos``            :mod:`.adam_eos` — Cohen et al. 2022, full-batch Adam at 38/η
``blockwise``           :mod:`.blockwise` — Zhang et al. 2024, blockwise Hessian spectra at init
``skip``                :mod:`.skip` — Li et al. 2018, ResNets with / without shortcuts
``transformer-norms``   :mod:`.transformer_norms` — Xiong et al. 2020 Pre-/Post-LN; LN/RMS/DyT/none
======================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from landscape.experiments import (activations, adam_eos, blockwise, compare, dln, eos, fig3, fig4,
                                   fig5, spectrum, surfaces, theorems)
from landscape.experiments import skip, transformer_norms
from landscape.experiments.base import Experiment

__all__ = ["EXPERIMENTS", "Experiment", "register_experiment"]

EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    "fig4": fig4.fig4_experiment,
    "fig1": activations.fig1_experiment,
    "fig2": activations.fig2_experiment,
    "ioffe-fig1": activations.ioffe_fig1_experiment,
    "fig3": fig3.fig3_experiment,
    "fig5": fig5.fig5_experiment,
    "dln": dln.dln_experiment,
    "compare": compare.compare_experiment,
    "theory": theorems.theory_experiment,
    "surfaces": surfaces.surfaces_experiment,
    "eos": eos.eos_experiment,
    "adam-eos": adam_eos.adam_eos_experiment,
    "spectrum": spectrum.spectrum_experiment,
    "blockwise": blockwise.blockwise_experiment,
    "skip": skip.skip_experiment,
    "transformer-norms": transformer_norms.transformer_norms_experiment,
}


def register_experiment(name: str, builder: Callable[..., Experiment]) -> None:
    """Make ``landscape reproduce NAME`` (and :func:`landscape.reproduce.replot`) run ``builder``."""
    EXPERIMENTS[name] = builder
