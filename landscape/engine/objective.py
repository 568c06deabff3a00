"""What the engine trains and probes: a loss in one of three forms, turned into one :class:`Objective`.

The engine and every hook see the same four pieces, whatever model library made the loss:

- ``train(params, state, batch, key) -> (loss, (new_state, metrics))`` — the training loss of one
  minibatch, differentiated with ``has_aux=True``; ``metrics`` a dict of scalars written to
  ``train.jsonl`` under their own names;
- ``probe_batch(batch, state, key)`` — the batch argument of the probes' pure loss (for a loss with
  state, the batch together with the state and step key it is evaluated at);
- ``loss_fn(mode)(params, probe_batch) -> scalar`` — the pure loss the probes differentiate, in an
  explicit normalization ``mode`` (``"batch_stats"``: the training loss; ``"running_average"``:
  evaluation behaviour). It never changes any state;
- ``state`` — the model's initial non-parameter state (``{}`` when there is none).

The three forms a user writes (see :func:`as_objective`):

1. **A plain loss** ``loss_fn(params, batch) -> loss`` or ``-> (loss, metrics)``: any JAX model
   (plain JAX, Equinox, Flax Linen with its params). The probe batch is the batch itself; both
   modes are the same function.
2. **A loss with state**, :class:`Stateful` ``(fn, state)`` with
   ``fn(params, state, batch, *, train, key) -> (loss, new_state, metrics)``: BatchNorm
   statistics, dropout. ``train=True`` is the training loss (batch statistics, dropout from
   ``key``, the step's ``fold_in(key(seed), t)``); ``train=False`` the evaluation loss. A probe
   in ``"batch_stats"`` mode calls ``train=True`` with the step's key (the same dropout mask at
   every probed point) and drops ``new_state``.
3. **A Flax NNX model**: :func:`nnx_loss` ``(model, loss)`` → ``(Stateful, params)`` in one line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from landscape.choices import BN_MODES
from landscape.config import ConfigError

__all__ = ["Objective", "Stateful", "as_objective", "check_objective", "check_params", "nnx_loss",
           "split_metrics"]


def split_metrics(out: Any, where: str = "loss_fn") -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(loss, metrics)`` from a loss's return value: a scalar, or ``(scalar, dict of scalars)``."""
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise ConfigError(f"{where} must return a scalar loss or (loss, metrics dict); got a "
                              f"tuple of {len(out)}")
        return out[0], dict(out[1])
    return out, {}


def _check_mode(mode: str) -> bool:
    if mode not in BN_MODES:
        raise ValueError(f"unknown normalization mode {mode!r}; expected one of {', '.join(BN_MODES)}")
    return mode == "batch_stats"


class Objective:
    """The engine's view of a loss (see the module docstring). Subclasses set the four pieces."""

    state: Any
    uses_key: bool  # whether the loss reads the step key (the engine derives it either way)

    def train(self, params: Any, state: Any, batch: Any, key: jax.Array):
        raise NotImplementedError

    def probe_batch(self, batch: Any, state: Any, key: jax.Array) -> Any:
        raise NotImplementedError

    def loss_fn(self, mode: str = "batch_stats") -> Callable[[Any, Any], jax.Array]:
        raise NotImplementedError


class _Plain(Objective):
    """A stateless ``loss_fn(params, batch) -> loss | (loss, metrics)``."""

    def __init__(self, fn: Callable):
        self.fn, self.state, self.uses_key = fn, {}, False
        self._pure = lambda params, batch: split_metrics(fn(params, batch))[0]

    def train(self, params, state, batch, key):
        loss, metrics = split_metrics(self.fn(params, batch))
        return loss, (state, metrics)

    def probe_batch(self, batch, state, key):
        return batch

    def loss_fn(self, mode="batch_stats"):
        _check_mode(mode)  # no statistics: both modes are the same function
        return self._pure


@dataclasses.dataclass(frozen=True, eq=False)
class Stateful(Objective):
    """A loss with model state: ``fn(params, state, batch, *, train, key) -> (loss, new_state, metrics)``.

    ``state`` is the initial state (a pytree: BatchNorm running statistics, an NNX ``Rngs``
    counter, ...); the engine carries it, checkpoints it and passes the step's key
    ``fold_in(key(seed), t)``. ``metrics`` is a dict of scalars (may be empty).

    Example:
        >>> def fn(params, state, batch, *, train, key):
        ...     x = batch["x"] @ params["w"]
        ...     mean = x.mean(0) if train else state["mean"]
        ...     new = {"mean": 0.9 * state["mean"] + 0.1 * x.mean(0)} if train else state
        ...     return jnp.mean((x - mean - batch["y"]) ** 2), new, {}
        >>> loss = Stateful(fn, {"mean": jnp.zeros(3)})
    """

    fn: Callable[..., tuple[Any, Any, Mapping[str, Any]]]
    state: Any = dataclasses.field(default_factory=dict)
    uses_key: bool = True

    def _call(self, params, state, batch, train, key):
        out = self.fn(params, state, batch, train=train, key=key)
        if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[2], Mapping)):
            raise ConfigError("a Stateful loss must return (loss, new_state, metrics dict)")
        return out

    def train(self, params, state, batch, key):
        loss, new_state, metrics = self._call(params, state, batch, True, key)
        return loss, (new_state, dict(metrics))

    def probe_batch(self, batch, state, key):
        return {"batch": batch, "state": state, "key": key}

    def loss_fn(self, mode="batch_stats"):
        train = _check_mode(mode)

        def pure(params, probe_batch):
            return self._call(params, probe_batch["state"], probe_batch["batch"], train,
                              probe_batch["key"])[0]

        return pure


