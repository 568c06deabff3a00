"""landscape: loss-landscape geometry probes for JAX / Flax NNX.

Measures, during training, what Santurkar et al. (2018) used to argue that BatchNorm smooths the
loss landscape: the loss and gradient along the gradient direction (Figure 4), gradient norms
(Lipschitzness), and checks of their Theorems 4.1/4.2 at every BatchNorm layer.

The flat API (everything else lives in the submodules named below):

- probes: :func:`step_probe`, :func:`make_step_probe`, :func:`lr_multiples`, :func:`grad_norms`,
  :func:`noise_floor` (:mod:`landscape.probes`, pure JAX, no Flax)
- Flax NNX bridge: :func:`split`, :func:`make_loss_fn`, :func:`make_batch` (:mod:`landscape.bridge`)
- training: :class:`TrainConfig`, :func:`train`, :class:`Prober`, :class:`ProbeSchedule`,
  :class:`Measurement` (:mod:`landscape.train`)
- models and normalizations: :func:`build_model`, :class:`VGG`, :class:`MLP`, :class:`DeepLinear`,
  :func:`make_normalization` (:mod:`landscape.models`, :mod:`landscape.normalization`)
- theory: :func:`theory_table` (:mod:`landscape.theory`); figures: :mod:`landscape.plotting`;
  reproductions: :mod:`landscape.reproduce`; data: :mod:`landscape.data`
"""

from landscape import bridge, data, models, normalization, plotting, probes, records, theory
from landscape.bridge import make_batch, make_loss_fn, split
from landscape.config import ConfigError, TrainConfig
from landscape.models import MLP, VGG, DeepLinear, build_model
from landscape.normalization import make_normalization, normalization_names
from landscape.probes import (
    GradNorms,
    StepProbe,
    grad_norms,
    lr_multiples,
    make_step_probe,
    noise_floor,
    step_probe,
)
from landscape.theory import theory_table
from landscape.train import Measurement, Prober, ProbeSchedule, read_run, train

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DeepLinear", "GradNorms", "MLP", "Measurement", "Prober", "ProbeSchedule",
    "StepProbe", "TrainConfig", "VGG", "bridge", "build_model", "data", "grad_norms",
    "lr_multiples", "make_batch", "make_loss_fn", "make_normalization", "make_step_probe",
    "models", "noise_floor", "normalization", "normalization_names", "plotting", "probes",
    "read_run", "records", "split", "step_probe", "theory", "theory_table", "train",
]
