"""Probe costs on the three architecture families: VGG, ResNet and the transformer LM, in one run.

For each model (float32, batch-statistics loss through the NNX bridge, one fixed training
minibatch; medians over --reps after a warm-up call that compiles, round-robin over the functions
so that load changes hit all of them alike):

- ``grad``: one jitted gradient ``jax.jit(jax.grad(loss_fn))``;
- ``probe``: the Figure-4 probe ``probes.step_probe`` at K = --K step sizes (the toolkit's default
  K = 8), with the strategy the model's quick setting trains with (VGG, ResNet: ``auto``, which is
  ``unroll`` on CPU; transformer: ``map``, its quick preset's) and, for the transformer, ``unroll``
  too. Reported as probe ÷ ((K+1)·grad). Called as a user calls it (no ``value_and_grad``), the
  probe computes K + 2 gradients (θ, the K points and the rounding floor), so its ideal ratio is
  (K+2)/(K+1) = 1.11 at K = 8; in training the step's own gradient is passed in and it costs K + 1;
- ``λ_max``: ``probes.hessian_eigs(k=1, num_iters=--iters)`` (20 Lanczos steps, the default
  strategy: ``host`` on CPU), reported in ms and ÷ grad (its floor is ≈ 2 × 20 = 40 gradients:
  one Hessian-vector product costs about two gradients).

Models (``--only`` picks some):

- ``vgg11``: VGG-11 at width 0.25 (16…128 channels), CIFAR-shaped synthetic images, batch --batch;
  BatchNorm;
- ``vgg5``: the quick Figure-4 model (VGG-5 at width 0.25, ``PRESETS["quick"]``), same input;
- ``resnet20``: ResNet-20 at the quick width of ``reproduce skip`` (0.25: 4/8/16 channels), same
  input; BatchNorm;
- ``transformer``: the quick model of ``reproduce transformer-norms`` (2 layers, d_model 32,
  4 heads, Pre-LN LayerNorm) on ``--dataset text`` (context 64), batch 16 windows (its preset).

    python benchmarks/bench_architectures.py --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from landscape import build_model, data, lr_multiples, make_batch, make_loss_fn, probes, split
from landscape.experiments.skip import SKIP_PRESETS
from landscape.experiments.transformer_norms import TRANSFORMER_NORMS_PRESETS

MODELS = ("vgg11", "vgg5", "resnet20", "transformer")


def cnn_problem(name: str, width: float, batch_size: int, norm: str = "batch"):
    """(loss_fn, params, batch) of a CNN on one CIFAR-shaped synthetic batch."""
    model = build_model(name, width=width, norm=norm, input_shape=(32, 32, 3), seed=0)
    _, params, state = split(model)
    x = jax.random.normal(jax.random.key(1), (batch_size, 32, 32, 3), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (batch_size,), 0, 10)
    return make_loss_fn(model), params, make_batch(x, y, state)


def transformer_problem():
    """(loss_fn, params, batch, lr, step-size multiples, strategy) of the quick transformer."""
    cfg = TRANSFORMER_NORMS_PRESETS["quick"]["config"]
    ds = data.load_dataset("text")
    model = build_model("transformer", norm="layer", input_shape=ds.input_shape,
                        num_classes=ds.num_classes, seed=0, **cfg["model_options"])
    _, params, state = split(model)
    x, y = data.batch_at(ds, 0, cfg["batch_size"], seed=0)
    batch = make_batch(jnp.asarray(x), jnp.asarray(y), state)
    return (make_loss_fn(model), params, batch, cfg["lr"],
            (cfg["step_size_lo"], cfg["step_size_hi"]), cfg["probe_strategy"],
            f"d_model {cfg['model_options']['d_model']}, {cfg['model_options']['layers']} layers, "
            f"batch {cfg['batch_size']}×{ds.input_shape[0]} tokens")


def problem(name: str, batch_size: int):
    """(loss_fn, params, batch, lr, (lo, hi) multiples, probe strategies, description)."""
    if name == "transformer":
        loss_fn, params, batch, lr, span, strategy, desc = transformer_problem()
        return loss_fn, params, batch, lr, span, (strategy, "unroll"), desc
    width = SKIP_PRESETS["quick"]["config"]["width"] if name == "resnet20" else 0.25
    loss_fn, params, batch = cnn_problem(name, width, batch_size)
    return loss_fn, params, batch, 0.1, (0.5, 4.0), ("auto",), \
        f"width {width:g}, BatchNorm, batch {batch_size}×32×32×3"


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def measure(name: str, args) -> dict:
    """Median times (s) of grad, each probe strategy and λ_max for one model."""
    loss_fn, params, batch, lr, (lo, hi), strategies, desc = problem(name, args.batch)
    grad = jax.jit(jax.grad(loss_fn))
    etas = lr_multiples(lr, lo, hi, num=args.K)
    key = jax.random.key(0)
    fns = {"grad": lambda: grad(params, batch)}
    for s in strategies:
        fns[f"probe {s}"] = (lambda s=s: probes.step_probe(loss_fn, params, batch, etas,
                                                           strategy=s).effective_beta)
    fns["lambda_max"] = lambda: probes.hessian_eigs(loss_fn, params, batch, 1, key=key,
                                                    num_iters=args.iters).eigenvalues
    first = {k: timed(f) for k, f in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(args.reps):
        for k, f in fns.items():
            times[k].append(timed(f))
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {"name": name, "desc": desc, "params": n, "first": first,
            "median": {k: statistics.median(v) for k, v in times.items()}}


def report(results: list[dict], args) -> None:
    load = os.getloadavg()
    print(f"\nbackend {jax.default_backend()}, {os.cpu_count()} CPU cores, load average "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, K = {args.K}, λ_max: "
          f"{args.iters} Lanczos steps, medians of {args.reps} after compile\n")
    print("| model | setting | params | grad ms | probe ms (strategy) | probe ÷ (K+1) grads "
          "| λ_max ms | λ_max ÷ grad |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        m, g = r["median"], r["median"]["grad"]
        probes_ = [k for k in m if k.startswith("probe")]
        cells = " / ".join(f"{1e3 * m[k]:.0f} ({k.split()[1]})" for k in probes_)
        ratios = " / ".join(f"{m[k] / ((args.K + 1) * g):.2f}" for k in probes_)
        print(f"| {r['name']} | {r['desc']} | {r['params']:,} | {1e3 * g:.1f} | {cells} | "
              f"{ratios} | {1e3 * m['lambda_max']:.0f} | {m['lambda_max'] / g:.1f} |")
    print("\nfirst calls (compile + run), s: " + "; ".join(
        f"{r['name']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["first"].items())
        for r in results))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--K", type=int, default=8, help="step sizes of the probe")
    parser.add_argument("--iters", type=int, default=20, help="Lanczos steps of λ_max")
    parser.add_argument("--batch", type=int, default=128, help="CNN batch size")
    args = parser.parse_args(argv)
    results = [measure(name, args) for name in args.only]
    report(results, args)


if __name__ == "__main__":
    main()
