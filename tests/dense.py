"""Exact references for the curvature reproductions: a run's dense Hessian at its first step."""

from __future__ import annotations

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from landscape import bridge, data as data_lib
from landscape.config import TrainConfig
from landscape.engine.configured import build_config_model, load_run_data


def run_problem(cfg: TrainConfig):
    """``(loss_fn, θ₀, batch)`` of ``cfg``'s training loss on step 0's minibatch, in float64
    (call under ``jax.enable_x64(True)``)."""
    train_data, _, input_shape, num_classes = load_run_data(cfg)
    model = bridge.cast(build_config_model(cfg, input_shape, num_classes), "float64")
    _, params, state = bridge.split(model)
    x, y = data_lib.batch_at(train_data, 0, cfg.batch_size, seed=cfg.seed)
    return bridge.make_loss_fn(model), params, bridge.make_batch(np.asarray(x, np.float64), y, state)


def dense_at_init(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(θ₀ flat, ∇²L, ∇L, batch size)`` of ``cfg``'s training loss (batch statistics) at
    initialization on step 0's minibatch, all in float64 via ``jax.hessian`` — small models only."""
    with jax.enable_x64(True):
        loss_fn, params, batch = run_problem(cfg)
        flat, unravel = ravel_pytree(params)
        f = lambda v: loss_fn(unravel(v), batch)  # noqa: E731
        return (np.asarray(flat), np.asarray(jax.jit(jax.hessian(f))(flat)),
                np.asarray(jax.jit(jax.grad(f))(flat)),
                len(batch["y"]))
