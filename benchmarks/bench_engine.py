"""Time the engine's step: plain, probed (fused and unfused), and the cost of a host sync per step.

Everything is measured in one run on one machine, and reported as ratios to one jitted gradient
(``value_and_grad`` of the training loss) of the same model and batch:

- plain step           ``StepFunctions.train`` (gradient + optimizer update, one compiled call)
- probed, fused        gradient half → Figure-4 probe reusing that gradient → update half
- probed, unfused      the same, but the probe computes its own gradient (the pre-engine path)
  each with the rounding floor (one more gradient, the default) and without (``floor_factor=0``)
- a block of N plain steps synced once at the end vs with ``float(loss)`` after every step

Usage::

    python benchmarks/bench_engine.py                      # narrow VGG-11 (16…128), ±BN, K = 8
    python benchmarks/bench_engine.py --width 1 --reps 20  # full width (a GPU job)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape import bridge, probes
from landscape.config import TrainConfig
from landscape.engine import (BridgeObjective, RunContext, Schedule, StepFunctions, StepInputs,
                              StepProbeHook)
from landscape.engine.state import init_train_state
from landscape.models import build_model


#: The probed-step variants, as ``--variants`` names them.
ALL_VARIANTS = ("fused-floor", "fused-nofloor", "unfused-floor", "unfused-nofloor")


def probe_inputs(model: str, width: float, norm: str, batch: int, dtype=jnp.float32):
    """(loss_fn, params, batch) of ``model`` on a fixed synthetic CIFAR-shaped batch (seed 0)."""
    net = build_model(model, width=width, norm=norm, input_shape=(32, 32, 3))
    if dtype != jnp.float32:
        bridge.cast(net, dtype)
    _, params, state = bridge.split(net)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)), dtype)
    y = jnp.asarray(rng.integers(0, 10, batch))
    return bridge.make_loss_fn(net), params, bridge.make_batch(x, y, state)


def _time(fn, reps: int) -> tuple[float, float]:
    """(first call incl. compile, median of ``reps`` further calls) in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def bench_model(norm: str, args) -> list[tuple[str, float, float]]:
    model = build_model(args.model, width=args.width, norm=norm, input_shape=(32, 32, 3))
    tx = optax.sgd(0.1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, args.batch))
    objective = BridgeObjective(model)
    fns = StepFunctions(objective, tx)
    state0 = init_train_state(bridge.split(model)[1], objective.state, tx, seed=0)
    loss_fn = bridge.make_loss_fn(model)
    batch = bridge.make_batch(x, y, state0.model_state)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    rows = []
    first, t_grad = _time(lambda: grad_fn(state0.params, batch), args.reps)
    rows.append(("one gradient (value_and_grad)", first, t_grad))

    state = [init_train_state(state0.params, state0.model_state, tx, seed=0)]  # donated each call

    def plain():
        state[0], metrics = fns.train(state[0], (x, y))
        return metrics.loss

    rows.append(("plain step", *_time(plain, args.reps)))

    config = TrainConfig(dataset="synthetic", model="mlp")
    context = RunContext(objective, tx, model=model, config=config)
    steps = probes.lr_multiples(0.1, num=args.K)
    variants = getattr(args, "variants", None) or ALL_VARIANTS
    for fuse in (True, False):
        for floor in (probes.DEFAULT_FLOOR_FACTOR, 0.0):
            if f"{'fused' if fuse else 'unfused'}-{'floor' if floor else 'nofloor'}" not in variants:
                continue
            hook = StepProbeHook(step_sizes=steps, schedule=Schedule(1), fuse=fuse,
                                 floor_factor=floor)
            hook.setup(context)
            measure = jax.jit(hook.measure)

            def probed():
                b, out = fns.gradient(state[0], x, y)
                inputs = StepInputs(state[0].step, state[0].params, state[0].model_state,
                                    state[0].opt_state, b, out.loss, out.grad)
                result, _ = measure(None, inputs)
                state[0] = fns.apply(state[0], out)
                return result

            label = f"probed step, {'fused' if fuse else 'unfused'}, {'floor' if floor else 'no floor'}"
            rows.append((label, *_time(probed, args.reps)))

    def block(sync_each: bool):
        def run():
            for _ in range(args.block):
                state[0], metrics = fns.train(state[0], x, y)
                if sync_each:
                    float(metrics.loss)
            return state[0].params
        return run

    for sync_each in (True, False):
        first, t = _time(block(sync_each), max(2, args.reps // 4))
        rows.append((f"{args.block} plain steps, {'sync every step' if sync_each else 'one sync'}",
                     first, t / args.block))
    return rows, t_grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--block", type=int, default=10, help="steps per block for the sync test")
    parser.add_argument("--norms", default="none,batch")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS),
                        help="probed-step variants to time")
    args = parser.parse_args()
    args.variants = args.variants.split(",")
    print(f"# {args.model} width {args.width}, batch {args.batch}, K = {args.K}; "
          f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"{jax.device_count()} device(s)")
    for norm in args.norms.split(","):
        rows, t_grad = bench_model(norm, args)
        print(f"\n## norm = {norm}")
        print(f"| {'what':<45} | first call (s) | median (s) | ÷ gradient |")
        print(f"|{'-' * 47}|---:|---:|---:|")
        for label, first, med in rows:
            print(f"| {label:<45} | {first:8.2f} | {med:8.4f} | {med / t_grad:6.2f} |")
        probed = {label: med for label, _, med in rows}
        if "probed step, fused, floor" in probed:
            print(f"probe alone (fused, floor) ÷ (K+1)·gradient: "
                  f"{(probed['probed step, fused, floor'] - probed['plain step']) / ((args.K + 1) * t_grad):.2f}")


if __name__ == "__main__":
    main()
