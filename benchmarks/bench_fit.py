"""Does `fit` cost anything over the engine's config path, or over the engine before `fit` existed?

Times one training run of the quick default model (narrow VGG-11 with BatchNorm on MNIST-5k,
batch 128, the Figure-4 probe every 10 steps) three ways, in this process, on the same data:

- ``train``: ``landscape.engine.train(TrainConfig(...))`` — the config adapter over ``fit``'s loop;
- ``fit``: the user's path, ``fit(*nnx_loss(model, cross_entropy), optax.sgd(lr), data, ...)``
  with a hand-written ``data(step)``;
- ``old`` (with ``--old-rev REV``): ``train(config)`` of an earlier commit, from a git worktree,
  in a child process.

Per-step time is (T(2S steps) − T(S steps)) / S after a first run has filled one persistent
compilation cache, so compilation and start-up cancel; the ratio
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

ROOT = Path(__file__).resolve().parents[1]

CONFIG = dict(dataset="mnist5k", model="vgg11", width=0.25, norm="batch", batch_size=128, lr=0.1,
              probe_every=10, eval_every=0, checkpoint_every=0)

_CHILD = """
import json, sys, tempfile, time
from landscape.config import TrainConfig
from landscape.engine import train
steps, cfg = int(sys.argv[1]), json.loads(sys.argv[2])
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    train(TrainConfig(steps=steps, **cfg), d, progress=False)
print(time.perf_counter() - t0)
"""


def time_train(steps: int) -> float:
    from landscape.config import TrainConfig
    from landscape.engine import train

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        train(TrainConfig(steps=steps, **CONFIG), d, progress=False)
    return time.perf_counter() - t0


def time_fit(steps: int) -> float:
    import numpy as np
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
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        fit(loss_fn, params, optax.sgd(0.1), data, steps=steps, workdir=d, hooks=[hook],
            progress=False)
    return time.perf_counter() - t0


def time_old(rev: str, steps: int, worktree: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(steps), json.dumps(CONFIG)],
                         cwd=worktree, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(worktree)})
    return float(out.stdout.strip().splitlines()[-1])


def per_step(timer, steps: int) -> tuple[float, float]:
    """``(seconds per step, first run's seconds)``: a first run fills the compilation cache, then
    (T(2S) − T(S)) / S over two runs that both load their programs from it."""
    first = timer(steps)
    short, long = timer(steps), timer(2 * steps)
    return (long - short) / steps, first


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
    for name, (step, first) in rows.items():
        print(f"{name:>6}: {1e3 * step:7.1f} ms/step (probe every 10 steps), "
              f"{first:6.1f} s for the first {args.steps} steps incl. start-up")
    print(f"fit / train = {rows['fit'][0] / rows['train'][0]:.3f}")
    if "old" in rows:
        print(f"train / old engine = {rows['train'][0] / rows['old'][0]:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({k: {"s_per_step": v[0], "first_s": v[1]}
                                              for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
