"""The one source of truth for the toolkit's enumerations and numeric validation.

A light module (no JAX import): the configuration, the CLI, the probes and the bridge all read their
accepted values from here, so a new strategy, mode or dataset is added in one place.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

__all__ = ["BN_MODES", "ConfigError", "DATASETS", "DTYPES", "MATMUL_PRECISIONS", "DATA_FILES_DATASETS",
           "OPTIMIZERS", "PROBE_STRATEGIES", "SCHEDULES", "check_choice", "check_int", "check_number",
           "is_model_name", "model_names", "resnet_depth"]


class ConfigError(ValueError):
    """A configuration value that is not accepted; the message names the field."""


#: Datasets a run can train on; ``dln`` is the deep linear network's synthetic regression task.
DATA_FILES_DATASETS = ("cifar10", "mnist", "mnist5k", "synthetic", "text")
#: ``text``: next-character prediction on Python's own documentation (int32 token windows).
DATASETS = ("mnist5k", "mnist", "cifar10", "synthetic", "dln", "text")
#: Optimizers named in help texts; any optax optimizer taking ``learning_rate`` is accepted.
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "lion")
SCHEDULES = ("constant", "cosine", "step")
#: How a probe lays out its K evaluations (see :func:`landscape.probes.step_probe`).
PROBE_STRATEGIES = ("auto", "unroll", "vmap", "map", "host")
#: BatchNorm behaviour during a probe: the batch's own statistics (the paper's loss, train mode) or
#: the stored running averages (eval mode).
BN_MODES = ("batch_stats", "running_average")
#: Precision of a run's parameters, statistics and inputs (float64 runs enable JAX's x64 mode for
#: their duration).
DTYPES = ("float32", "float64")
#: ``jax_default_matmul_precision`` levels a run may set: the backend's fast default (TF32 on
#: Ampere+ GPUs, one bfloat16 pass on TPUs), "high" (TF32 / three bfloat16 passes), "highest"
#: (true float32). XLA:CPU computes float32 in all three.
MATMUL_PRECISIONS = ("default", "high", "highest")

def model_names() -> tuple[str, ...]:
    """Names :func:`landscape.models.build_model` accepts (every ``resnetN`` with N = 6n + 2 too,
    not only the depths of He et al.'s Table 6 listed here; :func:`is_model_name` tells)."""
    return ("vgg5", "vgg11", "vgg13", "vgg16", "mlp", "dln", "resnet20", "resnet32", "resnet44",
            "resnet56", "resnet110", "transformer")


def resnet_depth(name: str) -> int | None:
    """N of a name ``resnetN`` (any digits N, valid depth or not), else None.

    Example:
        >>> resnet_depth("resnet20"), resnet_depth("vgg11")
        (20, None)
    """
    match = re.fullmatch(r"resnet(\d+)", name)
    return int(match[1]) if match else None


def is_model_name(name: str) -> bool:
    """True for a name :func:`landscape.models.build_model` builds itself (not a factory):
    :func:`model_names` and any ``resnetN`` with N = 6n + 2, n ≥ 1."""
    n = resnet_depth(name)
    if n is not None:
        return n >= 8 and (n - 2) % 6 == 0
    return name in model_names()


def check_choice(name: str, value: Any, accepted: tuple[str, ...], error: type[Exception] = ValueError
                 ) -> None:
    """Raise ``error`` naming ``name`` unless ``value`` is one of ``accepted``.

    Example:
        >>> check_choice("mode", "batch_stats", BN_MODES)
    """
    if value not in accepted:
        raise error(f"{name}={value!r} is not accepted; expected one of {', '.join(accepted)}")


def check_number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False,
                 maximum: float | None = None, integer: bool = False,
                 error: type[Exception] = ValueError) -> float | int:
    """Validate one finite real (or integer) and return it; ``error`` names ``name`` otherwise.

    ``minimum``/``maximum`` bound the value (``strict=True`` excludes ``minimum`` itself). Booleans
    are refused (``True`` is no number of steps).

    Example:
        >>> check_number("lr", 0.1, minimum=0, strict=True)
        0.1
        >>> check_number("steps", 3, minimum=1, integer=True)
        3
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
            integer and math.isfinite(value) and not float(value).is_integer()):
        raise error(f"{name}={value!r} is not {kind}")
    number = float(value)
    if not math.isfinite(number):
        raise error(f"{name}={value!r} must be finite")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise error(f"{name}={value!r} must be {'>' if strict else '>='} {minimum}")
    if maximum is not None and number > maximum:
        raise error(f"{name}={value!r} must be <= {maximum}")
    return value


def check_int(name: str, value: Any, *, minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """``int(value)`` for an integer (Python or NumPy, not a bool) ``>= minimum``; otherwise raise
    ``error`` naming ``name``.

    Example:
        >>> check_int("num_iters", 20)
        20
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise error(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)
