"""Time landscape.probes.loss_surface against one jitted loss evaluation.

Part 1 — strategies, per model in --models: narrow VGG-11 (``build_model("vgg11", width=0.25,
norm="batch", input_shape=(32,32,3))`` on a synthetic batch of --batch images) and vgg5 (below,
batch --batch2); batch-statistics loss. For each strategy:chunk_size in --methods, the time per
grid point of a --grid×--grid grid divided by the time of one jitted loss evaluation (t_loss,
timed between the grid calls so both see the same load). ratio ≤ 1.0 means a grid point costs
no more than a standalone jitted loss call. The first call (compile + one grid) is reported
separately.

Part 2 — the quick-default model (``build_model("vgg5", width=0.25, norm="batch",
input_shape=(28,28,1))`` on ``mnist5k``, batch --batch2): the time of a 51×51 grid with the
"auto" strategy, measured directly when --direct-51 is given (or when an 11×11 grid predicts
less than --direct-limit seconds), otherwise extrapolated from an 11×11 grid (time per point
× 2601). The output says which.

All numbers come from this one run, on this machine (medians; round-robin over methods so that
load changes hit each alike).

    python benchmarks/bench_surface.py --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from landscape import build_model, data, make_batch, make_loss_fn, probes, split


def _setup(name, input_shape, dataset, batch_size):
    model = build_model(name, width=0.25, norm="batch", input_shape=input_shape)
    _, params, state = split(model)
    x, y = data.batch_at(dataset, step=0, batch_size=batch_size, seed=0)
    batch = make_batch(jnp.asarray(x), jnp.asarray(y), state)
    loss_fn = make_loss_fn(model, mode="batch_stats")
    k1, k2 = jax.random.split(jax.random.key(0))
    dirs = (probes.random_direction(k1, params), probes.random_direction(k2, params))
    return loss_fn, params, batch, dirs


def _timed(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _compare_strategies(name, setup, methods, args):
    loss_fn, params, batch, dirs = setup
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    bsz = int(batch["x"].shape[0])
    print(f"part 1 [{name}]: width 0.25, BN batch_stats, batch {bsz}, {n} params, "
          f"grid {args.grid}x{args.grid}")
    one = jax.jit(loss_fn)
    t_compile_one = _timed(lambda: one(params, batch))
    grid = jnp.linspace(-1.0, 1.0, args.grid)
    compile_s = {}
    for strategy, chunk in methods:  # first calls: compile (+ one grid)
        compile_s[(strategy, chunk)] = _timed(lambda: probes.loss_surface(
            loss_fn, params, batch, dirs, (grid, grid), strategy=strategy, chunk_size=chunk).loss)
    t_loss, per_point = [], {m: [] for m in methods}
    for _ in range(args.reps):
        for strategy, chunk in methods:  # t_loss measured between methods: same load
            t_loss.append(statistics.median(_timed(lambda: one(params, batch)) for _ in range(3)))
            t = _timed(lambda: probes.loss_surface(
                loss_fn, params, batch, dirs, (grid, grid), strategy=strategy,
                chunk_size=chunk).loss)
            per_point[(strategy, chunk)].append(t / grid.size ** 2)
    t_one = statistics.median(t_loss)
    print(f"[{name}] t_loss (one jitted loss, median) = {t_one * 1e3:.1f} ms; its compile+first "
          f"call {t_compile_one:.2f} s")
    print(f"{'model':>6} {'strategy':>9} {'chunk':>5} {'ms/point':>9} {'ratio':>6} "
          f"{'first call s':>13}")
    for m in methods:
        t = statistics.median(per_point[m])
        print(f"{name:>6} {m[0]:>9} {m[1]:>5} {t * 1e3:9.1f} {t / t_one:6.2f} "
              f"{compile_s[m]:13.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128, help="batch size for the VGG-11 part")
    ap.add_argument("--grid", type=int, default=4, help="VGG-11 grid is grid×grid points")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default="unroll:1,unroll:4,unroll:8,unroll:16,vmap:4,vmap:16",
                    help="comma-separated strategy:chunk_size ('map' is ~10x slower on CPU)")
    ap.add_argument("--batch2", type=int, default=128, help="batch size for the vgg5/mnist5k part")
    ap.add_argument("--direct-51", action="store_true", help="always time the 51×51 grid directly")
    ap.add_argument("--direct-limit", type=float, default=180.0,
                    help="time the 51×51 grid directly when the 11×11 estimate is below this (s)")
    ap.add_argument("--skip-part2", action="store_true")
    ap.add_argument("--models", default="vgg11,vgg5", help="models for the strategy comparison")
    args = ap.parse_args(argv)

    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    methods = [(m.split(":")[0], int(m.split(":")[1])) for m in args.methods.split(",") if m]
    # ---------------------------------------------------------------- part 1: strategies
    setups = {
        "vgg11": lambda: _setup("vgg11", (32, 32, 3), data.make_synthetic(
            num_train=max(512, args.batch), input_shape=(32, 32, 3)), args.batch),
        "vgg5": lambda: _setup("vgg5", (28, 28, 1), data.load_dataset("mnist5k"), args.batch2),
    }
    for name in args.models.split(","):
        _compare_strategies(name, setups[name](), methods, args)
    auto = probes.resolve_surface_strategy("auto")
    print(f"auto resolves to {auto!r} with default chunk "
          f"{probes.default_chunk_size('auto', 2601)} on this backend")
    if args.skip_part2:
        return
    # ---------------------------------------------------------------- part 2: vgg5 on mnist5k
    ds2 = data.load_dataset("mnist5k")
    loss_fn, params, batch, dirs = _setup("vgg5", (28, 28, 1), ds2, args.batch2)
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    print(f"part 2: vgg5 width 0.25, BN batch_stats, mnist5k batch {args.batch2}, {n} params")
    one = jax.jit(loss_fn)
    one(params, batch).block_until_ready()
    t_one2 = statistics.median(_timed(lambda: one(params, batch)) for _ in range(5))
    g11 = jnp.linspace(-1.0, 1.0, 11)
    first = _timed(lambda: probes.loss_surface(loss_fn, params, batch, dirs, (g11, g11)).loss)
    t11 = _timed(lambda: probes.loss_surface(loss_fn, params, batch, dirs, (g11, g11)).loss)
    est51 = t11 / 121 * 2601
    print(f"t_loss {t_one2 * 1e3:.1f} ms; 11x11 grid (auto): first call {first:.2f} s, "
          f"second {t11:.2f} s = {t11 / 121 * 1e3:.1f} ms/point (ratio {t11 / 121 / t_one2:.2f}); "
          f"51x51 extrapolated {est51:.1f} s")
    if args.direct_51 or est51 < args.direct_limit:
        g51 = jnp.linspace(-1.0, 1.0, 51)
        t51 = _timed(lambda: probes.loss_surface(loss_fn, params, batch, dirs, (g51, g51)).loss)
        print(f"51x51 grid (auto) measured directly: {t51:.1f} s "
              f"({t51 / 2601 * 1e3:.1f} ms/point, ratio {t51 / 2601 / t_one2:.2f})")
    else:
        print(f"51x51 grid not run (estimate {est51:.0f} s > {args.direct_limit:.0f} s); "
              f"the figure above is an extrapolation")


if __name__ == "__main__":
    main()
