"""Time the curvature probes on a narrow VGG-11 against one gradient and one Hessian-vector product.

Model: ``build_model("vgg11", width=0.25, norm=...)`` (channels 16…128) through the NNX bridge
(batch-statistics loss), synthetic CIFAR-shaped batch (32×32×3, default 32 images, 10 classes),
float32. Everything below is measured in ONE run (medians over --reps after a warm-up call,
round-robin so that load changes hit every function alike):

- t_grad: one jitted gradient; t_hvp: one jitted HVP (``probes.hvp``); ratio HVP/grad (goal ≤ 2.5);
- hessian_eigs (k = 1) with m = --iters Lanczos steps, strategy ``host`` (the CPU default),
  against m·t_hvp and against a Python loop of m jitted HVP calls (goal ≤ 1.2); strategy ``scan``
  with m = --loop-iters (its while loop runs convolutions ≈10× slower on CPU, so fewer steps);
- matfree 0.6.3 ``eig.eigh_partial(decomp.tridiag_sym(m, reortho="full"))`` on the same operator,
  jitted, m = --loop-iters (it is a ``fori_loop`` too) (--no-matfree to skip);
- compile time of hessian_eigs at m = 10 vs m = 80 (host: start + allocate + step + finish; scan:
  the one jit; matfree: its jit), min over --compile-reps alternating compiles (goal ≤ 1.3×);
- the number of HVPs after which the top Ritz value is within 1e-3 (relative) of the top
  eigenvalue from --ref-iters steps (goal ≤ 30), read off one --ref-iters run: the leading j×j block
  of its tridiagonal is the tridiagonal of the j-step run from the same start.

    python benchmarks/bench_lanczos.py --norm none --iters 20 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from landscape import build_model, make_batch, make_loss_fn, probes, split
from landscape.probes import _lanczos, _operators  # compile-time internals, timed piece by piece


def make_problem(norm: str, batch_size: int, seed: int = 0):
    model = build_model("vgg11", width=0.25, norm=norm, input_shape=(32, 32, 3), seed=seed)
    _, params, state = split(model)
    x = jax.random.normal(jax.random.key(seed + 1), (batch_size, 32, 32, 3), jnp.float32)
    y = jax.random.randint(jax.random.key(seed + 2), (batch_size,), 0, 10)
    return make_loss_fn(model, mode="batch_stats"), params, make_batch(x, y, state)


def timed(fn, *args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def compile_time(jitted, *args, **static):
    start = time.perf_counter()
    jitted.lower(*args, **static).compile()
    return time.perf_counter() - start


def host_compile_time(loss_fn, params, batch, m):
    """Compile time of the host strategy's executables (start, allocate, step, finish) at m."""
    key = jax.random.key(0)
    total = compile_time(_lanczos._lanczos_start, None, params, key, None)
    q0, seed = jax.eval_shape(lambda p, k: _lanczos._lanczos_start_impl(None, p, k, None), params, key)
    total += compile_time(_lanczos._lanczos_allocate, m, q0, seed)
    state = jax.eval_shape(lambda q, s: _lanczos._lanczos_allocate_impl(m, q, s), q0, seed)
    total += compile_time(_lanczos._lanczos_step, loss_fn, "hessian", None, params, batch, state)
    total += compile_time(_lanczos._eigs_finish, 1, "largest", params, state)
    return total


def make_matfree(loss_fn, m):
    from matfree import decomp, eig

    eigh = eig.eigh_partial(decomp.tridiag_sym(m, reortho="full"))

    @jax.jit
    def top(params, batch, v0):
        vals, _ = eigh(lambda v: _operators._hvp_impl(loss_fn, params, batch, v), v0)
        return jnp.max(vals)

    return top


def hvps_to_tolerance(loss_fn, params, batch, ref_iters, rtol):
    state = _lanczos._lanczos_host(loss_fn, "hessian", None, ref_iters, params, batch,
                                     jax.random.key(0), None)
    alphas, betas = np.asarray(state.alphas, np.float64), np.asarray(state.betas, np.float64)
    tops = []
    for j in range(1, ref_iters + 1):
        T = np.diag(alphas[:j]) + np.diag(betas[: j - 1], 1) + np.diag(betas[: j - 1], -1)
        tops.append(np.linalg.eigvalsh(T)[-1])
    ref = tops[-1]
    within = [j + 1 for j, t in enumerate(tops) if abs(t - ref) <= rtol * abs(ref)]
    first = next(j for j in within if all(abs(t - ref) <= rtol * abs(ref) for t in tops[j - 1:]))
    return first, ref, tops


