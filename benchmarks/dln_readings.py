"""Which reading of Santurkar et al.'s deep-linear-network (DLN) setup reproduces "BN is smoother"?

Issue 9, item 2. The paper's DLN (App. A.1; /work/shared/REFERENCE.md): minimise ‖W_k⋯W_1 x − Ax‖²
with k = 25 square 10×10 layers, Gaussian A and inputs, 1 000 samples = full batch, gradient descent
at lr 1e-6 for 10 000 steps, Glorot init; Figure-4 probes over η ∈ [1/100, 30] × lr. Two things are
unstated and both change the picture:

- ``--losses``: the loss scale. ``mean`` = mean_i ‖f(x_i) − A x_i‖² (what ``landscape.bridge`` does
  for "mse"); ``sum`` = Σ_i ‖f(x_i) − A x_i‖² = 1 000 × mean (so lr 1e-6 on the sum is lr 1e-3 on the
  mean).
- ``--placements``: where BatchNorm sits. ``after_but_last`` (the package's ``DeepLinear`` now: BN
  after layers 1…24, none after layer 25), ``after_all`` (after every layer, including the last),
  ``before`` (BN on the input of every layer, before its linear map).

The network here is a pure-JAX DLN (25 stacked 10×10 matrices; BN = per-unit standardisation over the
1 000 samples with the biased variance, ε = 1e-5 like ``landscape.normalization.BatchNorm``, and
learnable γ/β; no biases anywhere). Its initial matrices are the package's ``DeepLinear`` Glorot
draws (same seed for BN and vanilla, cast to float64). ``--check`` compares loss and gradients with
the package's ``DeepLinear`` (norm "none" and "batch", i.e. the ``after_but_last``/``mean``
reading) along a few GD steps, in float64.

Training is ``lax.scan`` over steps inside one jit; every ``--probe-every`` steps the package's
:func:`landscape.probes.make_step_probe` measures L(θ − ηg), ‖∇L(θ − ηg) − g‖ and the effective β at
η ∈ ``lr_multiples(lr, 0.01, 30, 8)`` on the loss being trained.

    PYTHONPATH=$PWD python benchmarks/dln_readings.py --check
    PYTHONPATH=$PWD python benchmarks/dln_readings.py                 # 2 losses × 2 placements
    PYTHONPATH=$PWD python benchmarks/dln_readings.py --precision     # float32 vs float64 vanilla β

Writes ``benchmarks/results/dln_<loss>_<placement>.png`` and ``benchmarks/results/dln_readings.json``
(merging into an existing JSON, keyed by reading).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from landscape import bridge, data as data_lib, probes  # noqa: E402
from landscape.models import build_model  # noqa: E402

LOSSES = ("mean", "sum")
PLACEMENTS = ("after_but_last", "after_all", "before")
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------------
# the model


def num_norms(placement: str, depth: int) -> int:
    """How many BN layers a ``placement`` puts in a ``depth``-layer DLN."""
    return depth - 1 if placement == "after_but_last" else depth


def init_params(*, depth: int, dim: int, seed: int, placement: str | None, dtype) -> dict:
    """{"W": (depth, dim, dim)} (+ "gamma", "beta": (n_bn, dim) when ``placement``), x ↦ x @ W[k].

    W are the package's DeepLinear Glorot-uniform draws for ``seed`` (identical for norm "none" and
    "batch"), cast to ``dtype``; γ = 1, β = 0.
    """
    model = build_model("dln", norm="none", seed=seed, depth=depth, dim=dim)
    _, p, _ = bridge.split(model)
    w = np.stack([np.asarray(p["blocks"][k]["proj"]["kernel"]) for k in range(depth)])
    params = {"W": jnp.asarray(w, dtype)}
    if placement is not None:
        n = num_norms(placement, depth)
        params["gamma"] = jnp.ones((n, dim), dtype)
        params["beta"] = jnp.zeros((n, dim), dtype)
    return params


def _bn(h, gamma, beta, eps):
    mu = jnp.mean(h, axis=0)
    var = jnp.mean(jnp.square(h - mu), axis=0)
    return gamma * (h - mu) / jnp.sqrt(var + eps) + beta


def forward(params: dict, x, *, placement: str | None, eps: float):
    """f(x) = W_k ⋯ W_1 x with BN where ``placement`` puts it (None: vanilla).

    A ``lax.scan`` over the stacked layers (the unrolled 25-layer graph, differentiated at 9 points
    per probe, took 85 s to compile on the 2-core CPU).
    """
    w = params["W"]
    if placement is None:
        return jax.lax.scan(lambda h, wk: (h @ wk, None), x, w)[0]
    g, b = params["gamma"], params["beta"]
    if placement == "before":
        return jax.lax.scan(lambda h, p: (_bn(h, p[1], p[2], eps) @ p[0], None), x, (w, g, b))[0]
    if placement == "after_all":
        return jax.lax.scan(lambda h, p: (_bn(h @ p[0], p[1], p[2], eps), None), x, (w, g, b))[0]
    if placement == "after_but_last":
        n = w.shape[0] - 1
        h = jax.lax.scan(lambda h, p: (_bn(h @ p[0], p[1], p[2], eps), None), x, (w[:n], g, b))[0]
        return h @ w[n]
    raise ValueError(f"unknown placement {placement!r}; expected one of {PLACEMENTS}")


def make_loss(*, loss: str, placement: str | None, eps: float):
    """loss_fn(params, batch) for batch = {"x", "y"}: mean or sum over samples of ‖f(x) − y‖²."""

    def loss_fn(params, batch):
        sq = jnp.sum(jnp.square(forward(params, batch["x"], placement=placement, eps=eps)
                                - batch["y"]), axis=-1)
        return jnp.sum(sq) if loss == "sum" else jnp.mean(sq)

    loss_fn.__name__ = f"dln_{loss}_{placement or 'vanilla'}"
    return loss_fn


# ----------------------------------------------------------------------------------------------
# training with probes


def make_run(loss_fn, *, lr: float, steps: int, probe_every: int, step_sizes):
    """Jitted ``run(params, batch) -> (final params, per-step losses, stacked probes)``.

    Probes at steps 0, probe_every, …, steps − probe_every (before that step's update) and at
    ``steps`` (the final parameters). Plain GD: θ ← θ − lr ∇L(θ).
    """
    if steps % probe_every:
        raise ValueError("steps must be a multiple of probe_every")
    probe = probes.make_step_probe(loss_fn, strategy="unroll")
    value_and_grad = jax.value_and_grad(loss_fn)

    def gd(params, batch):
        def body(p, _):
            value, g = value_and_grad(p, batch)
            return jax.tree.map(lambda a, b: a - lr * b, p, g), value
        return jax.lax.scan(body, params, None, length=probe_every)

    @jax.jit
    def run(params, batch):
        etas = jnp.asarray(step_sizes, params["W"].dtype)

        def chunk(p, _):
            r = probe(p, batch, etas)
            p, losses = gd(p, batch)
            return p, (losses, r)

        final, (losses, recs) = jax.lax.scan(chunk, params, None, length=steps // probe_every)
        last = probe(final, batch, etas)
        recs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), recs, last)
        return final, losses.reshape(-1), recs

    return run


def dataset(*, num_samples: int, dim: int, seed: int, dtype):
    x, y, _ = data_lib.make_dln_regression(num_samples=num_samples, dim=dim, seed=seed,
                                           dtype=np.float64)
    return {"x": jnp.asarray(x, dtype), "y": jnp.asarray(y, dtype)}


def train_one(args, *, loss: str, placement: str | None, dtype=jnp.float64) -> dict:
    """Train one net (placement None = vanilla); returns arrays and timings."""
    params = init_params(depth=args.depth, dim=args.dim, seed=args.seed, placement=placement,
                         dtype=dtype)
    batch = dataset(num_samples=args.num_samples, dim=args.dim, seed=args.seed, dtype=dtype)
    loss_fn = make_loss(loss=loss, placement=placement, eps=args.eps)
    etas = probes.lr_multiples(args.lr, args.eta_lo, args.eta_hi, args.num_etas)
    run = make_run(loss_fn, lr=args.lr, steps=args.steps, probe_every=args.probe_every,
                   step_sizes=etas)
    t0 = time.perf_counter()
    compiled = run.lower(params, batch).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    final, losses, recs = jax.block_until_ready(compiled(params, batch))
    t_run = time.perf_counter() - t0
    recs = {k: np.asarray(v, np.float64) for k, v in recs._asdict().items()}
    steps = np.arange(0, args.steps + 1, args.probe_every)
    return {"final": final, "losses": np.asarray(losses, np.float64), "probe": recs,
            "probe_steps": steps, "etas": np.asarray(etas), "compile_s": t_compile,
            "run_s": t_run, "batch": batch, "loss_fn": loss_fn}


# ----------------------------------------------------------------------------------------------
# summaries


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def run_summary(res: dict, lr: float) -> dict:
    losses = res["losses"]
    rec = res["probe"]
    beta = rec["effective_beta"]
    finite = np.isfinite(losses)
    bad = np.flatnonzero(~finite)
    final_loss = float(rec["loss0"][-1])
    return {
        "initial_loss": _f(losses[0]),
        "final_loss": _f(final_loss),
        "min_loss": _f(np.nanmin(losses)),
        "diverged": bool(bad.size) or not math.isfinite(final_loss),
        "first_nonfinite_step": int(bad[0]) if bad.size else None,
        "loss_increases": int(np.sum(np.diff(losses[finite]) > 0)),
        "max_loss_over_initial": _f(np.nanmax(losses) / losses[0]),
        "beta_initial": _f(beta[0]),
        "beta_final": _f(beta[-1]),
        "beta_max": _f(np.nanmax(beta)),
        "beta_median": _f(np.nanmedian(beta)),
        "beta_times_lr_final": _f(beta[-1] * lr),
        "beta_times_lr_max": _f(np.nanmax(beta) * lr),
        "grad_change_max_median": _f(np.nanmedian(rec["grad_change"].max(axis=1))),
        "grad_change_max_final": _f(rec["grad_change"][-1].max()),
        "loss_range_median": _f(np.nanmedian(rec["loss"].max(axis=1) - rec["loss"].min(axis=1))),
        "loss_range_final": _f(rec["loss"][-1].max() - rec["loss"][-1].min()),
        "grad_norm_final": _f(rec["grad_norm"][-1]),
        "compile_s": round(res["compile_s"], 2),
        "run_s": round(res["run_s"], 2),
    }


def compare(series: dict, quarters: int = 4) -> dict:
    """BN vs vanilla over the probed steps (from the stored ``series``).

    Per quantity q ∈ {effective β, max_η gradient change, loss range max_η − min_η}: the fraction of
    probed steps with q_BN < q_vanilla (overall and per quarter of training), the fraction with
    q_BN < q_vanilla / 2 ("clearly below": at the edge of stability both nets sit at β ≈ 2/lr and a
    plain "below" is a coin toss), the median ratio q_BN / q_vanilla per quarter, the last step up to
    which BN stayed below without interruption, and the final ratio.
    """
    steps = np.asarray(series["steps"], np.float64)
    get = lambda k: np.asarray([np.nan if v is None else v for v in series[k]], np.float64)
    pairs = {
        "beta": (get("batchnorm_effective_beta"), get("vanilla_effective_beta")),
        "grad_change_max": (get("batchnorm_grad_change_max"), get("vanilla_grad_change_max")),
        "loss_range": (get("batchnorm_loss_max") - get("batchnorm_loss_min"),
                       get("vanilla_loss_max") - get("vanilla_loss_min")),
    }
    edges = np.linspace(0, steps[-1], quarters + 1)
    masks = [(steps >= edges[i]) & ((steps < edges[i + 1]) if i < quarters - 1 else True)
             for i in range(quarters)]
    out = {"quarters": [[float(edges[i]), float(edges[i + 1])] for i in range(quarters)]}
    for name, (b, v) in pairs.items():
        ok = np.isfinite(b) & np.isfinite(v)
        below, clearly = (b < v) & ok, (b < 0.5 * v) & ok
        frac = lambda m, sel: _f(sel[m & ok].sum() / max((m & ok).sum(), 1))
        out[f"frac_bn_{name}_below"] = frac(np.ones_like(ok), below)
        out[f"frac_bn_{name}_below_by_quarter"] = [frac(m, below) for m in masks]
        out[f"frac_bn_{name}_clearly_below"] = frac(np.ones_like(ok), clearly)
        out[f"frac_bn_{name}_clearly_below_by_quarter"] = [frac(m, clearly) for m in masks]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = b / v
        out[f"median_ratio_bn_over_vanilla_{name}_by_quarter"] = [
            _f(np.median(r[m & ok])) if (m & ok).any() else None for m in masks]
        stay = np.flatnonzero(~below)
        out[f"bn_{name}_below_until_step"] = int(steps[stay[0]] - 1) if stay.size else int(steps[-1])
        out[f"ratio_bn_over_vanilla_{name}_final"] = _f(r[-1])
    return out


def fig4_summary(res: dict) -> dict:
    rec = res["probe"]
    return {"steps": res["probe_steps"], "loss_min": rec["loss"].min(1), "loss_max": rec["loss"].max(1),
            "grad_change_min": rec["grad_change"].min(1), "grad_change_max": rec["grad_change"].max(1),
            "effective_beta": rec["effective_beta"], "grad_norm": rec["grad_norm"]}


# ----------------------------------------------------------------------------------------------
# the check against the package's DeepLinear


def check_against_package(args) -> dict:
    """Loss and gradients of the pure DLN vs ``DeepLinear`` (mean loss, BN after all but last).

    Runs ``n`` GD steps on each side independently (float64) and reports the largest relative
    difference of the loss and of every gradient leaf at every step.
    """
    out = {}
    batch = dataset(num_samples=args.num_samples, dim=args.dim, seed=args.seed, dtype=jnp.float64)
    for norm, placement in (("none", None), ("batch", "after_but_last")):
        model = build_model("dln", norm=norm, seed=args.seed, depth=args.depth, dim=args.dim,
                            norm_options={"epsilon": args.eps} if norm == "batch" else None)
        _, pp, state = bridge.split(model)
        pp = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), pp)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state)
        pkg_loss = bridge.make_loss_fn(model)
        pbatch = bridge.make_batch(batch["x"], batch["y"], state)
        pkg_vg = jax.jit(jax.value_and_grad(pkg_loss))
        mine = init_params(depth=args.depth, dim=args.dim, seed=args.seed, placement=placement,
                           dtype=jnp.float64)
        my_vg = jax.jit(jax.value_and_grad(make_loss(loss="mean", placement=placement, eps=args.eps)))
        worst_loss, worst_grad = 0.0, 0.0
        rows = []
        for step in range(args.check_steps):
            lp, gp = pkg_vg(pp, pbatch)
            lm, gm = my_vg(mine, batch)
            gW = np.stack([np.asarray(gp["blocks"][k]["proj"]["kernel"]) for k in range(args.depth)])
            diffs = {"W": np.max(np.abs(gW - np.asarray(gm["W"]))) / np.max(np.abs(gW))}
            if placement is not None:
                n = num_norms(placement, args.depth)
                gs = np.stack([np.asarray(gp["blocks"][k]["norm"]["scale"]) for k in range(n)])
                gb = np.stack([np.asarray(gp["blocks"][k]["norm"]["bias"]) for k in range(n)])
                diffs["gamma"] = np.max(np.abs(gs - np.asarray(gm["gamma"]))) / np.max(np.abs(gs))
                diffs["beta"] = np.max(np.abs(gb - np.asarray(gm["beta"]))) / max(np.max(np.abs(gb)), 1e-300)
            dl = abs(float(lp) - float(lm)) / abs(float(lp))
            worst_loss = max(worst_loss, dl)
            worst_grad = max(worst_grad, *diffs.values())
            rows.append({"step": step, "loss_pkg": float(lp), "loss_mine": float(lm),
                         "rel_loss_diff": dl, **{f"rel_grad_diff_{k}": float(v) for k, v in diffs.items()}})
            pp = jax.tree.map(lambda a, b: a - args.lr * b, pp, gp)
            mine = jax.tree.map(lambda a, b: a - args.lr * b, mine, gm)
        out[norm] = {"steps": args.check_steps, "max_rel_loss_diff": worst_loss,
                     "max_rel_grad_diff": worst_grad, "rows": rows}
        print(f"check {norm:5s}: max rel loss diff {worst_loss:.2e}, max rel grad diff "
              f"{worst_grad:.2e} over {args.check_steps} GD steps", flush=True)
    return out


# ----------------------------------------------------------------------------------------------
# float32 vs float64


def precision_study(args) -> dict:
    """Vanilla net (``--stats-loss``): effective β after ``steps`` in float32 and float64, per η."""
    out = {}
    finals = {}
    for name, dtype in (("float64", jnp.float64), ("float32", jnp.float32)):
        res = train_one(args, loss=args.stats_loss, placement=None, dtype=dtype)
        rec = res["probe"]
        g = rec["grad_norm"][-1]
        ratio = rec["grad_change"][-1] / (res["etas"] * g)
        finals[name] = res
        out[name] = {"beta_final": _f(rec["effective_beta"][-1]), "final_loss": _f(rec["loss0"][-1]),
                     "grad_norm_final": _f(g), "eta": res["etas"].tolist(),
                     "grad_change_final": rec["grad_change"][-1].tolist(),
                     "ratio_per_eta": ratio.tolist(), "run_s": round(res["run_s"], 2)}
        print(f"{name}: β = {out[name]['beta_final']:.4g}, ratio per η = "
              + ", ".join(f"{r:.4g}" for r in ratio), flush=True)
    # float64-trained parameters probed in float32: separates probe rounding from trajectory drift
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), finals["float64"]["final"])
    b32 = jax.tree.map(lambda a: a.astype(jnp.float32), finals["float64"]["batch"])
    etas = finals["float64"]["etas"]
    r = probes.step_probe(finals["float32"]["loss_fn"], p32, b32, etas)
    ratio = np.asarray(r.grad_change, np.float64) / (etas * float(r.grad_norm))
    out["float64_params_probed_in_float32"] = {
        "beta": _f(r.effective_beta), "grad_change": np.asarray(r.grad_change, np.float64).tolist(),
        "ratio_per_eta": ratio.tolist()}
    print("float64 params, float32 probe: β = %.4g, ratio per η = %s"
          % (float(r.effective_beta), ", ".join(f"{x:.4g}" for x in ratio)), flush=True)
    w64, w32 = finals["float64"]["final"]["W"], finals["float32"]["final"]["W"]
    out["rel_param_diff_f32_vs_f64"] = _f(np.linalg.norm(np.asarray(w32, np.float64) - np.asarray(w64))
                                          / np.linalg.norm(np.asarray(w64)))
    return out


# ----------------------------------------------------------------------------------------------
# what happens inside the BN net when its β jumps


def bn_input_variances(params: dict, x, *, placement: str, eps: float):
    """(n_bn, dim) batch variances of every BN layer's input (biased, over the samples)."""
    w, g, b = params["W"], params["gamma"], params["beta"]
    if placement == "before":
        def body(h, p):
            return _bn(h, p[1], p[2], eps) @ p[0], jnp.var(h, axis=0)
        return jax.lax.scan(body, x, (w, g, b))[1]
    n = g.shape[0]

    def body(h, p):
        y = h @ p[0]
        return _bn(y, p[1], p[2], eps), jnp.var(y, axis=0)
    return jax.lax.scan(body, x, (w[:n], g, b))[1]


def bn_stats(args, placement: str) -> dict:
    """Every ``--probe-every`` steps of the BN run (mean loss): the smallest BN-input variance
    (over units, per layer), min |γ|, max |β| and the effective β, to see why β jumps."""
    params = init_params(depth=args.depth, dim=args.dim, seed=args.seed, placement=placement,
                         dtype=jnp.float64)
    batch = dataset(num_samples=args.num_samples, dim=args.dim, seed=args.seed, dtype=jnp.float64)
    loss_fn = make_loss(loss=args.stats_loss, placement=placement, eps=args.eps)
    vg = jax.value_and_grad(loss_fn)
    probe = probes.make_step_probe(loss_fn, strategy="unroll")
    etas = jnp.asarray(probes.lr_multiples(args.lr, args.eta_lo, args.eta_hi, args.num_etas))

    @jax.jit
    def run(params):
        def chunk(p, _):
            var = bn_input_variances(p, batch["x"], placement=placement, eps=args.eps)
            rec = (var.min(axis=1), jnp.abs(p["gamma"]).min(), jnp.abs(p["beta"]).max(),
                   probe(p, batch, etas).effective_beta)

            def body(q, _):
                _, g = vg(q, batch)
                return jax.tree.map(lambda a, c: a - args.lr * c, q, g), None
            return jax.lax.scan(body, p, None, length=args.probe_every)[0], rec
        return jax.lax.scan(chunk, params, None, length=args.steps // args.probe_every)[1]

    min_var, min_gamma, max_beta, beta = (np.asarray(a, np.float64) for a in run(params))
    steps = np.arange(0, args.steps, args.probe_every)
    out = {"steps": steps.tolist(), "min_var_over_layers": min_var.min(axis=1).tolist(),
           "argmin_layer": min_var.argmin(axis=1).tolist(), "min_abs_gamma": min_gamma.tolist(),
           "max_abs_beta": max_beta.tolist(), "effective_beta": beta.tolist()}
    jump = int(np.argmax(beta > 1e5)) if (beta > 1e5).any() else None
    out["first_step_beta_above_1e5"] = int(steps[jump]) if jump is not None else None
    print(f"bn-stats {args.stats_loss} {placement}: β>1e5 from step {out['first_step_beta_above_1e5']}; "
          "step, min var, layer, min|γ|, β: "
          + "; ".join(f"{steps[i]} {min_var.min(1)[i]:.2e} {min_var.argmin(1)[i]} {min_gamma[i]:.2e} "
                      f"{beta[i]:.2e}" for i in range(0, len(steps), max(1, len(steps) // 20))),
          flush=True)
    return out


# ----------------------------------------------------------------------------------------------
# where does gradient descent diverge?


def lr_sweep(args) -> dict:
    """Final / peak loss after ``--sweep-steps`` GD steps at each ``--sweep-lrs`` (mean loss).

    The sum loss at lr L follows exactly the mean-loss trajectory at lr 1 000·L (for 1 000 samples),
    so the mean-loss sweep covers both readings: sum @ 1e-6 = mean @ 1e-3. "diverged": a non-finite
    loss, or a final loss above the initial one.
    """
    out = {}
    batch = dataset(num_samples=args.num_samples, dim=args.dim, seed=args.seed, dtype=jnp.float64)
    for placement in [None, *args.placements]:
        name = placement or "vanilla"
        loss_fn = make_loss(loss="mean", placement=placement, eps=args.eps)
        vg = jax.value_and_grad(loss_fn)

        @jax.jit
        def run(params, lr):
            def body(p, _):
                value, g = vg(p, batch)
                return jax.tree.map(lambda a, b: a - lr * b, p, g), value
            return jax.lax.scan(body, params, None, length=args.sweep_steps)[1]

        rows = []
        for lr in args.sweep_lrs:
            params = init_params(depth=args.depth, dim=args.dim, seed=args.seed, placement=placement,
                                 dtype=jnp.float64)
            t0 = time.perf_counter()
            losses = np.asarray(run(params, jnp.float64(lr)), np.float64)
            fin = np.isfinite(losses)
            final = losses[-1]
            diverged = (not fin.all()) or final > losses[0]
            rows.append({"lr": lr, "initial_loss": _f(losses[0]), "final_loss": _f(final),
                         "peak_over_initial": _f(np.nanmax(np.where(fin, losses, np.inf)) / losses[0]),
                         "first_nonfinite_step": int(np.flatnonzero(~fin)[0]) if not fin.all() else None,
                         "loss_increases": int(np.sum(np.diff(losses[fin]) > 0)),
                         "diverged": bool(diverged), "seconds": round(time.perf_counter() - t0, 2)})
            print(f"sweep {name:15s} lr {lr:8.1e}: final {rows[-1]['final_loss']} peak/initial "
                  f"{rows[-1]['peak_over_initial']} increases {rows[-1]['loss_increases']} "
                  f"diverged {diverged}", flush=True)
        out[name] = rows
    return out


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--losses", nargs="+", default=["mean", "sum"], choices=LOSSES)
    ap.add_argument("--placements", nargs="+", default=["after_but_last", "after_all"],
                    choices=PLACEMENTS)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--probe-every", type=int, default=50)
    ap.add_argument("--eta-lo", type=float, default=0.01)
    ap.add_argument("--eta-hi", type=float, default=30.0)
    ap.add_argument("--num-etas", type=int, default=8)
    ap.add_argument("--depth", type=int, default=25)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, default=1e-5, help="BN ε (landscape's BatchNorm default)")
    ap.add_argument("--check", action="store_true", help="only compare with the package DeepLinear")
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--precision", action="store_true", help="only the float32 vs float64 study")
    ap.add_argument("--lr-sweep", action="store_true", help="only the GD divergence sweep (mean loss)")
    ap.add_argument("--sweep-lrs", type=float, nargs="+",
                    default=[1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2])
    ap.add_argument("--sweep-steps", type=int, default=2000)
    ap.add_argument("--bn-stats", action="store_true",
                    help="only the BN-input variance / γ trace of the BN runs (--placements)")
    ap.add_argument("--stats-loss", default="mean", choices=LOSSES,
                    help="loss of --bn-stats and --precision")
    ap.add_argument("--resummarize", action="store_true",
                    help="only recompute bn_vs_vanilla from the series stored in --out")
    ap.add_argument("--out", type=Path, default=RESULTS / "dln_readings.json")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    setup = {k: v for k, v in vars(args).items() if k not in ("out",)}
    setup["out"] = str(args.out)
    setup["jax"] = jax.__version__
    setup["backend"] = jax.default_backend()

    if args.check:
        record["check_vs_package"] = {"setup": setup, **check_against_package(args)}
        args.out.write_text(json.dumps(record, indent=1))
        return
    if args.resummarize:
        for entry in record.get("readings", {}).values():
            entry["bn_vs_vanilla"] = compare(entry["series"])
        args.out.write_text(json.dumps(record, indent=1))
        return
    if args.bn_stats:
        record.setdefault("bn_stats", {})
        for placement in args.placements:
            record["bn_stats"][f"{args.stats_loss}_{placement}"] = {"setup": setup,
                                                                    **bn_stats(args, placement)}
        args.out.write_text(json.dumps(record, indent=1))
        return
    if args.lr_sweep:
        record["lr_sweep_mean_loss"] = {"setup": setup, **lr_sweep(args)}
        args.out.write_text(json.dumps(record, indent=1))
        return
    if args.precision:
        record[f"precision_vanilla_{args.stats_loss}"] = {"setup": setup, **precision_study(args)}
        args.out.write_text(json.dumps(record, indent=1))
        return

    readings = record.setdefault("readings", {})
    vanilla_cache: dict[str, dict] = {}
    for loss in args.losses:
        for placement in args.placements:
            key = f"{loss}_{placement}"
            if loss not in vanilla_cache:  # the vanilla net does not depend on the BN placement
                vanilla_cache[loss] = train_one(args, loss=loss, placement=None)
            va = vanilla_cache[loss]
            bn = train_one(args, loss=loss, placement=placement)
            entry = {"setup": {**setup, "loss": loss, "placement": placement,
                               "etas": bn["etas"].tolist()},
                     "batchnorm": run_summary(bn, args.lr), "vanilla": run_summary(va, args.lr),
                     "series": {
                         "steps": bn["probe_steps"].tolist(),
                         **{f"{lab}_{k}": [_f(x) for x in np.asarray(v)]
                            for lab, r in (("batchnorm", bn), ("vanilla", va))
                            for k, v in fig4_summary(r).items() if k != "steps"}}}
            entry["bn_vs_vanilla"] = compare(entry["series"])
            readings[key] = entry
            s_b, s_v, c = entry["batchnorm"], entry["vanilla"], entry["bn_vs_vanilla"]
            print(f"[{key}] final loss BN {s_b['final_loss']:.4g} vanilla {s_v['final_loss']:.4g} | "
                  f"β final BN {s_b['beta_final']} vanilla {s_v['beta_final']} | "
                  f"frac BN β below {c['frac_bn_beta_below']:.3f} by quarter "
                  f"{c['frac_bn_beta_below_by_quarter']} | diverged BN {s_b['diverged']} "
                  f"vanilla {s_v['diverged']} | run {s_b['run_s']}+{s_v['run_s']} s", flush=True)
            if not args.no_figures:
                from landscape.figures import plot_fig4
                import matplotlib.pyplot as plt
                path = RESULTS / f"dln_{key}"
                fig = plot_fig4({"batchnorm": fig4_summary(bn), "vanilla": fig4_summary(va)},
                                title=(f"DLN, {loss} loss, BN {placement}, lr {args.lr:g}, "
                                       f"η ∈ [{args.eta_lo:g}, {args.eta_hi:g}]×lr, float64"),
                                path=path, formats=("png",))
                plt.close(fig)
                entry["figure"] = str(path.with_suffix(".png").relative_to(RESULTS.parent.parent))
            args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
