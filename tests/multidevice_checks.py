"""Run by tests/test_parallel.py in a fresh process with 4 simulated CPU devices.

``python tests/multidevice_checks.py OUT_DIR`` sets ``--xla_force_host_platform_device_count=4``
before JAX starts, runs every comparison of the data-parallel and points layouts against one
device, and prints one JSON object of measured differences (the test asserts on them). One process
for all checks: JAX starts and the tiny model compiles once.
"""

from __future__ import annotations

import os
import sys

# A persistent compilation cache (the suite's, see conftest.py): the 4-device runs below repeat
# the same programs (a run, its resumed copy), which then compile once.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from landscape import bridge, parallel, probes  # noqa: E402
from landscape.config import ConfigError, TrainConfig  # noqa: E402
from landscape.engine import train  # noqa: E402
from landscape.engine.hooks import Schedule, StepProbeHook  # noqa: E402
from landscape.models import VGG  # noqa: E402
from landscape.records import read_records  # noqa: E402

# The engine runs use a BN MLP (fast to compile; its BatchNorm statistic is the global-batch one
# that sharding must keep); the probe functions below use a BN convnet (statistics over N, H, W).
BASE = dict(dataset="synthetic", model="mlp", norm="batch", batch_size=16, eval_every=3,
            checkpoint_every=3, seed=0)


def records(run: Path, name: str) -> list[dict]:
    return read_records(run / f"{name}.jsonl")


#: The rounding floor measures rounding itself (‖∇L(θ ⊕ 1 ulp) − g‖): another reduction order
#: changes it by a few per cent, so it is compared on its own (same order of magnitude).
FLOOR = "grad_change_floor"


def max_rel(a, b) -> float:
    """Largest relative difference over every float of two record lists (same structure),
    the rounding floor left out (see :func:`floor_ratio`)."""
    worst = 0.0

    def walk(x, y):
        nonlocal worst
        if isinstance(x, dict):
            assert x.keys() == y.keys(), (x.keys(), y.keys())
            for k in x:
                if k != FLOOR:
                    walk(x[k], y[k])
        elif isinstance(x, list):
            assert len(x) == len(y)
            for u, v in zip(x, y):
                walk(u, v)
        elif isinstance(x, float) and isinstance(y, float):
            if np.isfinite(x) or np.isfinite(y):
                worst = max(worst, abs(x - y) / max(abs(x), 1e-30))
        else:
            assert x == y, (x, y)

    walk(a, b)
    return worst


def floor_ratio(a: list[dict], b: list[dict]) -> float:
    """Largest ratio (≥ 1) between the rounding floors of matching probe records."""
    return max(max(x[FLOOR], y[FLOOR]) / min(x[FLOOR], y[FLOOR]) for x, y in zip(a, b))


def run_pair(out: Path, name: str, cfg: TrainConfig, **kwargs) -> dict[str, float]:
    """The same run on 1 and on 4 devices: worst relative difference per record file, and the
    largest ratio of their rounding floors."""
    for devices in (1, 4):
        train(cfg, out / f"{name}-{devices}", progress=False, devices=devices, **kwargs)
    one, four = out / f"{name}-1", out / f"{name}-4"
    diffs = {f: max_rel(records(one, f), records(four, f)) for f in ("train", "probes", "eval")
             if (one / f"{f}.jsonl").exists()}
    diffs["floor_ratio"] = floor_ratio(records(one, "probes"), records(four, "probes"))
    return diffs


def check_engine(out: Path, result: dict) -> None:
    f64 = TrainConfig(**BASE, steps=6, probe_every=2, num_step_sizes=6, dtype="float64")

    # 1. training + the step probe (6 step sizes on 4 devices: auto = points layout, padded to 8)
    result["train_f64"] = run_pair(out, "f64", f64)
    info = json.loads((out / "f64-4" / "run.json").read_text())
    result["run_json_devices"] = info["devices"]

    # 2. the data layout of the same probe inside the engine
    hook = StepProbeHook(step_sizes=probes.lr_multiples(0.1, num=6), schedule=Schedule(2),
                         layout="data", tag="batch")
    cfg = f64.replace(probe_every=0)
    train(cfg, out / "data-layout", progress=False, devices=4, hooks=[hook])
    result["data_layout_probes"] = max_rel(records(out / "f64-1", "probes"),
                                           records(out / "data-layout", "probes"))

    # 3. resume: interrupted after the step-3 checkpoint, resumed, against the uninterrupted run
    def interrupted_then_resumed(name: str, first: int, then: int) -> Path:
        def stop(step, row):
            if step == 4:
                raise KeyboardInterrupt
        try:
            train(f64, out / name, progress=False, devices=first, on_step=stop, sync_every=1)
        except KeyboardInterrupt:
            pass
        result[f"{name}_interrupted_at"] = json.loads((out / name / "run.json").read_text())["final_step"]
        train(f64, out / name, progress=False, devices=then)
        return out / name

    resumed = interrupted_then_resumed("resumed", 4, 4)
    result["resume_4"] = {f: max_rel(records(out / "f64-1", f), records(resumed, f))
                          for f in ("train", "probes", "eval")}
    for name, first, then in (("resume_4_then_1", 4, 1), ("resume_1_then_4", 1, 4)):
        moved = interrupted_then_resumed(name, first, then)
        result[name] = max_rel(records(out / "f64-1", "train"), records(moved, "train"))

    # 4. float32: three steps (lr 0.1 amplifies rounding later on; see issue 12)
    f32 = TrainConfig(**BASE, steps=3, probe_every=1, num_step_sizes=4)
    result["train_f32"] = run_pair(out, "f32", f32)

    # 5. fit with a plain-JAX loss and a dict batch: 4 devices against 1 (float64)
    result["fit_f64"] = check_fit(out)

    # 6. a bad batch size: one clear line
    try:
        train(f32.replace(batch_size=10), out / "bad", progress=False, devices=4)
        result["bad_batch"] = None
    except ConfigError as e:
        result["bad_batch"] = str(e)



