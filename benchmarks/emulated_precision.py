"""How accurate is the Figure-4 probe of a VGG in TF32 or bfloat16 arithmetic? (CPU emulation)

On a GPU the probe runs in TF32 by default, and bfloat16 operands would make it about twice as
fast. XLA:CPU always computes float32, so this script emulates the coarser arithmetic: every
convolution and matmul of the VGG rounds its operands (forward and both backward products) to m
significand bits and accumulates in float32 (``landscape.probes._emulate``). For m = 23 (float32),
10 (TF32) and 7 (bfloat16) it compares the probe, with the default rounding floor (one float32 ulp)
and with the floor at the arithmetic's resolution (``floor_eps`` = 2^−m), against the same probe
in float64, at the paper's step sizes (lr × [½, 4]) and at small ones (η‖g‖ from 1e-5
to 1e-2), at initialisation and after ``--train-steps`` SGD steps:

- how many η enter the effective β, the worst relative error of an entering gradient change,
- the worst relative error of the loss L(θ − ηg), and β against float64's β on the same η.

Usage::

    python benchmarks/emulated_precision.py --width 0.25 --batch 32 --norm batch
"""

from __future__ import annotations

import argparse
import contextlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from bench_engine import probe_inputs

from landscape import models, probes
from landscape.probes._emulate import BF16_BITS, TF32_BITS, coarse_bilinear

@contextlib.contextmanager
def coarse_projections(bits: int):
    """Every :class:`landscape.models.Projection` multiplies with operands rounded to ``bits``."""
    original = models.Projection.product
    conv, matmul = coarse_bilinear(models.conv3x3, bits), coarse_bilinear(jnp.matmul, bits)
    models.Projection.product = lambda self, x, w: conv(x, w) if self.is_conv else matmul(x, w)
    try:
        yield
    finally:
        models.Projection.product = original


def _train(loss_fn, params, batch, steps: int, lr: float):
    grad = jax.jit(jax.grad(loss_fn))
    for _ in range(steps):
        params = jax.tree.map(lambda p, g: p - lr * g, params, grad(params, batch))
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    rows = []
    with jax.enable_x64(True):
        loss64, p64, b64 = probe_inputs(args.model, args.width, args.norm, args.batch, jnp.float64)
        states = {"init": p64, f"after {args.train_steps} steps": _train(loss64, p64, b64,
                                                                         args.train_steps, args.lr)}
        exact = {}
        for state, params in states.items():
            g_norm = float(probes.step_probe(loss64, params, b64, np.ones(1), floor_factor=0).grad_norm)
            sets = {"paper": probes.lr_multiples(args.lr, num=args.K),
                    "small": np.geomspace(1e-5, 1e-2, args.K) / g_norm}
            for name, etas in sets.items():
                r = probes.step_probe(loss64, params, b64, etas, floor_factor=0, strategy="unroll")
                exact[state, name] = (etas, np.asarray(r.loss), np.asarray(r.grad_change),
                                      float(r.effective_beta), float(r.grad_norm))
    _, _, b32 = probe_inputs(args.model, args.width, args.norm, args.batch)
    for bits in (23, TF32_BITS, BF16_BITS):
        with coarse_projections(bits):
            # a model built inside the patch: its projections compute coarsely
            loss32, _, _ = probe_inputs(args.model, args.width, args.norm, args.batch)
            for (state, name), (etas, loss_ex, change_ex, beta_ex, norm_ex) in exact.items():
                params = jax.tree.map(lambda a: a.astype(jnp.float32), states[state])
                change_err = loss_err = None
                for floor, eps in (("ulp", None), ("resolution", 2.0 ** -bits)):
                    r = probes.step_probe(loss32, params, b32, etas, floor_eps=eps, strategy="unroll")
                    inc = np.asarray(r.beta_included)
                    change_err = np.abs(np.asarray(r.grad_change, np.float64) - change_ex) / change_ex
                    loss_err = np.abs(np.asarray(r.loss, np.float64) - loss_ex) / np.abs(loss_ex)
                    ratio_ex = change_ex / (np.abs(etas) * norm_ex)
                    row = {"bits": bits, "state": state, "steps": name, "floor": floor, "K": args.K,
                           "floor_value": float(r.grad_change_floor), "included": int(inc.sum()),
                           "worst_change_error_included": float(change_err[inc].max()) if inc.any() else None,
                           "worst_change_error_all": float(change_err.max()),
                           "worst_loss_error": float(loss_err.max()),
                           "beta": float(r.effective_beta), "beta_float64_all": beta_ex,
                           "beta_float64_same_eta": float(ratio_ex[inc].max()) if inc.any() else None}
                    rows.append(row)
                    same = row["beta_float64_same_eta"]
                    print(f"m={bits:2} {state:15} {name:5} floor={floor:10}: {row['included']}/{args.K} "
                          f"η in β, worst change error in β "
                          f"{row['worst_change_error_included'] or float('nan'):.1e} (all η "
                          f"{row['worst_change_error_all']:.1e}), loss error {row['worst_loss_error']:.1e}, "
                          f"β {row['beta']:.5g} vs float64 {same or float('nan'):.5g} on the same η "
                          f"({beta_ex:.5g} on all)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
