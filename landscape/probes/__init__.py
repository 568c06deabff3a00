"""The probe layer: pure, jit-compatible measurements of ``loss_fn(params, batch) -> scalar``.

Every probe takes the toolkit's one loss signature and returns a NamedTuple; none imports Flax.
The Flax NNX bridge (:mod:`landscape.bridge`) turns a model into that form once, at the edge.

Along the gradient (Santurkar et al. 2018, Figure 4) — :mod:`landscape.probes._step`:
    :func:`step_probe`, :func:`make_step_probe`, :func:`lr_multiples`, :func:`grad_norms`,
    :func:`noise_floor`, :func:`summarize`.
Internal covariate shift (Definition 2.1) — :mod:`landscape.probes._ics`:
    :func:`internal_covariate_shift`.
Activation statistics (Fig. 1/2, Ioffe Fig. 1) — :mod:`landscape.probes._activations`:
    :func:`activation_statistics`.
Parameter paths and masks — :mod:`landscape.probes._paths`:
    :func:`param_paths`, :func:`param_mask`, :func:`block_masks`, :func:`per_leaf_dict`.
"""

from landscape.probes._activations import ActivationStats, activation_statistics
from landscape.probes._ics import ICS, internal_covariate_shift
from landscape.probes._paths import block_masks, param_mask, param_paths, path_str, per_leaf_dict
from landscape.probes._step import (
    DEFAULT_FLOOR_FACTOR,
    STRATEGIES,
    GradNorms,
    StepProbe,
    grad_norms,
    lr_multiples,
    make_step_probe,
    noise_floor,
    step_probe,
    summarize,
)

__all__ = [
    "ActivationStats",
    "activation_statistics",
    "DEFAULT_FLOOR_FACTOR",
    "ICS",
    "STRATEGIES",
    "GradNorms",
    "StepProbe",
    "block_masks",
    "grad_norms",
    "internal_covariate_shift",
    "lr_multiples",
    "make_step_probe",
    "noise_floor",
    "param_mask",
    "param_paths",
    "path_str",
    "per_leaf_dict",
    "step_probe",
    "summarize",
]
