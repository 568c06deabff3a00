"""What the optimizer-aware measurements cost, as ratios measured in one run on one machine.

On the quick Adam-EoS model (tanh MLP 784-200-200-10, full batch of 1 000 MNIST-5k images) after a
few Adam steps, medians of ``--reps`` calls after a warm-up call:

- preconditioned Lanczos (``hessian_eigs(..., preconditioner=P)``) ÷ plain Lanczos, same
  ``num_iters`` (the same number of Hessian-vector products);
- the Figure-4 probe along Adam's update (``direction = −Δ``) ÷ along the gradient, K = 8;
- critical sharpness: its forward passes, and its time ÷ one loss evaluation.

Run:  python benchmarks/bench_optimizer_geometry.py [--reps 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import optax


def _median_time(fn, reps: int) -> float:
    return _median_times([fn], reps)[0]


def _median_times(fns, reps: int) -> list[float]:
    """Medians of ``reps`` timed calls of each function, interleaved (a busy machine slows all
    alike), after one warm-up call each."""
    for fn in fns:
        jax.block_until_ready(fn())  # compile / warm up
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def setup():
    from landscape import bridge, data as data_lib
    from landscape.experiments.eos import EOS_PRESETS
    from landscape.models import build_model

    ds = data_lib.load_dataset("mnist5k", seed=0)
    x, y = np.asarray(ds.x_train[:1000], np.float32), ds.y_train[:1000]
    options = dict(EOS_PRESETS["quick"]["config"]["model_options"])
    model = build_model("mlp", norm="none", input_shape=ds.input_shape, num_classes=10, **options)
    _, params, state = bridge.split(model)
    loss_fn = bridge.make_loss_fn(model)
    batch = bridge.make_batch(x, y, state)
    tx = optax.adam(2e-3)
    opt_state = tx.init(params)
    grad = jax.jit(jax.grad(loss_fn))
    for _ in range(20):
        updates, opt_state = tx.update(grad(params, batch), opt_state, params)
        params = optax.apply_updates(params, updates)
    return loss_fn, params, batch, tx, opt_state, grad


def main(argv=None) -> None:
    from landscape import probes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    loss_fn, params, batch, tx, opt_state, grad = setup()
    g = grad(params, batch)
    updates, stepped = tx.update(g, opt_state, params)
    p = probes.adam_preconditioner(stepped, b1=0.9)
    key = jax.random.key(0)
    rows = {}
    lanczos = [lambda pre=pre: probes.hessian_eigs(loss_fn, params, batch, 1, key=key, num_iters=20,
                                                   preconditioner=pre).eigenvalues for pre in (None, p)]
    rows["lanczos_plain"], rows["lanczos_preconditioned"] = _median_times(lanczos, args.reps)
    probe = probes.make_step_probe(loss_fn)
    etas = probes.lr_multiples(2e-3, num=8)
    along_update = jax.tree.map(lambda u: -u, updates)
    rows["probe_gradient"], rows["probe_update"] = _median_times(
        [lambda: probe(params, batch, etas).loss,
         lambda: probe(params, batch, etas, along_update).loss], args.reps)
    loss_jit = jax.jit(loss_fn)
    rows["one_loss"] = _median_time(lambda: loss_jit(params, batch), args.reps)
    direction = jax.tree.map(lambda u: -u / 2e-3, updates)
    crit = probes.critical_sharpness(loss_fn, params, batch, direction, guess=2e-3)
    rows["critical_sharpness"] = _median_time(lambda: np.float64(probes.critical_sharpness(
        loss_fn, params, batch, direction, guess=2e-3).sharpness), args.reps)
    rows["critical_evals"] = crit.num_evals
    ratios = {"preconditioned/plain Lanczos": rows["lanczos_preconditioned"] / rows["lanczos_plain"],
              "update/gradient probe": rows["probe_update"] / rows["probe_gradient"],
              "critical sharpness / one loss": rows["critical_sharpness"] / rows["one_loss"],
              "critical sharpness / (evals × one loss)":
                  rows["critical_sharpness"] / (crit.num_evals * rows["one_loss"])}
    for k, v in rows.items():
        print(f"{k:>24}: {v * 1e3:9.2f} ms" if isinstance(v, float) else f"{k:>24}: {v}")
    for k, v in ratios.items():
        print(f"{k:>40}: {v:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"times_s": rows, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
