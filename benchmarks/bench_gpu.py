"""The one-call GPU benchmark: landscape's probe and engine beside the two reference scripts.

Everything runs in ONE process call on ONE card, so the numbers compare (issue 12):

1. per model (VGG-11 64…512 without and with BatchNorm, batch 128, K = 8, synthetic CIFAR-shaped
   data), medians of ``--reps`` calls:
   - one jitted gradient (``value_and_grad`` of the training loss),
   - landscape's step probe alone (``make_step_probe``, strategy ``auto``; with the rounding floor,
     the default, and without), for every K in ``--Ks``; ratio to (K+1)·gradient,
   - the engine's plain step and probed step (fused/unfused, ± floor) and the cost of a host sync
     per step (``benchmarks/bench_engine.py``'s ``bench_model``);
2. the PyTorch-style reference probe (``torch_probe_anchor.py``: deep-copy the model per step size),
   run as a child process on the same card;
3. the paper protocol (``reproduce fig4 --preset paper``: VGG-16 on CIFAR-10, 15 000 steps, a probe
   at every step, evaluation and checkpoint every 500 steps), run for ``--protocol-steps`` steps per
   model through :func:`landscape.engine.train` on CIFAR-10 files in the real binary format filled
   with random pixels (the machine is offline), and projected to 15 000 steps:
   start-up (compile, data) + 14 900 × the steady step time measured from step 100 on
   + 30 × (evaluation + checkpoint);
4. the plain-JAX reference (``jax_probe_anchor.py``: loop, unrolled and vmapped gradients);
5. the probe's accuracy per matmul precision (``precision``): the K = ``--K`` probe under JAX's
   default float32 arithmetic (TF32 on Ampere+ GPUs) and under ``"highest"`` (true float32),
   and under bfloat16 operands (``"BF16_BF16_F32"``, tensor cores at twice TF32's rate), each
   against the same probe in float64, at the paper's step sizes (lr 0.1 × [½, 4]) and at
   small ones (η‖g‖ from 1e-5 to 1e-2): the default floor (one float32 ulp) and the floor at the
   arithmetic's resolution (``floor_eps=arithmetic_eps()``), how many η enter β under each, the
   largest relative error of an entering gradient change, β against float64's, and the probe's time.

Each section prints as it finishes and the results go to ``--out`` (JSON) after every section, so a
section that fails or a call that runs out of time keeps what was measured before it.
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is set before JAX starts so the child processes get memory.

Usage (GPU; the reference scripts copied from ``../shared/bench`` into ``bench_ref/``)::

    python benchmarks/bench_gpu.py --ref-dir bench_ref --out bench_gpu.json

CPU smoke test (narrow, few steps)::

    python benchmarks/bench_gpu.py --width 0.0625 --batch 16 --reps 2 --protocol-steps 120 \\
        --protocol-width 0.0625 --skip-refs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import _time, bench_model, probe_inputs  # noqa: E402

from landscape import probes  # noqa: E402
from landscape.engine import train  # noqa: E402
from landscape.experiments.base import preset_config  # noqa: E402

PAPER_STEPS = 15_000


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def probe_alone(norm: str, args) -> list[dict]:
    """landscape's step probe on its own (computes its own gradient), per K, ± floor."""
    loss_fn, params, batch = probe_inputs(args.model, args.width, norm, args.batch)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    _, t_grad = _time(lambda: grad_fn(params, batch), args.reps)
    rows = []
    for K in args.Ks:
        steps = probes.lr_multiples(0.1, num=K)
        for floor in (probes.DEFAULT_FLOOR_FACTOR, 0.0):
            probe = probes.make_step_probe(loss_fn, strategy="auto", floor_factor=floor)
            first, t = _time(lambda: probe(params, batch, steps), args.reps)
            rows.append({"norm": norm, "K": K, "floor": bool(floor), "t_grad": t_grad, "first": first,
                         "probe": t, "probe_over_K1_grad": t / ((K + 1) * t_grad)})
    return rows


