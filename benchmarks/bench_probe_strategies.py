"""Time landscape.probes.step_probe strategies against plain gradient evaluations.

Model: VGG-11 on CIFAR-shaped inputs (32×32×3, batch 128, 10 classes) in plain JAX, optionally with
BatchNorm in train mode (batch statistics, as the paper's probe uses). Widths "narrow"
(16, 32, 64, 64, 128, 128, 128, 128; ≈0.58 M params) or "full" (64 … 512; ≈9.2 M params); 2×2 max
pool after convs 0, 1, 3, 5, 7; one linear classifier.

For each config it times (medians over --reps after one warm-up call, round-robin so that load
changes hit every function alike):
- t_grad: one jitted value_and_grad;
- step_probe with each strategy (auto — measured first by ``probes.choose_strategy``, which it
  reuses —, unroll, vmap, map, host; optionally vmap with --chunk-size);
- loop: a Python loop of K+1 jitted gradient calls (the reference a user would write by hand).
and reports ratio = probe_time / ((K+1)·t_grad): 1.0 means "as fast as K+1 separate gradients".

Prints one JSON line per (config, method), then a table.

    python benchmarks/bench_probe_strategies.py --widths narrow --K 8 --reps 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

from landscape import probes

WIDTHS = {
    "narrow": (16, 32, 64, 64, 128, 128, 128, 128),
    "full": (64, 128, 256, 256, 512, 512, 512, 512),
}
POOL_AFTER = (0, 1, 3, 5, 7)
NUM_CLASSES = 10


def make_loss(bn: bool, widths: str = "narrow", batch_size: int = 128, seed: int = 0):
    """A VGG-11 loss in plain JAX: returns (loss_fn, params, batch).

    loss_fn(params, batch) -> mean softmax cross-entropy; with bn=True each conv is followed by
    BatchNorm using the batch's statistics (train mode; no running averages are touched).
    """
    chans = WIDTHS[widths]
    key = jax.random.key(seed)
    keys = jax.random.split(key, len(chans) + 3)
    glorot = jax.nn.initializers.glorot_uniform()
    params = {"convs": [], "head": None}
    cin = 3
    for i, cout in enumerate(chans):
        layer = {"w": glorot(keys[i], (3, 3, cin, cout), jnp.float32), "b": jnp.zeros(cout)}
        if bn:
            layer["scale"] = jnp.ones(cout)
            layer["bias"] = jnp.zeros(cout)
        params["convs"].append(layer)
        cin = cout
    params["head"] = {"w": glorot(keys[-3], (cin, NUM_CLASSES), jnp.float32), "b": jnp.zeros(NUM_CLASSES)}
    batch = {
        "image": jax.random.normal(keys[-2], (batch_size, 32, 32, 3), jnp.float32),
        "label": jax.random.randint(keys[-1], (batch_size,), 0, NUM_CLASSES),
    }

    def loss_fn(params, batch):
        x = batch["image"]
        for i, layer in enumerate(params["convs"]):
            x = jax.lax.conv_general_dilated(
                x, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            ) + layer["b"]
            if bn:
                mean = jnp.mean(x, axis=(0, 1, 2))
                var = jnp.var(x, axis=(0, 1, 2))
                x = (x - mean) * jax.lax.rsqrt(var + 1e-5) * layer["scale"] + layer["bias"]
            x = jax.nn.relu(x)
            if i in POOL_AFTER:
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        logits = x.reshape(x.shape[0], -1) @ params["head"]["w"] + params["head"]["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))

    return loss_fn, params, batch


def make_loop_probe(loss_fn):
    """Reference: a Python loop of jitted gradient calls (K+1 dispatches)."""
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))

    @jax.jit
    def at(params, batch, eta, direction, grad):
        moved = optax.tree.add_scale(params, -eta, direction)
        loss, grad_moved = jax.value_and_grad(loss_fn)(moved, batch)
        return loss, optax.tree.norm(optax.tree.sub(grad_moved, grad))

    def probe(params, batch, step_sizes):
        loss0, grad = value_and_grad(params, batch)
        outs = [at(params, batch, eta, grad, grad) for eta in step_sizes]
        return loss0, jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])

    return probe


def time_call(fn, *args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def make_landscape_loss(bn: bool, widths: str = "narrow", batch_size: int = 128, seed: int = 0):
    """The same VGG-11 built by landscape.models, through the NNX bridge (batch-statistics mode)."""
    from landscape import bridge
    from landscape.models import build_model

    width = {"narrow": 0.25, "full": 1.0}[widths]
    model = build_model("vgg11", width=width, norm="batch" if bn else "none", seed=seed)
    _, params, state = bridge.split(model)
    x = jax.random.normal(jax.random.key(seed + 1), (batch_size, 32, 32, 3))
    y = jax.random.randint(jax.random.key(seed + 2), (batch_size,), 0, NUM_CLASSES)
    return bridge.make_loss_fn(model), params, bridge.make_batch(x, y, state)


def run_config(widths, bn, K, reps, methods, chunk_size, batch_size, source="landscape"):
    build = make_landscape_loss if source == "landscape" else make_loss
    loss_fn, params, batch = build(bn, widths, batch_size)
    num_params = sum(x.size for x in jax.tree.leaves(params))
    step_sizes = jnp.asarray(probes.lr_multiples(0.1, num=K), jnp.float32)
    fns = {"grad": (jax.jit(jax.value_and_grad(loss_fn)), (params, batch))}
    probes.clear_strategy_cache()
    auto_pick = (probes.choose_strategy(loss_fn, params, batch, step_sizes).strategy
                 if "auto" in methods else None)
    for method in methods:
        if method == "loop":
            fns["loop"] = (make_loop_probe(loss_fn), (params, batch, list(step_sizes)))
        elif method == "vmap_chunk":
            fns[f"vmap_chunk{chunk_size}"] = (
                probes.make_step_probe(loss_fn, strategy="vmap", chunk_size=chunk_size),
                (params, batch, step_sizes),
            )
        else:
            fns[method] = (probes.make_step_probe(loss_fn, strategy=method), (params, batch, step_sizes))

    first = {name: time_call(fn, *args) for name, (fn, args) in fns.items()}  # compile + 1 run
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, (fn, args) in fns.items():
            times[name].append(time_call(fn, *args))

    t_grad = statistics.median(times["grad"])
    t_grad_min = min(times["grad"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        evals = 1 if name == "grad" else K + 1
        rows.append({
            "widths": widths,
            "bn": bn,
            "K": K,
            "num_params": int(num_params),
            "method": name,
            "resolved": auto_pick if name == "auto" else name,
            "median_s": round(median, 4),
            "min_s": round(min(ts), 4),
            "max_s": round(max(ts), 4),
            "first_call_s": round(first[name], 3),
            "ratio": round(median / (evals * t_grad), 3),
            # Best case over reps: less sensitive to other processes on a shared machine.
            "ratio_min": round(min(ts) / (evals * t_grad_min), 3),
            "reps": reps,
            "backend": jax.default_backend(),
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", choices=sorted(WIDTHS), default="narrow")
    parser.add_argument("--source", choices=("landscape", "plain"), default="landscape",
                        help="landscape: the package's NNX VGG through the bridge; plain: pure JAX")
    parser.add_argument("--K", type=int, default=8, help="number of step sizes")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--bn", choices=("off", "on", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--methods",
        default="auto,unroll,vmap,map,host,loop",
        help="comma list from auto, unroll, vmap, map, host, loop, vmap_chunk",
    )
    parser.add_argument("--chunk-size", type=int, default=None, help="adds vmap with this chunk size")
    args = parser.parse_args(argv)
    if args.K < 1 or args.reps < 1:
        parser.error("--K and --reps must be >= 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    allowed = {"auto", "unroll", "vmap", "map", "host", "loop", "vmap_chunk"}
    bad = [m for m in methods if m not in allowed]
    if bad:
        parser.error(f"--methods: unknown {bad}; accepted: {sorted(allowed)}")
    if args.chunk_size is not None and "vmap_chunk" not in methods:
        methods.append("vmap_chunk")
    if "vmap_chunk" in methods and args.chunk_size is None:
        parser.error("--methods vmap_chunk needs --chunk-size")

    bns = {"off": [False], "on": [True], "both": [False, True]}[args.bn]
    all_rows = []
    for bn in bns:
        rows = run_config(args.widths, bn, args.K, args.reps, methods, args.chunk_size,
                          args.batch_size, args.source)
        for row in rows:
            print(json.dumps(row), flush=True)
        all_rows.extend(rows)

    print(f"\nK={args.K}, reps={args.reps}, widths={args.widths}, batch={args.batch_size}, "
          f"backend={jax.default_backend()}, devices={jax.device_count()}, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print("ratio = median / ((K+1)·median t_grad); ratio_min = min / ((K+1)·min t_grad); "
          "grad row: 1 by definition")
    header = (f"{'bn':>5} {'method':>14} {'median s':>9} {'min s':>8} {'max s':>8} {'1st call s':>10} "
              f"{'ratio':>7} {'ratio_min':>9}")
    print(header)
    print("-" * len(header))
    for row in all_rows:
        label = row["method"] + (f" ({row['resolved']})" if row["method"] == "auto" else "")
        print(f"{str(row['bn']):>5} {label:>14} {row['median_s']:>9.3f} {row['min_s']:>8.3f} "
              f"{row['max_s']:>8.3f} {row['first_call_s']:>10.2f} {row['ratio']:>7.3f} "
              f"{row['ratio_min']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
