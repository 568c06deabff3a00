"""Does `fit` cost anything over the engine's config path, or over the engine before `fit` existed?

Times one training run of the quick default model (narrow VGG-11 with BatchNorm on MNIST-5k,
batch 128, the Figure-4 probe every 10 steps) three ways, in this process, on the same data:

- ``train``: ``landscape.engine.train(TrainConfig(...))`` — the config adapter over ``fit``'s loop;
- ``fit``: the user's path, ``fit(*nnx_loss(model, cross_entropy), optax.sgd(lr), data, ...)``
  with a hand-written ``data(step)``;
- ``old`` (with ``--old-rev REV``): ``train(config)`` of an earlier commit, from a git worktree,
  in a child process.

Per-step time is read from the times between consecutive steps' records (``sync_every=1``,
``on_step``), after a first run has filled one persistent compilation cache: the median over
plain steps and the mean with the probed ones (every 10th); the ratio
fit ÷ train (and train ÷ old) is printed. Run:  python benchmarks/bench_fit.py --old-rev d9d9245
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CONFIG = dict(dataset="mnist5k", model="vgg11", width=0.25, norm="batch", batch_size=128, lr=0.1,
              probe_every=10, eval_every=0, checkpoint_every=0)

_CHILD = """
import json, sys, tempfile, time
from landscape.config import TrainConfig
from landscape.engine import train
steps, cfg = int(sys.argv[1]), json.loads(sys.argv[2])
stamps = []
with tempfile.TemporaryDirectory() as d:
    train(TrainConfig(steps=steps, **cfg), d, progress=False, sync_every=1,
          on_step=lambda step, row: stamps.append(time.perf_counter()))
print(json.dumps(stamps))
"""


def time_train(steps: int) -> list[float]:
    from landscape.config import TrainConfig
    from landscape.engine import train

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        train(TrainConfig(steps=steps, **CONFIG), d, progress=False, sync_every=1,
              on_step=lambda step, row: stamps.append(time.perf_counter()))
    return stamps


def time_fit(steps: int) -> list[float]:
    import optax

    from landscape import data as data_lib, probes
    from landscape.engine import Schedule, StepProbeHook, fit, nnx_loss
    from landscape.models import build_model

    ds = data_lib.load_dataset("mnist5k", seed=0)
    model = build_model("vgg11", width=0.25, norm="batch", input_shape=ds.input_shape)

    def cross_entropy(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    def data(step):
        x, y = data_lib.batch_at(ds, step, 128, seed=0)
        return {"x": np.asarray(x, np.float32), "y": y}

    loss_fn, params = nnx_loss(model, cross_entropy)
    hook = StepProbeHook(step_sizes=probes.lr_multiples(0.1), schedule=Schedule(10))
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        fit(loss_fn, params, optax.sgd(0.1), data, steps=steps, workdir=d, hooks=[hook],
            progress=False, sync_every=1, on_step=lambda step, row: stamps.append(time.perf_counter()))
    return stamps


def time_old(rev: str, steps: int, worktree: Path) -> list[float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(steps), json.dumps(CONFIG)],
                         cwd=worktree, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(worktree)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_step(timer, steps: int) -> tuple[float, float]:
    """``(median seconds per plain step, mean seconds per step with the probed ones)`` from the
    times between consecutive steps' records (written every step), after steps 0–1 (compilation)
    and with the probe compiled by a first run (one persistent compilation cache)."""
    timer(min(steps, 11))  # fills the cache: the step and the probe
    gaps = np.diff(np.asarray(timer(steps)))[1:]
    return float(np.median(gaps)), float(np.mean(gaps))


def _compilation_cache(folder: str) -> None:
    """One persistent compilation cache for every run here (and the child): the S- and 2S-step
    runs of one variant compile the same programs, so the second loads them."""
    import jax

    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--old-rev", help="also time train(config) at this git revision")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    _compilation_cache(tempfile.mkdtemp(prefix="bench_fit_cache_"))
    rows = {"train": per_step(time_train, args.steps), "fit": per_step(time_fit, args.steps)}
    if args.old_rev:
        with tempfile.TemporaryDirectory() as d:
            tree = Path(d) / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.old_rev],
                           cwd=ROOT, check=True, capture_output=True)
            try:
                rows["old"] = per_step(lambda s: time_old(args.old_rev, s, tree), args.steps)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    for name, (step, mean) in rows.items():
        print(f"{name:>6}: {1e3 * step:7.1f} ms per plain step (median), {1e3 * mean:7.1f} ms per "
              "step with the probe every 10 steps (mean)")
    for a, b in (("fit", "train"), ("train", "old"), ("fit", "old")):
        if a in rows and b in rows:
            print(f"{a} / {b} = {rows[a][0] / rows[b][0]:.3f} (plain steps), "
                  f"{rows[a][1] / rows[b][1]:.3f} (with probes)")
    if args.out:
        Path(args.out).write_text(json.dumps({k: {"median_plain_step_s": v[0],
                                                  "mean_step_s": v[1]} for k, v in rows.items()},
                                             indent=1))


if __name__ == "__main__":
    main()