def precision_check(norm: str, args) -> list[dict]:
    """Probe accuracy and cost under each matmul precision, against float64 (section 5)."""
    loss_fn, params, batch = probe_inputs(args.model, args.width, norm, args.batch)
    g_norm = float(probes.step_probe(loss_fn, params, batch, np.ones(1), floor_factor=0).grad_norm)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    _, t_grad = _time(lambda: grad_fn(params, batch), args.reps)  # default precision: the baseline
    sets = {"paper": probes.lr_multiples(0.1, num=args.K),
            "small": np.geomspace(1e-5, 1e-2, args.K) / g_norm}
    with jax.enable_x64(True):
        loss64, params64, batch64 = probe_inputs(args.model, args.width, norm, args.batch, jnp.float64)
        exact = {name: probes.step_probe(loss64, params64, batch64, etas, floor_factor=0)
                 for name, etas in sets.items()}
        exact = {k: (np.asarray(v.grad_change), float(v.effective_beta)) for k, v in exact.items()}
    rows = []
    for precision in ("default", "highest", "BF16_BF16_F32"):
        with jax.default_matmul_precision(precision):
            probe = probes.make_step_probe(loss_fn, strategy="auto")
            for name, etas in sets.items():
                try:
                    first, t = _time(lambda: probe(params, batch, etas), args.reps)
                except Exception as e:  # noqa: BLE001 - e.g. an algorithm the convolutions refuse
                    rows.append({"norm": norm, "precision": precision, "steps": name,
                                 "error": f"{type(e).__name__}: {str(e)[:300]}"})
                    continue
                r = jax.device_get(probe(params, batch, etas))
                eps = probes.arithmetic_eps(jnp.float32)
                r_res = jax.device_get(probes.step_probe(loss_fn, params, batch, etas, floor_eps=eps))
                change64, beta64 = exact[name]
                rel = np.abs(np.asarray(r.grad_change, np.float64) - change64) / change64
                inc = np.asarray(r.beta_included)
                rows.append({
                    "norm": norm, "precision": precision, "steps": name, "K": args.K,
                    "arithmetic_eps": probes.arithmetic_eps(jnp.float32), "probe_s": t,
                    "t_grad_default": t_grad, "probe_over_K1_grad": t / ((args.K + 1) * t_grad),
                    "first_s": first, "floor": float(r.grad_change_floor),
                    "num_included": int(inc.sum()),
                    "max_rel_error_included": float(rel[inc].max()) if inc.any() else None,
                    "rel_error_per_eta": rel.tolist(), "beta": float(r.effective_beta),
                    "resolution_floor": float(r_res.grad_change_floor),
                    "num_included_resolution_floor": int(np.asarray(r_res.beta_included).sum()),
                    "beta_resolution_floor": float(r_res.effective_beta),
                    "beta_float64": beta64})
    return rows


