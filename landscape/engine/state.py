"""The explicit training state and the pure, jitted training step built on it.

A run is a sequence of :class:`TrainState` s: ``state_{t+1} = step(state_t, x_t, y_t)``. The state is a
pytree holding everything that changes — parameters θ_t, the model's other state (BatchNorm running
statistics), the optimizer state, the step counter t and the run's root key — so a checkpoint of it
(plus the hooks' carries) resumes a run exactly.

A step is split in two halves so that a measurement due at step t can use the step's own gradient:
:func:`StepFunctions.gradient` computes L(θ_t), ∇L(θ_t) and the advanced running statistics on the
step's minibatch (batch statistics, the noise key ``fold_in(key, t)``); :func:`StepFunctions.apply`
applies the optimizer. ``StepFunctions.train`` runs both in one compiled call for steps that nothing
measures.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from landscape.config import TrainConfig
from landscape.engine.objective import Objective

__all__ = ["GradientOutput", "StepFunctions", "StepMetrics", "TrainState", "build_optimizer",
           "init_train_state", "lr_schedule"]


class TrainState(NamedTuple):
    """Everything a training run changes, as one pytree.

    Attributes:
        params: θ_t, the ``nnx.Param`` leaves (pure pytree from :func:`landscape.bridge.split`).
        model_state: the model's other state (BatchNorm running statistics).
        opt_state: the optax state.
        step: () int32, t — the number of updates applied so far.
        key: the run's root PRNG key; step t's noise key is ``fold_in(key, t)``.
    """

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


class GradientOutput(NamedTuple):
    """The gradient half of step t (see :meth:`StepFunctions.gradient`)."""

    loss: jax.Array       # () L(θ_t) on the step's minibatch, batch statistics
    metrics: dict         # the loss's own scalar metrics (e.g. accuracy)
    grad: Any             # ∇L(θ_t), like params
    model_state: Any      # running statistics after this batch


class StepMetrics(NamedTuple):
    """What one training step reports: the minibatch loss and the loss's own metrics."""

    loss: jax.Array
    metrics: dict


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning rate at each step: constant, cosine decay, or ×0.1 at 50 % and 75 % ("step"),
    after a linear warm-up from 0 over ``warmup_steps`` when that is > 0."""
    if config.schedule == "cosine":
        base = optax.cosine_decay_schedule(config.lr, config.steps - config.warmup_steps)
    elif config.schedule == "step":
        base = optax.piecewise_constant_schedule(
            config.lr, {config.steps // 2: 0.1, (3 * config.steps) // 4: 0.1})
    else:
        base = optax.constant_schedule(config.lr)
    if not config.warmup_steps:
        return base
    warmup = optax.linear_schedule(0.0, config.lr, config.warmup_steps)
    return optax.join_schedules([warmup, base], [config.warmup_steps])


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation ``config`` names, with :func:`lr_schedule`'s learning rate.

    ``optimizer`` is ``"sgd"`` (the paper), ``"momentum"`` (SGD with ``momentum``) or the name of
    any optax optimizer taking ``learning_rate`` (``adam``, ``adamw``, ``rmsprop``, ``lion``, …),
    called with ``optimizer_options``. ``weight_decay`` > 0 is the optimizer's own decoupled decay
    where it has one (``adamw``, ``lion``, …: ``weight_decay=``) and otherwise an L2 term
    ``wd·θ`` added to the gradient before the optimizer (PyTorch's SGD/Adam ``weight_decay``).

    Example:
        >>> tx = build_optimizer(TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, warmup_steps=10))
    """
    lr = config.lr if config.schedule == "constant" and not config.warmup_steps else lr_schedule(config)
    name, options = config.optimizer, dict(config.optimizer_options)
    if name == "momentum":
        name, options = "sgd", {"momentum": config.momentum, **options}
    fn = getattr(optax, name)
    decoupled = "weight_decay" in inspect.signature(fn).parameters
    if config.weight_decay and decoupled:
        options["weight_decay"] = config.weight_decay
    tx = fn(learning_rate=lr, **options)
    if config.weight_decay and not decoupled:
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx


def init_train_state(params: Any, model_state: Any, tx: optax.GradientTransformation, *,
                     seed: int) -> TrainState:
    """The state at step 0: the parameters and model state, ``tx.init(params)``, the root key.

    Example:
        >>> state = init_train_state({"w": jnp.ones(3)}, {}, optax.sgd(0.1), seed=0)
        >>> int(state.step)
        0
    """
    return TrainState(params, model_state, tx.init(params), jnp.zeros((), jnp.int32),
                      jax.random.key(seed))


class StepFunctions:
    """The compiled pieces of a training step for one objective and optimizer.

    - ``gradient(state, batch) -> (probe_batch, GradientOutput)`` — L(θ_t), ∇L(θ_t), the metrics
      and the advanced model state on step t's minibatch with the step key ``fold_in(key, t)``;
      ``probe_batch`` is the batch the probes' pure loss takes (:mod:`.objective`);
    - ``apply(state, out) -> TrainState`` — the optimizer update from a :class:`GradientOutput`;
    - ``train(state, batch) -> (TrainState, StepMetrics)`` — both halves in one call.

    ``apply`` and ``train`` donate the incoming state's buffers (no copy of θ per step).
    Every function is compiled once per run; none syncs with the host.
    """

    def __init__(self, objective: Objective, tx: optax.GradientTransformation):
        def gradient(state: TrainState, batch):
            key = jax.random.fold_in(state.key, state.step)
            (loss, (model_state, metrics)), grad = jax.value_and_grad(objective.train, has_aux=True)(
                state.params, state.model_state, batch, key)
            probe_batch = objective.probe_batch(batch, state.model_state, key)
            return probe_batch, GradientOutput(loss, metrics, grad, model_state)

        def apply(state: TrainState, out: GradientOutput) -> TrainState:
            updates, opt_state = tx.update(out.grad, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return TrainState(params, out.model_state, opt_state, state.step + 1, state.key)

        def train(state: TrainState, batch):
            _, out = gradient(state, batch)
            return apply(state, out), StepMetrics(out.loss, out.metrics)

        self.gradient = jax.jit(gradient)
        self.apply = jax.jit(apply, donate_argnums=0)
        self.train = jax.jit(train, donate_argnums=0)
