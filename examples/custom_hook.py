"""A user-defined measurement as an engine hook: the cosine between consecutive probed gradients.

    cos_t = ⟨g_t, g_{t'}⟩ / (‖g_t‖ ‖g_{t'}‖),   t' the previous step the hook ran at

The hook's carry (the previous gradient) lives on the device, is jitted with the measure function,
and is saved in every checkpoint, so a resumed run records exactly what an uninterrupted one does.
The loop hands the hook the training step's own gradient: measuring it costs no extra gradient.

Run: ``python examples/custom_hook.py [--steps 40] [--out runs/custom_hook]``.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from landscape.config import TrainConfig
from landscape.engine import Hook, Schedule, StepInputs, train
from landscape.records import read_records


class GradientPersistence(NamedTuple):
    cosine: jax.Array      # cos∠(g_t, g_prev); NaN at the first measurement
    grad_norm: jax.Array   # ‖g_t‖


class GradientPersistenceHook(Hook):
    name = "gradient_persistence"   # records go to gradient_persistence.jsonl

    def __init__(self, every: int = 5):
        self.schedule = Schedule(every)

    def init(self, params, *, key):
        return jax.tree.map(jnp.zeros_like, params)   # "no previous gradient yet"

    def measure(self, previous, inputs: StepInputs):
        g = inputs.grad
        norm, prev_norm = optax.tree.norm(g), optax.tree.norm(previous)
        cosine = optax.tree.vdot(g, previous) / (norm * prev_norm)
        cosine = jnp.where(prev_norm > 0, cosine, jnp.nan)
        return GradientPersistence(cosine, norm), g


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="runs/custom_hook")
    args = parser.parse_args(argv)
    config = TrainConfig(dataset="synthetic", model="mlp", width=0.2, steps=args.steps,
                         batch_size=32, eval_every=0, checkpoint_every=20)
    train(config, args.out, hooks=[GradientPersistenceHook(every=5)], progress=False)
    for row in read_records(f"{args.out}/gradient_persistence.jsonl"):
        print(f"step {row['step']:3d}  cos {row['cosine']:+.3f}  |g| {row['grad_norm']:.3g}")


if __name__ == "__main__":
    main()
