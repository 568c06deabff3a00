"""Time the engine's jitted SGD train step (compile and steady state) for a VGG ± BatchNorm.

    python benchmarks/bench_train_step.py --model vgg11 --width 0.25 --reps 20

Prints one JSON line per configuration: compile seconds (first call) and the median step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import optax

from landscape import bridge
from landscape.engine import BridgeObjective, StepFunctions, init_train_state
from landscape.models import build_model


def bench(model_name: str, width: float, norm: str, batch_size: int, reps: int) -> dict:
    model = build_model(model_name, width=width, norm=norm, input_shape=(32, 32, 3))
    _, params, state = bridge.split(model)
    tx = optax.sgd(0.1)
    step = StepFunctions(BridgeObjective(model), tx).train
    train_state = init_train_state(params, state, tx, seed=0)
    x = jax.random.normal(jax.random.key(0), (batch_size, 32, 32, 3))
    y = jax.random.randint(jax.random.key(1), (batch_size,), 0, 10)
    t0 = time.perf_counter()
    train_state, _ = jax.block_until_ready(step(train_state, (x, y)))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        train_state, _ = jax.block_until_ready(step(train_state, (x, y)))
        times.append(time.perf_counter() - t0)
    return {"model": model_name, "width": width, "norm": norm, "batch": batch_size,
            "first_call_s": round(compile_s, 3), "step_median_s": round(statistics.median(times), 4),
            "backend": jax.default_backend()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="vgg11")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    for norm in ("none", "batch"):
        print(json.dumps(bench(args.model, args.width, norm, args.batch_size, args.reps)), flush=True)


if __name__ == "__main__":
    main()
