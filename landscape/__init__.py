"""landscape: loss-landscape geometry probes for JAX / Flax NNX.

Measures, during training, what Santurkar et al. (2018) used to argue that BatchNorm smooths the
loss landscape: the loss and gradient along the gradient direction (Figure 4), gradient norms
(Lipschitzness), and checks of their Theorems 4.1/4.2 at every BatchNorm layer.

The flat API (everything else lives in the submodules named below):

- probes: :func:`step_probe`, :func:`make_step_probe`, :func:`lr_multiples`, :func:`grad_norms`,
  :func:`noise_floor`, :func:`arithmetic_eps` (:mod:`landscape.probes`, pure JAX, no Flax)
- Flax NNX bridge: :func:`split`, :func:`make_loss_fn`, :func:`make_batch` (:mod:`landscape.bridge`)
- training: :func:`fit`, :func:`attach`, :class:`StepProbeHook`, :class:`CurvatureHook`,
  :class:`Schedule`, :func:`nnx_loss`, :class:`Stateful` (:mod:`landscape.engine`);
  :class:`TrainConfig`, :func:`landscape.train.train`, :func:`read_run` (:mod:`landscape.train`)
- models and normalizations: :func:`build_model`, :class:`VGG`, :class:`MLP`, :class:`DeepLinear`,
  :func:`make_normalization` (:mod:`landscape.models`, :mod:`landscape.normalization`)
- theory: :func:`theory_table` (:mod:`landscape.theory`); figures: :mod:`landscape.figures`;
  reproductions: :mod:`landscape.reproduce`; data: :mod:`landscape.data`; several devices and
  hosts: :mod:`landscape.parallel`
"""

import importlib
from typing import Any

# Public names → the submodule defining them. Imported on first use, so that light modules
# (figures, records, data) and the CLI's argument errors do not pay for importing JAX and Flax.
_EXPORTS = {
    "make_batch": "bridge", "make_loss_fn": "bridge", "split": "bridge",
    "ConfigError": "config", "TrainConfig": "config",
    "MLP": "models", "VGG": "models", "DeepLinear": "models", "build_model": "models",
    "make_normalization": "normalization", "normalization_names": "normalization",
    "GradNorms": "probes", "StepProbe": "probes", "grad_norms": "probes",
    "lr_multiples": "probes", "make_step_probe": "probes", "noise_floor": "probes",
    "step_probe": "probes", "arithmetic_eps": "probes",
    "theory_table": "theory",
    "Measurement": "train", "read_run": "train",
    "fit": "engine", "attach": "engine", "StepProbeHook": "engine", "CurvatureHook": "engine",
    "Schedule": "engine", "Stateful": "engine", "nnx_loss": "engine", "Hook": "engine",
    "restore_model": "train",
}
# ``landscape.train`` is the training module (its ``train`` function: ``from landscape.train
# import train``); a top-level ``train`` function would collide with it.
_SUBMODULES = ("bridge", "config", "data", "engine", "figures", "models", "normalization", "parallel",
               "probes", "records", "reproduce", "theory", "train")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"landscape.{_EXPORTS[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"landscape.{name}")
    else:
        raise AttributeError(f"module 'landscape' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


__version__ = "0.1.0"

__all__ = sorted(set(_EXPORTS) | set(_SUBMODULES))
