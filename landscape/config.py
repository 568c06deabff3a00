"""Typed run configuration, validated once; errors name the field and what it accepts."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from landscape.choices import (
    BN_MODES,
    DATASETS,
    DTYPES,
    MATMUL_PRECISIONS,
    OPTIMIZERS,
    PROBE_STRATEGIES,
    SCHEDULES,
    ConfigError,
    check_choice,
    check_number,
    is_model_name,
    model_names,
    resnet_depth,
)
from landscape.factories import is_factory_name, load_callable

__all__ = ["ConfigError", "TrainConfig"]


#: Built-in model options that belong to one family of models (``--no-shortcut``, the
#: transformer flags): option → the family accepting it.
MODEL_OPTION_FAMILIES = {"shortcut": "resnetN", "norm_position": "transformer",
                         "qk_norm": "transformer", "context": "transformer",
                         "layers": "transformer", "d_model": "transformer", "heads": "transformer"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (and its probes).

    Defaults are the quick offline setting; :mod:`landscape.reproduce` holds the paper presets.
    Step sizes probed are ``lr × linspace(step_size_lo, step_size_hi, num_step_sizes)`` (the paper's
    [½, 4] × lr for the VGG), with ``lr`` the base learning rate.
    """

    # data
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    train_subset: int = 0  # train on the first N training examples only (0: all of them)
    # model
    model: str = "vgg11"
    width: float = 0.25
    norm: str = "batch"
    norm_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # optimisation
    optimizer: str = "sgd"  # sgd, momentum, or any optax optimizer name (adam, adamw, ...)
    optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps
    steps: int = 500
    batch_size: int = 128
    seed: int = 0
    dtype: str = "float32"
    matmul_precision: str = "default"  # jax_default_matmul_precision for the whole run
    # evaluation and checkpoints
    eval_every: int = 100
    eval_batch_size: int = 1000
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    # probes
    probe_every: int = 0
    probe_at: tuple[int, ...] = ()
    num_step_sizes: int = 8
    step_size_lo: float = 0.5
    step_size_hi: float = 4.0
    probe_mode: str = "batch_stats"
    probe_strategy: str = "auto"
    # bookkeeping
    tag: str = ""
    stop_on_divergence: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def _choice(self, field: str, accepted: tuple[str, ...]) -> None:
        check_choice(field, getattr(self, field), accepted, ConfigError)

    def _number(self, field: str, **bounds: Any) -> None:
        check_number(field, getattr(self, field), error=ConfigError, **bounds)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first field that is not accepted."""
        from landscape.normalization import normalization_names

        self._choice("dataset", DATASETS)
        if is_factory_name(self.model):
            load_callable(self.model, "model")  # a factory that cannot be imported fails here
        elif not is_model_name(self.model):
            if resnet_depth(self.model) is not None:
                raise ConfigError(f"model={self.model!r}: a CIFAR ResNet's depth is 6n+2 "
                                  "(resnet20, resnet32, resnet44, resnet56, resnet110, ...)")
            self._choice("model", model_names())
        self._choice("norm", normalization_names())
        self._check_optimizer()
        self._choice("dtype", DTYPES)
        self._choice("matmul_precision", MATMUL_PRECISIONS)
        self._choice("schedule", SCHEDULES)
        self._choice("probe_mode", BN_MODES)
        self._choice("probe_strategy", PROBE_STRATEGIES)
        self._number("width", minimum=0, strict=True)
        self._number("lr", minimum=0, strict=True)
        self._number("momentum", minimum=0, maximum=1)
        self._number("weight_decay", minimum=0)
        self._number("step_size_lo", minimum=0, strict=True)
        self._number("step_size_hi", minimum=0, strict=True)
        for f in ("steps", "batch_size", "eval_batch_size", "num_step_sizes", "keep_checkpoints"):
            self._number(f, minimum=1, integer=True)
        for f in ("seed", "eval_every", "checkpoint_every", "probe_every", "train_subset",
                  "warmup_steps"):
            self._number(f, minimum=0, integer=True)
        if self.step_size_lo > self.step_size_hi:
            raise ConfigError(
                f"step_size_lo={self.step_size_lo} must be <= step_size_hi={self.step_size_hi}")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.probe_at):
            raise ConfigError(f"probe_at={self.probe_at!r} must hold step numbers >= 0")
        self._check_model_options()
        if (self.dataset == "dln") != (self.model == "dln"):
            raise ConfigError("dataset='dln' and model='dln' go together (the deep linear network's "
                              "regression task)")
        if self.warmup_steps >= self.steps:
            raise ConfigError(f"warmup_steps={self.warmup_steps} must be below steps={self.steps}")
        for f in ("norm_options", "model_options", "optimizer_options"):
            if not isinstance(getattr(self, f), Mapping):
                raise ConfigError(f"{f} must be a mapping, got {type(getattr(self, f)).__name__}")
            for key, value in getattr(self, f).items():
                if isinstance(value, float) and not math.isfinite(value):
                    hint = "; use norm='lpinf' for p = ∞" if key == "p" else ""
                    raise ConfigError(f"{f}[{key!r}]={value} must be finite (it is stored as "
                                      f"JSON){hint}")

    def _check_model_options(self) -> None:
        """Options that belong to one family of built-in models (a user's factory takes anything),
        and the text dataset's pairing with the transformer."""
        if is_factory_name(self.model) or not isinstance(self.model_options, Mapping):
            return
        family = ("transformer" if self.model == "transformer"
                  else "resnetN" if resnet_depth(self.model) is not None else None)
        for key, owner in MODEL_OPTION_FAMILIES.items():
            if key in self.model_options and family != owner:
                flag = "--no-shortcut" if key == "shortcut" else "--" + key.replace("_", "-")
                raise ConfigError(f"model_options[{key!r}] ({flag}) applies to {owner} models "
                                  f"only, not model={self.model!r}")
        if (self.dataset == "text") != (self.model == "transformer"):
            raise ConfigError("dataset='text' and model='transformer' go together (int token "
                              f"windows; a model factory may take them too), got "
                              f"dataset={self.dataset!r}, model={self.model!r}")
        context = self.model_options.get("context")
        if context is not None:
            check_number("model_options['context']", context, minimum=1, integer=True,
                         error=ConfigError)

    def _check_optimizer(self) -> None:
        import inspect

        import optax

        name = self.optimizer
        fn = getattr(optax, name, None) if name != "momentum" else optax.sgd
        params = inspect.signature(fn).parameters if callable(fn) and not name.startswith("_") else {}
        if "learning_rate" not in params:
            raise ConfigError(f"optimizer={name!r} is not accepted; expected sgd, momentum or an "
                              f"optax optimizer taking learning_rate, e.g. {', '.join(OPTIMIZERS)}")
        options = dict(self.optimizer_options) if isinstance(self.optimizer_options, Mapping) else {}
        try:
            inspect.signature(fn).bind(learning_rate=self.lr, **options)
        except TypeError as e:
            raise ConfigError(f"optimizer_options for {name!r}: {e}") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["norm_options"] = dict(self.norm_options)
        d["model_options"] = dict(self.model_options)
        d["probe_at"] = list(self.probe_at)
        d["optimizer_options"] = dict(self.optimizer_options)
        for field, default in (("train_subset", 0), ("matmul_precision", "default"),
                               ("optimizer_options", {}), ("weight_decay", 0.0),
                               ("warmup_steps", 0)):
            if d[field] == default:
                del d[field]  # the default is left out: older run folders keep matching
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, except ``devices`` — the device
        count a summary's ``config`` entries carry beside the configuration (not part of it)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "devices"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
        d = dict(d)
        if "probe_at" in d:
            d["probe_at"] = tuple(d["probe_at"])
        return cls(**d)

    def arithmetic(self) -> contextlib.AbstractContextManager:
        """The run's numeric context: x64 mode for ``dtype="float64"`` and ``matmul_precision``
        as ``jax_default_matmul_precision``. Training, probes and analyses of the run enter it."""
        import jax

        scope = contextlib.ExitStack()
        if self.dtype == "float64":
            scope.enter_context(jax.enable_x64(True))
        if self.matmul_precision != "default":
            scope.enter_context(jax.default_matmul_precision(self.matmul_precision))
        return scope

    def probes_enabled(self) -> bool:
        return self.probe_every > 0 or bool(self.probe_at)
