"""Probe costs on the three architecture families: VGG, ResNet and the transformer LM, in one run.

For each model (float32, batch-statistics loss through the NNX bridge, one fixed training
minibatch; medians over --reps rounds, or more for a fast model until the plain loop has run for
--seconds (~100 ms timings differ by ±10 % between calls), after a warm-up call that compiles;
round-robin over the functions so that load changes hit all of them alike):

- ``grad``: one jitted gradient ``jax.jit(jax.grad(loss_fn))``;
- ``loop``: a Python loop of jitted gradients computing what the probe computes — ``loop K+2``:
  L(θ), g, then L and ∇L at the K points θ − η_k g, then one gradient for the rounding floor (the
  probe as a user calls it); ``loop K+1``: the same without the start (the probe handed the
  training step's own gradient, as the engine does);
- the Figure-4 probe ``probes.step_probe`` at K = --K step sizes (the toolkit's default K = 8) in
  each layout of --strategies (``host``: a Python loop of one compiled point; ``unroll``: the K + 2
  gradients in one program; ``map``: ``lax.map``), with its compile seconds (first call − median);
- ``auto``: ``probes.choose_strategy`` (what ``strategy="auto"`` does when a shape's trial of the
  host loop ends: compile and time the other candidates — ``unroll``, and ``map`` for a loss
  without convolutions — and keep the fastest), then the probe with ``strategy="auto"``
  standalone (÷ loop K+2), fused with the step's own (L, g) (÷ loop K+1), and without the floor
  (``floor_factor=0``): the floor's extra cost in gradients;
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
import math
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
    """(loss_fn, params, batch, lr, step-size multiples, description) of the quick transformer."""
    cfg = TRANSFORMER_NORMS_PRESETS["quick"]["config"]
    ds = data.load_dataset("text")
    model = build_model("transformer", norm="layer", input_shape=ds.input_shape,
                        num_classes=ds.num_classes, seed=0, **cfg["model_options"])
    _, params, state = split(model)
    x, y = data.batch_at(ds, 0, cfg["batch_size"], seed=0)
    batch = make_batch(jnp.asarray(x), jnp.asarray(y), state)
    return (make_loss_fn(model), params, batch, cfg["lr"],
            (cfg["step_size_lo"], cfg["step_size_hi"]),
            f"d_model {cfg['model_options']['d_model']}, {cfg['model_options']['layers']} layers, "
            f"batch {cfg['batch_size']}×{ds.input_shape[0]} tokens")


def problem(name: str, batch_size: int):
    """(loss_fn, params, batch, lr, (lo, hi) multiples, description)."""
    if name == "transformer":
        return transformer_problem()
    width = SKIP_PRESETS["quick"]["config"]["width"] if name == "resnet20" else 0.25
    loss_fn, params, batch = cnn_problem(name, width, batch_size)
    return loss_fn, params, batch, 0.1, (0.5, 4.0), \
        f"width {width:g}, BatchNorm, batch {batch_size}×32×32×3"


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def plain_loops(loss_fn, params, batch, etas) -> dict:
    """The probe's gradients as a Python loop of jitted calls: ``loop K+2`` (standalone) and
    ``loop K+1`` (fused: without the start)."""
    value_and_grad, grad = jax.jit(jax.value_and_grad(loss_fn)), jax.jit(jax.grad(loss_fn))
    g = grad(params, batch)
    points = [jax.tree.map(lambda p, d, eta=eta: p - eta * d, params, g) for eta in etas]

    def fused():
        out = [value_and_grad(p, batch) for p in points]
        return out, grad(params, batch)  # the floor's gradient (at θ ⊕ δ: the same cost)

    return {"loop K+2": lambda: (value_and_grad(params, batch), fused()), "loop K+1": fused}


def probe_fns(loss_fn, params, batch, etas, strategies) -> dict:
    """The probe in each layout of ``strategies``, and ``auto`` standalone, fused, without floor."""
    fused = jax.jit(jax.value_and_grad(loss_fn))(params, batch)
    probe = probes.step_probe
    fns = {f"probe {s}": (lambda s=s: probe(loss_fn, params, batch, etas, strategy=s).effective_beta)
           for s in strategies}
    fns["auto"] = lambda: probe(loss_fn, params, batch, etas).effective_beta
    fns["auto fused"] = lambda: probe(loss_fn, params, batch, etas, value_and_grad=fused).effective_beta
    fns["auto no floor"] = lambda: probe(loss_fn, params, batch, etas, floor_factor=0).effective_beta
    return fns


def measure(name: str, args) -> dict:
    """Median times (s) of grad, the plain loops, each probe layout, auto and λ_max for one model."""
    loss_fn, params, batch, lr, (lo, hi), desc = problem(name, args.batch)
    etas = lr_multiples(lr, lo, hi, num=args.K)
    probes.clear_strategy_cache()
    start = time.perf_counter()  # what strategy="auto" costs on its first call
    choice = probes.choose_strategy(loss_fn, params, batch, etas)
    choose_seconds = time.perf_counter() - start
    # the fused and floor-free calls are shapes of their own: measured too, so that "auto" below
    # is what a long run settles on (not the host loop of a shape still on trial)
    fused = jax.jit(jax.value_and_grad(loss_fn))(params, batch)
    probes.choose_strategy(loss_fn, params, batch, etas, value_and_grad=fused)
    probes.choose_strategy(loss_fn, params, batch, etas, floor_factor=0)
    grad = jax.jit(jax.grad(loss_fn))
    key = jax.random.key(0)
    fns = {"grad": lambda: grad(params, batch), **plain_loops(loss_fn, params, batch, etas),
           **probe_fns(loss_fn, params, batch, etas, args.strategies)}
    fns["lambda_max"] = lambda: probes.hessian_eigs(loss_fn, params, batch, 1, key=key,
                                                    num_iters=args.iters).eigenvalues
    first = {k: timed(f) for k, f in fns.items()}
    times = {k: [] for k in fns}
    # a fast model gets more rounds: at least --seconds of the plain loop in all
    reps = max(args.reps, math.ceil(args.seconds / timed(fns["loop K+2"])))
    for _ in range(reps):
        for k, f in fns.items():
            times[k].append(timed(f))
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {"name": name, "desc": desc, "params": n, "first": first, "choice": choice, "reps": reps,
            "choose_seconds": choose_seconds,
            "median": {k: statistics.median(v) for k, v in times.items()}}


def compile_seconds(r: dict, strategy: str) -> float:
    """Compile seconds of a layout: from choose_strategy for its candidates (they compiled there),
    else first call − median run."""
    if strategy in r["choice"].compile_seconds:
        return r["choice"].compile_seconds[strategy]
    return r["first"][f"probe {strategy}"] - r["median"][f"probe {strategy}"]


def report(results: list[dict], args) -> None:
    load = os.getloadavg()
    print(f"\nbackend {jax.default_backend()}, {os.cpu_count()} CPU cores, load average "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, K = {args.K}, λ_max: "
          f"{args.iters} Lanczos steps, medians of ≥ {args.reps} rounds (≥ {args.seconds:g} s of the plain loop) after compile\n")
    print("| model | params | grad ms | loop K+2 / K+1 ms | " + " | ".join(
        f"{s} ms (compile s)" for s in args.strategies) + " | auto → pick | auto ÷ loop K+2 "
          "| fused auto ÷ loop K+1 | floor, gradients | λ_max ms | λ_max ÷ grad |")
    print("|---" * (11 + len(args.strategies)) + "|")
    for r in results:
        m, g = r["median"], r["median"]["grad"]
        cells = " | ".join(f"{1e3 * m[f'probe {s}']:.0f} ({compile_seconds(r, s):.1f})"
                           for s in args.strategies)
        print(f"| {r['name']} ({r['desc']}; {r['reps']} rounds) | {r['params']:,} | {1e3 * g:.1f} | "
              f"{1e3 * m['loop K+2']:.0f} / {1e3 * m['loop K+1']:.0f} | {cells} | "
              f"{r['choice'].strategy} | {m['auto'] / m['loop K+2']:.2f} | "
              f"{m['auto fused'] / m['loop K+1']:.2f} | "
              f"{(m['auto'] - m['auto no floor']) / g:.2f} | {1e3 * m['lambda_max']:.0f} | "
              f"{m['lambda_max'] / g:.1f} |")
    print("\nauto's measurement (choose_strategy: compile and warm runs of each candidate; auto runs it when a shape's host-loop trial ends), s: " + "; ".join(
        f"{r['name']}: {r['choose_seconds']:.1f} (runs " + ", ".join(
            f"{s} {1e3 * t:.0f} ms" for s, t in r["choice"].seconds.items()) + ")"
        for r in results))
    print("first calls (compile + run), s: " + "; ".join(
        f"{r['name']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["first"].items())
        for r in results))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="more rounds for a fast model: until the plain loop has run this long")
    parser.add_argument("--K", type=int, default=8, help="step sizes of the probe")
    parser.add_argument("--iters", type=int, default=20, help="Lanczos steps of λ_max")
    parser.add_argument("--batch", type=int, default=128, help="CNN batch size")
    parser.add_argument("--strategies", nargs="*", default=["host", "unroll", "map"],
                        choices=["host", "unroll", "vmap", "map"], help="probe layouts to time")
    args = parser.parse_args(argv)
    results = [measure(name, args) for name in args.only]
    report(results, args)


if __name__ == "__main__":
    main()