def run(norm, args):
    loss_fn, params, batch = make_problem(norm, args.batch_size)
    n = sum(x.size for x in jax.tree.leaves(params))
    unravel = ravel_pytree(params)[1]
    m = args.iters
    grad = jax.jit(jax.grad(loss_fn))
    v = jax.tree.map(lambda a: jnp.ones_like(a), params)
    hvp_jit = jax.jit(lambda p, b, vv: _operators._hvp_impl(loss_fn, p, b, vv))

    def hvp_loop(p, b, vv):
        out = vv
        for _ in range(m):
            out = hvp_jit(p, b, vv)
        return out

    key = jax.random.key(0)
    ms = args.loop_iters  # m of the while-loop versions (≈10× slower per step on CPU)
    fns = {
        "grad": (grad, (params, batch)),
        "hvp": (hvp_jit, (params, batch, v)),
        f"{m} HVPs (Python loop)": (hvp_loop, (params, batch, v)),
    }
    iters = {}
    for strategy in args.strategies:
        m_s = m if strategy == "host" else ms
        name = f"hessian_eigs {strategy} m={m_s}"
        iters[name] = m_s
        fns[name] = (
            lambda p, b, s=strategy, m_s=m_s: probes.hessian_eigs(loss_fn, p, b, 1, key=key, num_iters=m_s,
                                                                  strategy=s).eigenvalues,
            (params, batch),
        )
    if args.matfree:
        top = make_matfree(loss_fn, ms)
        v0 = unravel(jax.random.rademacher(key, (n,), jnp.float32))
        name = f"matfree eigh_partial m={ms}"
        iters[name] = ms
        fns[name] = (top, (params, batch, v0))
    iters[f"{m} HVPs (Python loop)"] = m

    first = {name: timed(fn, *a) for name, (fn, a) in fns.items()}
    times = {name: [] for name in fns}
    for rep in range(args.reps):
        for name, (fn, a) in fns.items():
            if rep >= args.slow_reps and ("scan" in name or "matfree" in name):
                continue  # while-loop versions are ≈10× slower on CPU: fewer reps
            times[name].append(timed(fn, *a))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    t_hvp = med["hvp"]

    print(f"\n== narrow VGG-11, norm={norm}, batch {args.batch_size}, {n} params, "
          f"backend {jax.default_backend()}, reps {args.reps} ==")
    print(f"{'function':34s} {'median s':>9s} {'min s':>8s} {'first call s':>12s} {'/ t_grad':>9s} {'/ (m·t_hvp)':>11s}"
          f"  reps")
    for name, ts in times.items():
        ratio_hvp = med[name] / (iters.get(name, 1) * t_hvp)
        print(f"{name:34s} {med[name]:9.4f} {min(ts):8.4f} {first[name]:12.2f} "
              f"{med[name] / med['grad']:9.2f} {ratio_hvp:11.2f}  {len(ts)}")

    print(f"\ncompile time (s), m = 10 vs m = 80 (min over {args.compile_reps} alternating compiles; "
          "matfree once):")
    compiles = {}
    p_b = (params, batch)
    for rep in range(args.compile_reps):
        for m_c in (10, 80):
            # A fresh loss function object per measurement: nothing comes from the jit caches.
            fresh = lambda p, b: loss_fn(p, b)
            times_c = {"host": host_compile_time(fresh, *p_b, m_c)}
            if "scan" in args.strategies:
                times_c["scan"] = compile_time(_lanczos._eigs_scan, fresh, "hessian", None, m_c, 1,
                                               "largest", params, batch, key, None)
            if args.matfree and rep == 0:
                times_c["matfree"] = compile_time(make_matfree(fresh, m_c), params, batch,
                                                  unravel(jax.random.rademacher(key, (n,), jnp.float32)))
            for what, t in times_c.items():
                compiles.setdefault((what, m_c), []).append(t)
    compiles = {k: min(v) for k, v in compiles.items()}
    for what in sorted({w for w, _ in compiles}):
        c10, c80 = compiles[(what, 10)], compiles[(what, 80)]
        print(f"  {what:8s} m=10: {c10:6.2f}   m=80: {c80:6.2f}   ratio {c80 / c10:5.2f}")

    first_j, ref, tops = hvps_to_tolerance(loss_fn, params, batch, args.ref_iters, 1e-3)
    print(f"\ntop eigenvalue (ref, {args.ref_iters} Lanczos steps): {ref:.6g}")
    print("top Ritz value after j HVPs: " + ", ".join(f"{j}:{tops[j - 1]:.5g}" for j in (1, 2, 5, 10, 15, 20, 30)
                                                       if j <= len(tops)))
    print(f"HVPs to top eigenvalue within 1e-3 relative (and staying there): {first_j}")

    mins = {name: min(ts) for name, ts in times.items()}
    print("\nratios (goals); median-based, then min-based (less sensitive to other processes):")
    print(f"  HVP / grad                          {t_hvp / med['grad']:.2f} | {mins['hvp'] / mins['grad']:.2f}"
          "   (≤ 2.5)")
    loop = f"{m} HVPs (Python loop)"
    for name, m_s in iters.items():
        if "HVPs" in name:
            continue
        print(f"  {name:30s} / (m·t_hvp) {med[name] / (m_s * t_hvp):5.2f} | {mins[name] / (m_s * mins['hvp']):5.2f}"
              f"   (≤ 1.2);  / (m · Python-loop HVP) {med[name] / (m_s * med[loop] / m):5.2f} | "
              f"{mins[name] / (m_s * mins[loop] / m):5.2f}")
    for what in sorted({w for w, _ in compiles}):
        print(f"  compile m=80 / m=10 ({what:7s})      {compiles[(what, 80)] / compiles[(what, 10)]:.2f}   (≤ 1.3)")
    print(f"  HVPs to 1e-3 top eigenvalue         {first_j}   (≤ 30)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norm", choices=("none", "batch", "both"), default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=20, help="Lanczos steps m of the timed calls")
    parser.add_argument("--ref-iters", type=int, default=40, help="steps of the reference top eigenvalue")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slow-reps", type=int, default=1, help="reps of the while-loop versions")
    parser.add_argument("--strategies", default="host,scan", help="comma list from host, scan")
    parser.add_argument("--loop-iters", type=int, default=3,
                        help="m of the while-loop versions (scan strategy, matfree)")
    parser.add_argument("--compile-reps", type=int, default=2)
    parser.add_argument("--matfree", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in args.strategies if s not in ("host", "scan")]
    if bad:
        parser.error(f"--strategies: unknown {bad}; accepted: host, scan")
    if args.iters < 1 or args.reps < 1 or args.ref_iters < 2:
        parser.error("--iters and --reps must be >= 1, --ref-iters >= 2")
    for norm in (("none", "batch") if args.norm == "both" else (args.norm,)):
        run(norm, args)


if __name__ == "__main__":
    main()
