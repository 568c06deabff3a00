"""The probe layer: pure, jit-compatible measurements of ``loss_fn(params, batch) -> scalar``.

Every probe takes the toolkit's one loss signature and returns a NamedTuple; none imports Flax.
The Flax NNX bridge (:mod:`landscape.bridge`) turns a model into that form once, at the edge.

Along the gradient (Santurkar et al. 2018, Figure 4) — :mod:`landscape.probes._step`:
    :func:`step_probe`, :func:`make_step_probe`, :func:`lr_multiples`, :func:`grad_norms`,
    :func:`noise_floor`, :func:`arithmetic_eps`, :func:`summarize`.
Critical sharpness λ_c = 2/η_c from loss evaluations only (Kalra et al. 2026) —
:mod:`landscape.probes._critical`: :func:`critical_sharpness`.
Internal covariate shift (Definition 2.1) — :mod:`landscape.probes._ics`:
    :func:`internal_covariate_shift`.
Activation statistics (Fig. 1/2, Ioffe Fig. 1) — :mod:`landscape.probes._activations`:
    :func:`activation_statistics`.
Parameter paths and masks — :mod:`landscape.probes._paths`:
    :func:`param_paths`, :func:`param_mask`, :func:`block_masks`, :func:`per_leaf_dict`.
Loss surfaces (Li et al. 2018; Goodfellow et al. 2015) — :mod:`landscape.probes._surface`:
    :func:`random_direction`, :func:`default_filter_axes`, :func:`interpolation_direction`,
    :func:`pca_directions`, :func:`loss_surface`, :func:`save_surface`, :func:`load_surface`.
Curvature (Hessian / Gauss–Newton eigenpairs, trace, spectral density) —
:mod:`landscape.probes._curvature`:
    :func:`hessian_eigs`, :func:`hessian_trace`, :func:`spectral_density`, :func:`hvp`,
    :func:`gnvp`, :func:`gradient_curvature`; ``preconditioner=P`` for the preconditioned
    (optimizer-aware) operator P^{-1/2} C P^{-1/2} (Cohen et al. 2022).
Preconditioners from optimizer states — :mod:`landscape.probes._precondition`:
    :func:`adam_preconditioner` (Adam/AdamW/NAdam/RMSProp).
"""

from landscape.probes._activations import ActivationStats, activation_statistics
from landscape.probes._critical import CriticalSharpness, critical_sharpness
from landscape.probes._ics import ICS, internal_covariate_shift
from landscape.probes._paths import block_masks, param_mask, param_paths, path_str, per_leaf_dict
from landscape.probes._surface import (
    DIRECTION_NORMS,
    LossSurface,
    PCADirections,
    curvature_directions,
    default_chunk_size,
    default_filter_axes,
    interpolation_direction,
    load_surface,
    loss_surface,
    pca_directions,
    random_direction,
    resolve_surface_strategy,
    save_surface,
)
from landscape.probes._step import (
    DEFAULT_FLOOR_FACTOR,
    STRATEGIES,
    GradNorms,
    StepProbe,
    arithmetic_eps,
    grad_norms,
    lr_multiples,
    make_step_probe,
    noise_floor,
    step_probe,
    summarize,
)
from landscape.probes._curvature import (
    CURVATURE_STRATEGIES,
    GaussNewton,
    GradientCurvature,
    HessianEigs,
    HessianTrace,
    SpectralDensity,
    gnvp,
    gradient_curvature,
    hessian_eigs,
    hessian_trace,
    hvp,
    spectral_density,
)
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
