"""Critical sharpness: the curvature the optimizer feels, from a handful of loss evaluations.

Kalra, Gagnon-Audet, Gromov, Mediratta, Niu, Miller, Shvartsman (2026), "A Scalable Measure of
Loss Landscape Curvature for Analyzing the Training Dynamics of LLMs" (arXiv 2601.16979): along a
direction d at θ (the points θ − η·d, d = g for gradient descent, d = −Δ/η_t for the optimizer's
update Δ at learning rate η_t), the *critical learning rate* η_c is the smallest η at which one
step increases the loss, L(θ − η·d) > L(θ); the critical sharpness is

    λ_c = 2 / η_c.

On a quadratic L = ½ θᵀAθ with d = g = Aθ, L(θ − ηg) − L(θ) = −η gᵀg + ½ η² gᵀAg, so
η_c = 2 gᵀg / gᵀAg and λ_c = gᵀAg / gᵀg — the curvature along the step, at most λ_max(A) (and
for Adam's update, the curvature along the preconditioned step). It needs forward passes only:
an exponential search (η doubled or halved from ``guess`` until the loss crosses L(θ)) brackets
η_c, then bisection shrinks the bracket to a relative width ``tol`` — each trial one loss
evaluation, typically 5–10 in all, as in the paper's Algorithm (their code uses tol = 1/16).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import optax

from landscape.probes._types import LossFn, PyTree

__all__ = ["CriticalSharpness", "critical_sharpness"]


class CriticalSharpness(NamedTuple):
    """One critical-sharpness measurement (host floats)."""

    sharpness: float     # λ_c = 2 / η_c (NaN when no η up to the search limit raised the loss)
    critical_lr: float   # η_c, the midpoint of the final bracket [lower, upper]
    lower: float         # the largest η tried that did not raise the loss
    upper: float         # the smallest η tried that raised it
    loss0: float         # L(θ)
    num_evals: int       # loss evaluations spent (L(θ) included when it was computed here)


@functools.lru_cache(maxsize=32)
def _loss_along(loss_fn: LossFn):
    @jax.jit
    def loss_at(params, batch, direction, eta):
        moved = optax.tree.cast_like(optax.tree.add_scale(params, -eta, direction), params)
        return loss_fn(moved, batch)

    return loss_at


class _Trials:
    """One step's test, L(θ − η·d) > L(θ), counting the loss evaluations spent."""

    def __init__(self, loss_at, params, batch, direction, base: float, evals: int):
        self.loss_at, self.params, self.batch, self.direction = loss_at, params, batch, direction
        self.base, self.evals = base, evals

    def rises(self, eta: float) -> bool:
        self.evals += 1
        value = float(self.loss_at(self.params, self.batch, self.direction, eta))
        return not value <= self.base  # NaN / inf count as a rise: the step diverged


def _bracket(trials: _Trials, eta: float, max_evals: int) -> tuple[float, float]:
    """Exponential search from ``eta``: ``(lower, upper)`` with lower not raising the loss and
    upper raising it (0 or inf when the search ran out of evaluations)."""
    lower, upper = 0.0, math.inf
    if trials.rises(eta):  # too far: halve until one step no longer raises the loss
        upper = eta
        while trials.evals < max_evals:
            eta /= 2
            if not trials.rises(eta):
                lower = eta
                break
            upper = eta
    else:  # not far enough: double until it does
        lower = eta
        while trials.evals < max_evals:
            eta *= 2
            if trials.rises(eta):
                upper = eta
                break
            lower = eta
    return lower, upper


def _bisect(trials: _Trials, lower: float, upper: float, tol: float,
            max_evals: int) -> tuple[float, float]:
    """Bisection of a finite bracket until 1 − lower/upper ≤ tol (or the evaluations run out)."""
    while (lower > 0 and not math.isinf(upper) and 1 - lower / upper > tol
           and trials.evals < max_evals):
        mid = 0.5 * (lower + upper)
        if trials.rises(mid):
            upper = mid
        else:
            lower = mid
    return lower, upper


def critical_sharpness(loss_fn: LossFn, params: PyTree, batch: PyTree, direction: PyTree, *,
                       guess: float = 1.0, tol: float = 1 / 16, max_evals: int = 60,
                       loss0: float | None = None) -> CriticalSharpness:
    """λ_c = 2/η_c with η_c the smallest η such that L(θ − η·d) > L(θ) (Kalra et al. 2026).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params, batch: θ and the minibatch.
      direction: d, a pytree like ``params`` (the gradient, or −Δ/η_t for an optimizer's step).
      guess: the first η tried (the current learning rate is a good one).
      tol: stop when 1 − lower/upper ≤ tol (the paper's 1/16).
      max_evals: give up after this many evaluations (``sharpness`` NaN, the bracket as found).
      loss0: L(θ) when the caller has it (saves one evaluation).

    Returns:
      :class:`CriticalSharpness`. Host-side: a Python loop over one compiled loss evaluation
      (compiled once per ``loss_fn``), so it is not itself jittable.

    Example:
      >>> loss = lambda p, b: 0.5 * (3.0 * p["x"] ** 2 + p["y"] ** 2)
      >>> p = {"x": 1.0, "y": 1.0}
      >>> g = jax.grad(loss)(p, None)
      >>> round(critical_sharpness(loss, p, None, g, guess=0.1, tol=1e-4).sharpness, 2)   # gᵀAg/gᵀg
      2.8
    """
    if not (guess > 0 and math.isfinite(guess)) or not 0 < tol < 1:
        raise ValueError(f"guess must be > 0 and tol in (0, 1); got {guess}, {tol}")
    evals = 0
    if loss0 is None:
        loss0, evals = float(loss_fn(params, batch)), 1
    trials = _Trials(_loss_along(loss_fn), params, batch, direction, float(loss0), evals)
    lower, upper = _bracket(trials, float(guess), max_evals)
    lower, upper = _bisect(trials, lower, upper, tol, max_evals)
    critical = 0.5 * (lower + upper) if lower > 0 and not math.isinf(upper) else math.nan
    return CriticalSharpness(2.0 / critical if critical == critical else math.nan, critical,
                             lower, upper, trials.base, trials.evals)
