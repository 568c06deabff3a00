"""The two layouts of a probe over devices, timed in one run: data (split the batch) vs points.

For the Figure-4 step probe with K ∈ ``--Ks``, on ``--devices`` devices (simulated CPU devices
unless a real multi-device machine is used), medians of ``--reps`` calls:

- ``one device``   — the probe on one device (the reference),
- ``data``         — θ replicated, the minibatch split over the n devices: every point on every
                     device, each on B/n examples (a gradient all-reduce per point),
- ``points``       — each device evaluates ⌈K/n⌉ points on the whole minibatch
                     (``step_probe(..., mesh=mesh)``; no gradient all-reduce, scalars only),

as ratios to one gradient on one device and per point (cost should grow linearly in K), and the
compiled temporary memory of the probe with ``strategy="vmap"`` over all K points against
``chunk_size`` points at a time (XLA's ``memory_analysis``; how a chunk bounds probe memory).

On this project's 2-core CPU the simulated devices share two cores, so the times measure
overhead and correctness, not speed-up; a machine with n real devices shows the speed-up.

Usage::

    python benchmarks/bench_parallel.py                 # 4 simulated CPU devices
    python benchmarks/bench_parallel.py --devices 8 --width 1 --batch 128   # a multi-GPU host
    python benchmarks/bench_parallel.py --devices 1 --width 1 --batch 128 --scaling 8   # one GPU:
        # predict both layouts on 8 such GPUs from one gradient at batch 128 and at batch 16
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--Ks", default="4,8,16")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=2, help="chunk_size of the memory comparison")
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--scaling", type=int, default=0, metavar="N",
                        help="also time one gradient at batch B/N on one device and predict both "
                             "layouts on N devices (for choosing a layout on a one-GPU machine)")
    return parser.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import _time  # noqa: E402

from landscape import bridge, parallel, probes  # noqa: E402
from landscape.models import build_model  # noqa: E402


def temp_bytes(fn, *args) -> float:
    """Compiled temporary memory of ``fn(*args)`` in MiB (NaN where the backend does not say)."""
    try:
        analysis = fn.lower(*args).compile().memory_analysis()
        return analysis.temp_size_in_bytes / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return float("nan")


def main(args: argparse.Namespace) -> None:
    if jax.device_count() < args.devices:
        raise SystemExit(f"only {jax.device_count()} devices; set XLA_FLAGS before starting")
    model = build_model(args.model, width=args.width, norm=args.norm, input_shape=(32, 32, 3))
    _, params, state = bridge.split(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    loss_fn = bridge.make_loss_fn(model)
    batch1 = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)
    mesh = parallel.make_mesh(args.devices)
    xs, ys = parallel.shard_batch((x, y), mesh)
    batchn = bridge.make_batch(xs, ys, parallel.replicate(state, mesh))
    paramsn = parallel.replicate(params, mesh)

    grad = jax.jit(jax.value_and_grad(loss_fn))
    _, t_grad = _time(lambda: grad(params, batch1), args.reps)
    _, t_grad_n = _time(lambda: grad(paramsn, batchn), args.reps)
    print(f"# {args.model} width {args.width} norm {args.norm}, batch {args.batch}, "
          f"{args.devices} x {jax.devices()[0].device_kind}; jax {jax.__version__}")
    print(f"one gradient: 1 device {1e3 * t_grad:.1f} ms, data-parallel over {args.devices} "
          f"{1e3 * t_grad_n:.1f} ms")
    print("| K | layout | first call (s) | median (ms) | ÷ (K+1)·gradient | ms per point |")
    print("|---:|---|---:|---:|---:|---:|")
    for K in [int(k) for k in args.Ks.split(",")]:
        etas = probes.lr_multiples(0.1, num=K)
        cases = {
            "one device": (probes.make_step_probe(loss_fn, floor_factor=0), params, batch1),
            "data": (probes.make_step_probe(loss_fn, floor_factor=0), paramsn, batchn),
            "points": (probes.make_step_probe(loss_fn, floor_factor=0, mesh=mesh), paramsn, batchn),
        }
        for label, (probe, p, b) in cases.items():
            first, t = _time(lambda: probe(p, b, etas), args.reps)
            print(f"| {K} | {label} | {first:.1f} | {1e3 * t:.1f} | {t / ((K + 1) * t_grad):.2f} | "
                  f"{1e3 * t / (K + 1):.1f} |", flush=True)
    if args.scaling > 1:
        n = args.scaling
        small = bridge.make_batch(jnp.asarray(x[:args.batch // n]), jnp.asarray(y[:args.batch // n]),
                                  state)
        _, t_small = _time(lambda: grad(params, small), args.reps)
        print(f"batch scaling on one device: gradient at batch {args.batch} {1e3 * t_grad:.2f} ms, "
              f"at batch {args.batch // n} {1e3 * t_small:.2f} ms ({t_grad / t_small:.2f}x faster "
              f"for {n}x fewer examples)")
        for K in [int(k) for k in args.Ks.split(",")]:
            data, points = (K + 1) * t_small, -(-(K + 1) // n) * t_grad
            print(f"predicted K = {K} probe on {n} such devices (compute only, no communication): "
                  f"data {1e3 * data:.1f} ms, points {1e3 * points:.1f} ms")
    K = max(int(k) for k in args.Ks.split(","))
    etas = probes.lr_multiples(0.1, num=K)
    full = probes.make_step_probe(loss_fn, strategy="vmap", floor_factor=0)
    chunked = probes.make_step_probe(loss_fn, strategy="vmap", chunk_size=args.chunk, floor_factor=0)
    print(f"temporary memory of the probe, K = {K}, one device: vmap over all K "
          f"{temp_bytes(full, params, batch1, etas):.1f} MiB, chunk_size={args.chunk} "
          f"{temp_bytes(chunked, params, batch1, etas):.1f} MiB")


if __name__ == "__main__":
    main(ARGS)
