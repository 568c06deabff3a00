"""Float32 against float64 effective β on a finished run's checkpoint (issue: trustworthy numbers).

Restores the run's last checkpoint, and on the minibatches of the probed steps computes the
Figure-4 probe three ways: float64 (the reference), float32 with the rounding floor (the default),
and float32 without it (``floor_factor=0``, what the probe reported before the floor existed).
Training is chaotic at lr 0.1 (float32 and float64 runs drift apart), so the comparison holds the
parameters fixed and changes only the probe's precision.

Usage::

    landscape reproduce fig4 --out runs/fig4          # the quick default
    python benchmarks/precision_check.py runs/fig4/batchnorm runs/fig4/vanilla --batches 5
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from landscape import bridge, probes
from landscape.config import TrainConfig
from landscape.data import batch_at
from landscape.engine import load_run_data
from landscape.train import restore_model


def check(run_dir: str, batches: int) -> dict:
    config = TrainConfig.from_dict(json.load(open(f"{run_dir}/config.json")))
    train_data, *_ = load_run_data(config)
    etas = probes.lr_multiples(config.lr, config.step_size_lo, config.step_size_hi,
                               config.num_step_sizes)
    rows = []
    with jax.enable_x64(True):
        model = restore_model(run_dir)
        loss_fn = bridge.make_loss_fn(model)
        _, params, state = bridge.split(model)
        cast = lambda t, d: jax.tree.map(  # noqa: E731
            lambda a: a.astype(d) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
        for i in range(batches):
            x, y = batch_at(train_data, config.steps + i, config.batch_size, seed=config.seed)
            b32 = bridge.make_batch(jnp.asarray(x, jnp.float32), jnp.asarray(y), cast(state, jnp.float32))
            b64 = bridge.make_batch(jnp.asarray(x, jnp.float64), jnp.asarray(y), cast(state, jnp.float64))
            r64 = probes.step_probe(loss_fn, cast(params, jnp.float64), b64, etas)
            r32 = probes.step_probe(loss_fn, cast(params, jnp.float32), b32, etas)
            r32_raw = probes.step_probe(loss_fn, cast(params, jnp.float32), b32, etas, floor_factor=0)
            rows.append((float(r64.effective_beta), float(r32.effective_beta),
                         float(r32_raw.effective_beta), int(np.sum(~np.asarray(r32.beta_included)))))
    b64, b32, raw, excl = (np.array(c) for c in zip(*rows))
    return {"run": run_dir, "beta_float64": b64.tolist(), "beta_float32": b32.tolist(),
            "beta_float32_no_floor": raw.tolist(), "excluded": excl.tolist(),
            "max_rel_err_floor": float(np.max(np.abs(b32 / b64 - 1))),
            "max_rel_err_no_floor": float(np.max(np.abs(raw / b64 - 1)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders written by train()")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    for run in args.runs:
        r = check(run, args.batches)
        print(f"{run}: float64 β {np.round(r['beta_float64'], 4)}")
        print(f"  float32 (floor)    {np.round(r['beta_float32'], 4)}  max rel. err "
              f"{r['max_rel_err_floor']:.2e}  (η excluded: {r['excluded']})")
        print(f"  float32 (no floor) {np.round(r['beta_float32_no_floor'], 4)}  max rel. err "
              f"{r['max_rel_err_no_floor']:.2e}")


if __name__ == "__main__":
    main()
