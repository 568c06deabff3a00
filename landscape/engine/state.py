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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from landscape import bridge
from landscape.config import TrainConfig

__all__ = ["GradientOutput", "StepFunctions", "StepMetrics", "TrainState", "build_optimizer",
           "init_train_state", "lr_schedule"]

StepMetrics = bridge.StepMetrics


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
    accuracy: jax.Array   # () minibatch accuracy (NaN for regression)
    grad: Any             # ∇L(θ_t), like params
    model_state: Any      # running statistics after this batch


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning rate at each step: constant, cosine decay, or ×0.1 at 50 % and 75 % ("step")."""
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, config.steps)
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(
            config.lr, {config.steps // 2: 0.1, (3 * config.steps) // 4: 0.1})
    return optax.constant_schedule(config.lr)


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """optax transformation for ``config``: plain SGD (the paper), SGD+momentum, or Adam, with
    :func:`lr_schedule`'s learning rate.

    Example:
        >>> tx = build_optimizer(TrainConfig(optimizer="sgd", lr=0.1))
    """
    lr = config.lr if config.schedule == "constant" else lr_schedule(config)
    if config.optimizer == "sgd":
        return optax.sgd(lr)
    if config.optimizer == "momentum":
        return optax.sgd(lr, momentum=config.momentum)
    return optax.adam(lr)


def init_train_state(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int) -> TrainState:
    """The state at step 0: ``model``'s parameters and statistics, ``tx.init``, the root key.

    Example:
        >>> state = init_train_state(model, optax.sgd(0.1), seed=0)
        >>> int(state.step)
        0
    """
    _, params, model_state = bridge.split(model)
    return TrainState(params, model_state, tx.init(params), jnp.zeros((), jnp.int32),
                      jax.random.key(seed))


class StepFunctions:
    """The compiled pieces of a training step for one model and optimizer.

    - ``batch(state, x, y)`` — the bridge batch of step ``state.step`` (its statistics, noise key);
    - ``gradient(state, x, y) -> (batch, GradientOutput)``;
    - ``apply(state, out) -> TrainState`` — the optimizer update from a :class:`GradientOutput`;
    - ``train(state, x, y) -> (TrainState, StepMetrics)`` — both halves in one call.

    ``apply`` and ``train`` donate the incoming state's buffers (no copy of θ per step).
    Every function is compiled once per run; none syncs with the host.
    """

    def __init__(self, model: nnx.Module, tx: optax.GradientTransformation, *, uses_noise: bool):
        objective = bridge.make_train_objective(model)
        self.uses_noise = uses_noise

        def batch(state: TrainState, x, y):
            rng = jax.random.fold_in(state.key, state.step) if uses_noise else None
            return bridge.make_batch(x, y, state.model_state, rng)

        def gradient(state: TrainState, x, y):
            b = batch(state, x, y)
            (loss, (model_state, acc)), grad = jax.value_and_grad(objective, has_aux=True)(
                state.params, b)
            return b, GradientOutput(loss, acc, grad, model_state)

        def apply(state: TrainState, out: GradientOutput) -> TrainState:
            updates, opt_state = tx.update(out.grad, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return TrainState(params, out.model_state, opt_state, state.step + 1, state.key)

        def train(state: TrainState, x, y):
            _, out = gradient(state, x, y)
            return apply(state, out), StepMetrics(out.loss, out.accuracy)

        self.batch = jax.jit(batch)
        self.gradient = jax.jit(gradient)
        self.apply = jax.jit(apply, donate_argnums=0)
        self.train = jax.jit(train, donate_argnums=0)