def write_fake_cifar(root: Path, num_train: int, num_test: int) -> Path:
    """CIFAR-10 in its real binary format (label byte + 3072 CHW pixel bytes), random contents."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def records(n):
        rec = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        return rec.tobytes()

    per = num_train // 5
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(records(per))
    (folder / "test_batch.bin").write_bytes(records(num_test))
    return root


def paper_protocol(args, workroot: Path) -> list[dict]:
    """A measured ``--protocol-steps`` run of the paper preset per model, projected to 15 000."""
    data_dir = write_fake_cifar(workroot / "cifar", args.cifar_train, args.cifar_test)
    rows = []
    for norm in ("batch", "none"):
        cfg = preset_config("paper", norm=norm, steps=args.protocol_steps, data_dir=str(data_dir),
                            model=args.protocol_model, width=args.protocol_width, tag=norm)
        stamps: list[tuple[int, float]] = []
        t0 = time.perf_counter()
        result = train(cfg, workroot / f"run-{norm}", progress=False,
                       on_step=lambda step, row: stamps.append((step, time.perf_counter())))
        total = time.perf_counter() - t0
        flushes = {}
        for step, t in stamps:
            flushes[step] = t  # the last row of a block: every row of a block arrives together
        ends = sorted(flushes)
        warm = [s for s in ends if s >= min(99, ends[-1] // 5)]
        s0, s1 = warm[0], ends[-1]
        rate = (flushes[s1] - flushes[s0]) / max(1, s1 - s0)
        startup = flushes[s0] - t0 - s0 * rate  # compile, data, first steps beyond the steady rate
        tail = t0 + total - flushes[s1]         # the final evaluation + checkpoint + close
        every = cfg.eval_every or PAPER_STEPS
        projected = startup + PAPER_STEPS * rate + (PAPER_STEPS // every) * tail
        rows.append({"norm": norm, "model": cfg.model, "width": cfg.width, "steps": cfg.steps,
                     "K": cfg.num_step_sizes, "probe_every": cfg.probe_every, "total_s": total,
                     "steady_step_s": rate, "startup_s": startup, "eval_and_checkpoint_s": tail,
                     "projected_15000_s": projected, "diverged": result.diverged_at_step})
    return rows


def run_reference(script: Path, timeout: int) -> dict:
    """Run a reference script as a child process; its JSON lines are the result."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=timeout)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:  # keep the configurations it finished
        rc, out, err = "timeout", _text(e.stdout), _text(e.stderr)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {"script": script.name, "rc": rc, "seconds": time.perf_counter() - t0,
            "rows": rows, "stdout_head": out.splitlines()[:1],
            "stderr_tail": err.strip().splitlines()[-5:]}


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def summary(results: dict, K: int) -> list[str]:
    """The goals of issue 12 as lines: BN probe vs (K+1)·gradient, vs PyTorch, the projection."""
    lines = [f"# summary on {results['device']}"]
    alone = {(r["norm"], r["K"], r["floor"]): r for r in results.get("probe_alone", [])}
    torch_rows = {(r["bn"], r["K"]): r for ref in results.get("references", [])
                  if ref["script"].startswith("torch") for r in ref["rows"]}
    for norm, bn in (("none", False), ("batch", True)):
        for floor in (True, False):
            r = alone.get((norm, K, floor))
            if r is None:
                continue
            line = (f"{norm:5} K={K} floor={floor!s:5}: probe {1e3 * r['probe']:.2f} ms = "
                    f"{r['probe_over_K1_grad']:.2f} x (K+1)·grad ({1e3 * r['t_grad']:.2f} ms)")
            t = torch_rows.get((bn, K))
            if t:
                line += f"; PyTorch-style probe {1e3 * t['probe']:.1f} ms → {t['probe'] / r['probe']:.1f}x faster"
            lines.append(line)
    proto = results.get("protocol", [])
    if proto:
        total = sum(r["projected_15000_s"] for r in proto)
        lines.append(f"paper protocol ({proto[0]['model']}, 2 models x 15000 steps, probe every step): "
                     f"projected {total / 60:.1f} min (" + ", ".join(
                         f"{r['norm']}: {r['steady_step_s'] * 1e3:.1f} ms/step, start {r['startup_s']:.0f} s"
                         for r in proto) + ")")
    for r in results.get("precision", []):
        if "error" in r:
            lines.append(f"{r['norm']:5} {r['precision']} {r['steps']} η: {r['error']}")
            continue
        err = r["max_rel_error_included"]
        lines.append(f"{r['norm']:5} {r['precision']:13} {r['steps']:5} η: probe {1e3 * r['probe_s']:.2f} ms "
                     f"= {r['probe_over_K1_grad']:.2f} x (K+1)·grad, "
                     f"floor {r['floor']:.2e}, {r['num_included']}/{r['K']} η "
                     f"in β (resolution floor {r['resolution_floor']:.2e}: "
                     f"{r['num_included_resolution_floor']}), worst included error "
                     f"{'-' if err is None else f'{err:.1e}'}, "
                     f"β {r['beta']:.4g} vs float64 {r['beta_float64']:.4g}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--K", type=int, default=8, help="K of the engine's probed step")
    parser.add_argument("--Ks", default="8", help="K values of the probe alone, e.g. 4,8,16")
    parser.add_argument("--variants", default="fused-floor",
                        help="probed-step variants of the engine (bench_engine.ALL_VARIANTS)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--block", type=int, default=20, help="steps per block for the sync test")
    parser.add_argument("--norms", default="none,batch")
    parser.add_argument("--protocol-steps", type=int, default=500)
    parser.add_argument("--protocol-model", default="vgg16")
    parser.add_argument("--protocol-width", type=float, default=1.0)
    parser.add_argument("--cifar-train", type=int, default=50_000)
    parser.add_argument("--cifar-test", type=int, default=10_000)
    parser.add_argument("--ref-dir", default="bench_ref")
    parser.add_argument("--ref-timeout", type=int, default=240, help="seconds for the torch reference")
    parser.add_argument("--jax-ref-timeout", type=int, default=150, help="seconds for the JAX reference")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: "
                        "engine,alone,torch,protocol,jax,precision")
    parser.add_argument("--skip-refs", action="store_true", help="same as --skip torch,jax")
    parser.add_argument("--out", default="bench_gpu.json")
    args = parser.parse_args()
    args.Ks = [int(k) for k in args.Ks.split(",")]
    args.variants = args.variants.split(",")
    skip = set(filter(None, args.skip.split(","))) | ({"torch", "jax"} if args.skip_refs else set())

    results = {"device": device_name(), "jax": jax.__version__, "platform": platform.platform(),
               "args": vars(args), "errors": {}}
    print(f"# jax {jax.__version__} on {results['device']}; {args.model} width {args.width}, "
          f"batch {args.batch}", flush=True)

    def save():
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    def section(name, fn):
        if name in skip:
            return
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001 - a benchmark keeps going and reports what broke
            results["errors"][name] = traceback.format_exc()
            print(f"!! section {name} failed:\n{results['errors'][name]}", flush=True)
        results.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
        print(f"# section {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        save()

    def alone():
        for norm in args.norms.split(","):
            for r in probe_alone(norm, args):
                results.setdefault("probe_alone", []).append(r)
                print(json.dumps(r), flush=True)

    def engine():
        for norm in args.norms.split(","):
            rows, t_grad = bench_model(norm, args)
            results.setdefault("engine", []).append(
                {"norm": norm, "t_grad": t_grad,
                 "rows": [{"what": w, "first": f, "median": m, "over_grad": m / t_grad}
                          for w, f, m in rows]})
            for w, f, m in rows:
                print(f"{norm:5} | {w:<45} | first {f:7.2f} s | {1e3 * m:9.3f} ms | {m / t_grad:6.2f} x grad",
                      flush=True)

    def reference(script, timeout):
        def fn():
            ref = run_reference(Path(args.ref_dir) / script, timeout)
            results.setdefault("references", []).append(ref)
            print(json.dumps(ref)[:3000], flush=True)
        return fn

    def protocol():
        with tempfile.TemporaryDirectory() as tmp:
            for r in paper_protocol(args, Path(tmp)):
                results.setdefault("protocol", []).append(r)
                print(json.dumps(r), flush=True)

    section("alone", alone)
    section("engine", engine)
    section("torch", reference("torch_probe_anchor.py", args.ref_timeout))
    section("protocol", protocol)
    section("jax", reference("jax_probe_anchor.py", args.jax_ref_timeout))

    def precision():
        for norm in args.norms.split(","):
            for r in precision_check(norm, args):
                results.setdefault("precision", []).append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "rel_error_per_eta"}), flush=True)

    section("precision", precision)
    results["summary"] = summary(results, args.K)
    save()
    print("\n".join(results["summary"]), flush=True)


if __name__ == "__main__":
    main()