def check_fit(out: Path) -> dict[str, float]:
    """fit(plain loss, dict of arrays) with a StepProbeHook on 1 and on 4 devices."""
    import optax

    from landscape.engine import fit

    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(64, 5)), "y": rng.normal(size=64)}
    w, v = rng.normal(size=(5, 8)), rng.normal(size=8)

    def loss_fn(p, b):
        err = jnp.tanh(b["x"] @ p["w"]) @ p["v"] - b["y"]
        return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}

    with jax.enable_x64(True):
        params = {"w": jnp.asarray(w), "v": jnp.asarray(v)}  # float64 leaves
        for devices in (1, 4):
            fit(loss_fn, params, optax.adam(0.01), data, batch_size=16, steps=4,
                workdir=out / f"fit-{devices}", progress=False, devices=devices,
                hooks=[StepProbeHook(step_sizes=[0.05, 0.1, 0.2, 0.4], schedule=Schedule(2))])
    return {f: max_rel(records(out / "fit-1", f), records(out / "fit-4", f))
            for f in ("train", "probes")}


def check_functions(result: dict) -> None:
    """The probes as functions, float64: data layout (sharded batch), points layout (mesh)."""
    with jax.enable_x64(True):
        model = VGG((32, "M", 32), width=0.125, norm="batch", input_shape=(8, 8, 1),
                    num_classes=3, rngs=nnx.Rngs(0))  # two conv + BN blocks, 4 channels
        bridge.cast(model, "float64")
        _, params, state = bridge.split(model)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 8, 8, 1)), rng.integers(0, 3, 16)
        loss_fn = bridge.make_loss_fn(model)
        one = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)
        mesh = parallel.make_mesh(4)
        xs, ys = parallel.shard_batch((x, y), mesh)
        sharded = bridge.make_batch(xs, ys, parallel.replicate(state, mesh))
        replicated = parallel.replicate(params, mesh)
        etas = probes.lr_multiples(0.1, num=5)  # 5 points over 4 devices: padding dropped
        ref = probes.step_probe(loss_fn, params, one, etas)
        data = probes.step_probe(loss_fn, replicated, sharded, etas)
        points = probes.step_probe(loss_fn, replicated, sharded, etas, mesh=mesh)
        fields = ("loss", "grad_change", "effective_beta", "grad_change_floor")
        result["probe_data"] = max(float(np.max(np.abs(np.asarray(getattr(ref, f)) -
                                                       np.asarray(getattr(data, f))))) for f in fields)
        result["probe_points"] = max(float(np.max(np.abs(np.asarray(getattr(ref, f)) -
                                                         np.asarray(getattr(points, f))))) for f in fields)

        d1 = probes.random_direction(jax.random.key(1), params)
        d2 = probes.random_direction(jax.random.key(2), params)
        coords = (np.linspace(-1, 1, 3), np.linspace(-1, 1, 3))
        s_ref = probes.loss_surface(loss_fn, params, one, (d1, d2), coords)
        s_mesh = probes.loss_surface(loss_fn, replicated, sharded, (d1, d2), coords, mesh=mesh)
        result["surface"] = float(np.max(np.abs(np.asarray(s_ref.loss) - np.asarray(s_mesh.loss))))

        t_ref = probes.hessian_trace(loss_fn, params, one, key=jax.random.key(3), num_samples=6)
        t_mesh = probes.hessian_trace(loss_fn, replicated, sharded, key=jax.random.key(3),
                                      num_samples=6, mesh=mesh)
        result["trace"] = [float(t_ref.estimate), float(t_mesh.estimate),
                           float(t_ref.stderr), float(t_mesh.stderr)]

        # SLQ: 5 runs over 4 devices against the same runs one after the other (scan strategy)
        kw = dict(key=jax.random.key(4), num_iters=6, num_runs=5, grid_size=64)
        d_ref = probes.spectral_density(loss_fn, params, one, strategy="scan", **kw)
        d_mesh = probes.spectral_density(loss_fn, replicated, sharded, mesh=mesh, **kw)
        result["slq"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))
                            for a, b in ((d_ref.nodes, d_mesh.nodes), (d_ref.weights, d_mesh.weights),
                                         (d_ref.density, d_mesh.density)))


if __name__ == "__main__":
    parts = sys.argv[2:] or ["engine", "functions"]
    result: dict = {"device_count": jax.device_count()}
    if "functions" in parts:
        check_functions(result)
    if "engine" in parts:
        check_engine(Path(sys.argv[1]), result)
    print(json.dumps(result))
