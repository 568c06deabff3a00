"""The probe layer: pure, jit-compatible measurements of ``loss_fn(params, batch) -> scalar``.

Every probe takes the toolkit's one loss signature and returns a NamedTuple; none imports Flax.
The Flax NNX bridge (:mod:`landscape.bridge`) turns a model into that form once, at the edge.

Along the gradient (Santurkar et al. 2018, Figure 4) — :mod:`landscape.probes._step`:
    :func:`step_probe_fn`, :func:`lr_multiples`, :func:`grad_norms`, :func:`summarize`;
    the one-shot call and its measured layout — :mod:`landscape.probes._step_choice`:
    :func:`step_probe`, :func:`make_step_probe`, :func:`choose_strategy`,
    :func:`clear_strategy_cache`; the host-loop layout — :mod:`landscape.probes._step_host`.
The arithmetic (resolution ε, rounding and nondeterminism floors) —
:mod:`landscape.probes._precision`: :func:`arithmetic_eps`, :func:`noise_floor`.
Point and loop layouts (``strategy``) — :mod:`landscape.probes._strategy`: :data:`STRATEGIES`,
    :data:`CURVATURE_STRATEGIES`.
Critical sharpness λ_c = 2/η_c from loss evaluations only (Kalra et al. 2026) —
:mod:`landscape.probes._critical`: :func:`critical_sharpness`.
Internal covariate shift (Definition 2.1) — :mod:`landscape.probes._ics`:
    :func:`internal_covariate_shift`.
Activation statistics (Fig. 1/2, Ioffe Fig. 1) — :mod:`landscape.probes._activations`:
    :func:`activation_statistics`.
Parameter paths and masks — :mod:`landscape.probes._paths`:
    :func:`param_paths`, :func:`param_mask`, :func:`block_masks`, :func:`per_leaf_dict`.
Directions (Li et al. 2018; Goodfellow et al. 2015) — :mod:`landscape.probes._directions`:
    :func:`random_direction`, :func:`default_filter_axes`, :func:`curvature_directions`,
    :func:`interpolation_direction`, :func:`pca_directions`.
Loss surfaces — :mod:`landscape.probes._surface`:
    :func:`loss_surface`, :func:`save_surface`, :func:`load_surface`.
Curvature operators (Hessian, Gauss–Newton; ``mask=``; ``preconditioner=P`` for the
preconditioned, optimizer-aware P^{-1/2} C P^{-1/2}, Cohen et al. 2022) —
:mod:`landscape.probes._operators`: :func:`hvp`, :func:`gnvp`, :class:`GaussNewton`.
Eigenpairs by Lanczos — :mod:`landscape.probes._lanczos`: :func:`hessian_eigs`.
Spectral density by SLQ — :mod:`landscape.probes._density`: :func:`spectral_density`,
    :func:`smoothed_density`.
Trace by Hutchinson / Hutch++ — :mod:`landscape.probes._trace`: :func:`hessian_trace`.
Curvature along the gradient — :mod:`landscape.probes._gradient_curvature`:
    :func:`gradient_curvature`.
Preconditioners from optimizer states — :mod:`landscape.probes._precondition`:
    :func:`adam_preconditioner` (Adam/AdamW/NAdam/RMSProp).
Blockwise spectra and JS distances (Zhang et al. 2024) — :mod:`landscape.probes._blockwise`.
"""

from landscape.probes._activations import ActivationStats, activation_statistics
from landscape.probes._critical import CriticalSharpness, critical_sharpness
from landscape.probes._ics import ICS, internal_covariate_shift
from landscape.probes._paths import block_masks, param_mask, param_paths, path_str, per_leaf_dict
from landscape.probes._strategy import CURVATURE_STRATEGIES, STRATEGIES
from landscape.probes._precision import arithmetic_eps, noise_floor
from landscape.probes._step import (
    DEFAULT_FLOOR_FACTOR,
    GradNorms,
    StepProbe,
    grad_norms,
    lr_multiples,
    step_probe_fn,
    summarize,
)
from landscape.probes._step_choice import (
    StrategyChoice,
    choose_strategy,
    clear_strategy_cache,
    make_step_probe,
    step_probe,
)
from landscape.probes._directions import (
    DIRECTION_NORMS,
    PCADirections,
    curvature_directions,
    default_filter_axes,
    interpolation_direction,
    pca_directions,
    random_direction,
)
from landscape.probes._surface import (
    LossSurface,
    default_chunk_size,
    load_surface,
    loss_surface,
    resolve_surface_strategy,
    save_surface,
)
from landscape.probes._operators import GaussNewton, gnvp, hvp
from landscape.probes._lanczos import HessianEigs, hessian_eigs
from landscape.probes._density import SpectralDensity, smoothed_density, spectral_density
from landscape.probes._trace import HessianTrace, hessian_trace
from landscape.probes._gradient_curvature import GradientCurvature, gradient_curvature
from landscape.probes._precondition import PRECONDITIONER_KINDS, adam_preconditioner
from landscape.probes._blockwise import (
    BLOCK_RULES,
    BlockwiseSpectra,
    JSDistances,
    blockwise_spectra,
    js_distance,
    js_distance_matrix,
    named_blocks,
)

__all__ = [
    "ActivationStats",
    "CriticalSharpness",
    "critical_sharpness",
    "activation_statistics",
    "DEFAULT_FLOOR_FACTOR",
    "DIRECTION_NORMS",
    "ICS",
    "LossSurface",
    "PCADirections",
    "curvature_directions",
    "STRATEGIES",
    "StrategyChoice",
    "choose_strategy",
    "clear_strategy_cache",
    "GradNorms",
    "StepProbe",
    "block_masks",
    "default_chunk_size",
    "default_filter_axes",
    "grad_norms",
    "internal_covariate_shift",
    "interpolation_direction",
    "load_surface",
    "loss_surface",
    "lr_multiples",
    "make_step_probe",
    "noise_floor",
    "arithmetic_eps",
    "param_mask",
    "param_paths",
    "pca_directions",
    "path_str",
    "per_leaf_dict",
    "random_direction",
    "resolve_surface_strategy",
    "save_surface",
    "step_probe",
    "step_probe_fn",
    "summarize",
    "CURVATURE_STRATEGIES",
    "GaussNewton",
    "GradientCurvature",
    "HessianEigs",
    "HessianTrace",
    "SpectralDensity",
    "gnvp",
    "gradient_curvature",
    "hessian_eigs",
    "hessian_trace",
    "hvp",
    "smoothed_density",
    "spectral_density",
    "PRECONDITIONER_KINDS",
    "adam_preconditioner",
    "BLOCK_RULES",
    "BlockwiseSpectra",
    "JSDistances",
    "blockwise_spectra",
    "js_distance",
    "js_distance_matrix",
    "named_blocks",
]
