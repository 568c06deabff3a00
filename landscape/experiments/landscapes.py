"""Compatibility: the experiments that lived here now live one per module (``fig3``, ``fig5``,
``dln``, ``compare``) and the ICS probe in :mod:`landscape.probes`. Import from there."""

from landscape.experiments.compare import (COMPARE_METRICS, COMPARE_NORMS, COMPARE_QUICK,  # noqa: F401
                                           aggregate_over_seeds, compare_experiment)
from landscape.experiments.dln import DLN_PRESETS, dln_experiment  # noqa: F401
from landscape.experiments.fig3 import (FIG3_LAYERS, FIG3_QUICK, clip_blocks,  # noqa: F401
                                        fig3_experiment, ics_measurement)
from landscape.experiments.fig5 import FIG5_NORMS, FIG5_QUICK, fig5_experiment  # noqa: F401
from landscape.probes import (ICS, block_masks, internal_covariate_shift, param_mask,  # noqa: F401
                              param_paths)
