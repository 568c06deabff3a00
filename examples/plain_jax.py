"""A model written in plain JAX (no Flax): a tanh MLP classifier trained through `fit`.

Parameters are a dict of arrays, the loss a function of (params, batch) that also returns its
accuracy as a metric, the data arrays in memory that the engine slices per step. The Figure-4
and curvature hooks record into the run folder like any other run's.
Run:  python examples/plain_jax.py --out runs/plain_jax      (under a minute on a laptop CPU)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from landscape import data, probes
from landscape.engine import CurvatureHook, Schedule, StepProbeHook, fit
from landscape.train import read_run


def init(key, sizes=(64, 32, 32, 10)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros(n)}
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def loss_fn(params, batch):
    x = batch["x"].reshape(batch["x"].shape[0], -1)
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"][None])
    logits = x @ params[-1]["w"] + params[-1]["b"][None]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/plain_jax")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    ds = data.make_synthetic(num_train=1024, num_test=256)  # 8×8×1 images, 10 classes
    lr = 0.1

    def evaluate(params, state):  # state: the model state, {} for a plain loss
        loss, metrics = loss_fn(params, {"x": ds.x_test, "y": ds.y_test})
        return {"test_loss": loss, "test_accuracy": metrics["accuracy"]}

    result = fit(loss_fn, init(jax.random.key(0)), optax.sgd(lr), {"x": ds.x_train, "y": ds.y_train},
                 batch_size=64, steps=args.steps, workdir=args.out, learning_rate=lr,
                 hooks=[StepProbeHook(step_sizes=probes.lr_multiples(lr), schedule=Schedule(20)),
                        CurvatureHook(every=50, num_iters=15)],
                 evaluate=evaluate, eval_every=100)
    run = read_run(result.workdir)
    print(f"test accuracy {run['eval'][-1]['test_accuracy']:.3f}; effective β over training: "
          + ", ".join(f"{r['effective_beta']:.3g}" for r in run["probes"]))
    print("λ_max: " + ", ".join(f"{r['lambda_max']:.3g}" for r in run["curvature"]))


if __name__ == "__main__":
    main()