def nnx_loss(model: Any, loss: Callable[[Any, Any], Any], *,
             inputs: str | int | Callable[[Any], Any] = "x") -> tuple[Stateful, Any]:
    """``(Stateful, params)`` for a Flax NNX model and a loss on its outputs.

    ``loss(outputs, batch) -> loss | (loss, metrics)`` with ``outputs = model(inputs(batch))``
    (``inputs``: a key or index into the batch, or a function of it). The model runs on a copy
    (``nnx.merge(..., copy=True)``): in train mode (``model.train()``: batch statistics, dropout
    from the step key) for the training loss and ``"batch_stats"`` probes, in eval mode
    (``model.eval()``: running averages, no dropout) for ``"running_average"``. The model passed
    in is never changed; its parameters are the ``nnx.Param`` leaves.

    Example:
        >>> loss_fn, params = nnx_loss(model, lambda logits, b: optax.softmax_cross_entropy_with_integer_labels(
        ...     logits, b["y"]).mean())
        >>> fit(loss_fn, params, optax.adamw(1e-3), data, steps=100, workdir="runs/mine")
    """
    from flax import nnx

    if not isinstance(model, nnx.Module):
        raise ConfigError(f"nnx_loss: model must be a flax.nnx.Module, got {type(model).__name__}")
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    params, state = nnx.as_pure(params), nnx.as_pure(state)
    pick = inputs if callable(inputs) else (lambda batch: batch[inputs])

    def fn(params, state, batch, *, train, key):
        copy = nnx.merge(graphdef, params, state, copy=True)
        copy.train() if train else copy.eval()
        value, metrics = split_metrics(loss(copy(pick(batch)), batch), "nnx_loss's loss")
        return value, nnx.as_pure(nnx.state(copy, nnx.Not(nnx.Param))), metrics

    return Stateful(fn, state, uses_key=False), params


def as_objective(loss_fn: Callable | Objective) -> Objective:
    """The :class:`Objective` of a plain loss function or a :class:`Stateful` loss (itself)."""
    if isinstance(loss_fn, Objective):
        return loss_fn
    if not callable(loss_fn):
        raise ConfigError(f"loss_fn must be callable (params, batch) -> loss, or a Stateful loss; "
                          f"got {type(loss_fn).__name__}")
    return _Plain(loss_fn)


def check_params(params: Any) -> None:
    """ConfigError unless ``params`` has at least one floating-point array leaf."""
    leaves = jax.tree.leaves(params)
    if not any(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves
               if hasattr(x, "dtype") or isinstance(x, float)):
        raise ConfigError(f"params must be a pytree with at least one floating-point array leaf; "
                          f"got {len(leaves)} leaves, none floating-point")


def check_objective(objective: Objective, params: Any, batch: Any) -> tuple[str, ...]:
    """Trace the training loss once (no computation) on ``batch``; returns the metric names.

    Raises ConfigError when the loss is not a scalar, a metric is not a scalar, or tracing fails.
    """
    key = jax.random.key(0)
    try:
        loss, (_, metrics) = jax.eval_shape(objective.train, params, objective.state, batch, key)
    except ConfigError:
        raise
    except Exception as e:  # the user's code failed on the first batch: say where, in one line
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"loss_fn failed on data(0): {type(e).__name__}: {detail}") from None
    if getattr(loss, "shape", None) != ():
        raise ConfigError(f"loss_fn must return a scalar loss; got shape {getattr(loss, 'shape', type(loss))}")
    for name, value in metrics.items():
        if getattr(value, "shape", None) != ():
            raise ConfigError(f"loss_fn metric {name!r} must be a scalar; got shape {value.shape}")
    reserved = {"step", "loss", "lr"} & set(metrics)
    if reserved:
        raise ConfigError(f"loss_fn metric names {sorted(reserved)} are the loop's own record fields")
    return tuple(metrics)
