"""Ghorbani, Krishnan & Xiao (ICML 2019): Hessian outliers and where the gradient lives, BN vs not.

Their claims: without BatchNorm, large isolated Hessian eigenvalues (outliers) appear early in
training and the gradient concentrates in their eigenspace; with BN both are largely absent; the
same BN network evaluated with population (running) statistics has the outliers again.

``spectrum_experiment`` trains the Figure-4 VGG with and without BN (matched seed and data order)
with :class:`SpectrumHook`: every ``spectrum_every`` steps, on the step's minibatch, the top-10
Hessian eigenpairs by Lanczos, the fraction of the gradient in their span ‖P₁₀g‖²/‖g‖², and at
chosen steps an SLQ spectral density. The BN run is measured twice: with batch statistics (the
training loss) and with its running averages (``loss_fn("running_average")``, its own gradient).

Quick preset: the Figure-4 quick VGG (``vgg5``, width 0.25, MNIST-5k, SGD lr 0.1, batch 128),
150 steps, spectrum every 50 steps (0, 50, 100) with 25 Lanczos iterations, densities at the first
and last measured steps (2 SLQ runs × 20 iterations) — sized to fit ≈ 5 minutes on 2 CPU cores. Ghorbani et al. use Lanczos order 90, float64 and a
full CIFAR-10 / ImageNet Hessian: this is a far smaller, minibatch-Hessian check of the same
quantities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape import bridge, probes
from landscape.config import ConfigError, TrainConfig
from landscape.engine.hooks import Hook, RunContext, Schedule, StepInputs
from landscape.experiments.base import Experiment, clean_options, median, preset_config

__all__ = ["SpectrumHook", "gradient_fraction", "spectrum_experiment", "spectrum_finalize",
           "spectrum_summary", "spectral_quantile"]


def gradient_fraction(eigenvectors: Any, grad: Any) -> tuple[jax.Array, jax.Array]:
    """The share of ‖g‖² in the span of orthonormal vectors u₁ … u_k: Σ_i (u_iᵀg)² / ‖g‖².

    Args:
        eigenvectors: pytree like ``grad`` with a leading axis k (orthonormal rows, e.g.
            :func:`landscape.probes.hessian_eigs`'s Ritz vectors).
        grad: the gradient pytree g.

    Returns:
        ``(fraction (), per_vector (k,))`` with per_vector_i = (u_iᵀg)²/‖g‖² (NaN when g = 0).

    Reference:
        Ghorbani et al. (2019), Sec. 4 (the gradient's energy in the outlier eigenspace);
        Gur-Ari, Roberts, Dyer (2018).

    Example:
        >>> u = {"w": jnp.eye(3)[:2]}          # e₁, e₂
        >>> float(gradient_fraction(u, {"w": jnp.array([1.0, 1.0, 2.0])})[0])
        0.3333333...
    """
    coeffs = jax.vmap(lambda v: optax.tree.vdot(v, grad))(eigenvectors)
    sq = optax.tree.vdot(grad, grad)
    per = jnp.where(sq > 0, coeffs ** 2 / jnp.where(sq > 0, sq, 1), jnp.nan)
    return jnp.sum(per), per


def spectral_quantile(nodes: Any, weights: Any, q: float) -> float:
    """The q-quantile of the SLQ spectral measure (1/R) Σ_r Σ_j w_rj δ(θ_rj).

    With q = 0.99: the eigenvalue below which 99 % of the spectrum's mass lies (the bulk edge;
    outliers carry ≈ k/n of the mass and sit above it).

    Example:
        >>> spectral_quantile([[0.0, 1.0, 9.0]], [[0.5, 0.49, 0.01]], 0.99)
        1.0
    """
    x = np.asarray(nodes, float).reshape(-1)
    w = np.asarray(weights, float).reshape(-1)
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / np.sum(w)
    return float(x[order][min(int(np.searchsorted(cum, q - 1e-12)), x.size - 1)])


class SpectrumHook(Hook):
    """Top-k Hessian eigenvalues, the gradient's share in their span, and SLQ densities.

    At each due step, on the step's minibatch in BN ``mode``: :func:`landscape.probes.hessian_eigs`
    (k eigenpairs, ``num_iters`` Lanczos steps, a fresh random start per step — a warm start from
    one vector would bias the top-k subspace), ‖P_k g‖²/‖g‖² (:func:`gradient_fraction`) with g the
    gradient of the same loss (in ``"batch_stats"`` mode the step's own), and at the steps in
    ``density_at`` the SLQ nodes/weights (:func:`landscape.probes.spectral_density`) and their
    99 % quantile. Runs eagerly (``jit = False``): the Lanczos loop is a host loop on CPU.
    Writes ``{name}.jsonl``.

    Example:
        >>> hook = SpectrumHook(every=50, density_at=(0, 150))
        >>> train(config, "runs/x", hooks=[hook])   # runs/x/spectrum.jsonl
    """

    jit = False

    def __init__(self, *, every: int = 50, at: Sequence[int] = (), density_at: Sequence[int] = (),
                 k: int = 10, num_iters: int = 30, density_iters: int = 30, density_runs: int = 2,
                 mode: str = "batch_stats", name: str = "spectrum", strategy: str = "auto"):
        bridge.check_mode(mode)
        self.density_at = tuple(int(s) for s in density_at)
        self.name, self.mode = name, mode
        self.schedule = Schedule(int(every), tuple(sorted({*map(int, at), *self.density_at})))
        self.k, self.num_iters = int(k), int(num_iters)
        self.density_iters, self.density_runs = int(density_iters), int(density_runs)
        self.strategy = strategy

    def setup(self, run: RunContext) -> None:
        self.loss_fn = run.loss_fn(self.mode)
        self.seed = int(run.config.seed)
        self._grad = jax.jit(jax.grad(self.loss_fn))

    def measure(self, carry, inputs: StepInputs):
        step = int(inputs.step)
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        grad = inputs.grad if self.mode == "batch_stats" else self._grad(inputs.params, inputs.batch)
        eigs = probes.hessian_eigs(self.loss_fn, inputs.params, inputs.batch, self.k, key=key,
                                   num_iters=self.num_iters, strategy=self.strategy)
        fraction, per = gradient_fraction(eigs.eigenvectors, grad)
        result = {"eigenvalues": eigs.eigenvalues, "residuals": eigs.residuals,
                  "top_fraction": fraction, "fraction_per_eigenvector": per,
                  "grad_norm": optax.tree.norm(grad)}
        if step in self.density_at:
            d = probes.spectral_density(self.loss_fn, inputs.params, inputs.batch,
                                        key=jax.random.fold_in(key, 1), num_iters=self.density_iters,
                                        num_runs=self.density_runs, grid_size=2,
                                        strategy=self.strategy)
            result["density_nodes"], result["density_weights"] = d.nodes, d.weights
        return result, carry

    def record(self, step: int, result) -> dict[str, Any]:
        rec = super().record(step, result)
        rec["mode"] = self.mode
        if "density_nodes" in rec:
            rec["bulk_edge_99"] = spectral_quantile(rec["density_nodes"], rec["density_weights"],
                                                    0.99)
        return rec


#: Series in the summary: label → (run label, record file).
_SERIES = {"batchnorm": ("batchnorm", "spectrum"), "vanilla": ("vanilla", "spectrum"),
           "batchnorm_running_average": ("batchnorm", "spectrum_running_average")}


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def spectrum_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One series' entry: equal-length arrays over the measured ``steps`` (``eigenvalues`` (n, k),
    ``lambda_1``, ``lambda_k``, ``outlier_ratio`` λ₁/λ_k, ``top_fraction``, ``grad_norm``) and over
    ``density_steps`` (``bulk_edge_99``, ``lambda_1_at_density``, ``density_nodes``/``_weights``)."""
    rows = sorted(rows, key=lambda r: r["step"])
    eig = [[_num(v) for v in r["eigenvalues"]] for r in rows]
    l1 = [e[0] for e in eig]
    lk = [e[-1] for e in eig]
    dens = [r for r in rows if "density_nodes" in r]
    return {
        "steps": [int(r["step"]) for r in rows], "eigenvalues": eig, "lambda_1": l1,
        "lambda_k": lk,
        "outlier_ratio": [a / b if b and math.isfinite(a / b) and b > 0 else math.nan
                          for a, b in zip(l1, lk)],
        "top_fraction": [_num(r["top_fraction"]) for r in rows],
        "grad_norm": [_num(r["grad_norm"]) for r in rows],
        "density_steps": [int(r["step"]) for r in dens],
        "bulk_edge_99": [_num(r["bulk_edge_99"]) for r in dens],
        "lambda_1_at_density": [_num(r["eigenvalues"][0]) for r in dens],
        "density_nodes": [r["density_nodes"] for r in dens],
        "density_weights": [r["density_weights"] for r in dens],
    }


def _smoothed(nodes, weights, sigma2: float = 1e-5, grid_size: int = 4000):
    """The Gaussian-smoothed SLQ density (:func:`landscape.probes.spectral_density`'s rule)."""
    from landscape.probes import smoothed_density

    g, d = smoothed_density(jnp.asarray(nodes, jnp.float32), jnp.asarray(weights, jnp.float32),
                            grid_size=grid_size, sigma2=sigma2)
    return np.asarray(g), np.asarray(d)


def _densities(models: Mapping[str, Mapping[str, Any]]) -> dict[str, list[tuple[int, Any, Any]]]:
    """Per series its smoothed densities ``(step, grid, density)`` (what the figure draws)."""
    return {label: [(step, *_smoothed(nodes, weights)) for step, nodes, weights in
                    zip(m["density_steps"], m["density_nodes"], m["density_weights"])]
            for label, m in models.items()}


def spectrum_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str | None = None
                      ) -> dict[str, Any]:
    """``summary.json`` (``models`` per series, flat ``comparison``, ``note``) and ``spectrum.png``."""
    from landscape.figures import plot_spectrum

    models = {series: spectrum_summary(runs[run].get(stem, []))
              for series, (run, stem) in _SERIES.items() if run in runs}
    comparison: dict[str, float] = {}
    for series, m in models.items():
        comparison[f"{series}_median_outlier_ratio"] = median(m["outlier_ratio"])
        comparison[f"{series}_median_top10_fraction"] = median(m["top_fraction"])
        comparison[f"{series}_median_lambda_1"] = median(m["lambda_1"])
        comparison[f"{series}_median_lambda_1_over_bulk_edge"] = median(
            [a / b if b > 0 else math.nan
             for a, b in zip(m["lambda_1_at_density"], m["bulk_edge_99"])])
    note = _note(comparison)
    summary = {"models": models, "config": {label: run["config"] for label, run in runs.items()},
               "comparison": comparison, "note": note}
    plot_spectrum(models, _densities(models), title=title, path=out / "spectrum")
    return summary


def _note(c: Mapping[str, float]) -> str:
    """A plain-language reading of the comparison against Ghorbani et al.'s three claims."""
    def get(series, key):
        return c.get(f"{series}_{key}", math.nan)

    parts = []
    for key, what in (("median_outlier_ratio", "λ₁/λ₁₀"), ("median_top10_fraction",
                                                           "top-10 gradient fraction")):
        bn, va, ra = (get(s, key) for s in ("batchnorm", "vanilla", "batchnorm_running_average"))
        parts.append(f"median {what}: vanilla {va:.3g}, BN {bn:.3g}, BN running-average {ra:.3g}")
        if math.isfinite(bn) and math.isfinite(va):
            parts.append("  claim 'BN has fewer/weaker outliers than vanilla' "
                         f"{'holds' if bn < va else 'does not hold'} here for {what}")
        if math.isfinite(bn) and math.isfinite(ra):
            parts.append("  claim 'running averages bring the outliers back' "
                         f"{'holds' if ra > bn else 'does not hold'} here for {what}")
    parts.append("Minibatch Hessians (the step's batch), short Lanczos runs and SLQ with few runs, "
                 "float32, a tiny VGG and a short run: a small-scale check, not the paper's setting "
                 "(Lanczos order 90, float64, full-dataset Hessians).")
    return "\n".join(parts)


#: Per preset: overrides of the Figure-4 preset and the hook schedule.
SPECTRUM_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"config": dict(steps=150, probe_every=0, eval_every=150, checkpoint_every=150),
              "spectrum_every": 50, "lanczos_iters": 25,
              "density_iters": 20, "density_runs": 2},
    "paper": {"config": dict(probe_every=0), "spectrum_every": 1000,
              "lanczos_iters": 90, "density_iters": 90, "density_runs": 10},
}


def spectrum_experiment(preset: str = "quick", *, spectrum_every: int | None = None,
                        density_at: Sequence[int] | None = None, lanczos_iters: int | None = None,
                        density_iters: int | None = None, density_runs: int | None = None,
                        **overrides: Any) -> Experiment:
    """Ghorbani et al. (2019): Hessian outliers and the gradient's share in them, BN vs vanilla.

    Args:
        preset: ``"quick"`` or ``"paper"`` (the Figure-4 preset of that name, with
            :data:`SPECTRUM_PRESETS`' changes).
        spectrum_every: steps between measurements (0: only ``density_at``).
        density_at: steps with an SLQ density (default: the first and the last measured step).
        lanczos_iters, density_iters, density_runs: Lanczos iterations for the top-10, and the SLQ
            iterations and runs.
        **overrides: :class:`~landscape.config.TrainConfig` fields.

    Example:
        >>> run_experiment(spectrum_experiment(steps=100), "runs/spectrum")
    """
    if preset not in SPECTRUM_PRESETS:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of "
                          f"{', '.join(SPECTRUM_PRESETS)}")
    p = SPECTRUM_PRESETS[preset]
    overrides = clean_options(overrides)
    base = preset_config(preset, **{**p["config"], **overrides})
    every = int(p["spectrum_every"] if spectrum_every is None else spectrum_every)
    measured = [s for s in range(base.steps) if every and s % every == 0]
    if density_at is None:
        density = tuple(sorted({measured[0], measured[-1]})) if measured else ()
    else:
        density = tuple(int(s) for s in density_at)
    if any(s < 0 or s >= base.steps for s in density):
        raise ConfigError(f"density_at={density!r} must lie in [0, steps={base.steps})")
    hook_options = dict(every=every, density_at=density,
                        num_iters=int(p["lanczos_iters"] if lanczos_iters is None else lanczos_iters),
                        density_iters=int(p["density_iters"] if density_iters is None
                                          else density_iters),
                        density_runs=int(p["density_runs"] if density_runs is None
                                         else density_runs))
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}

    def hooks(label: str, cfg: TrainConfig):
        out = [SpectrumHook(**hook_options)]
        if label == "batchnorm":
            out.append(SpectrumHook(mode="running_average", name="spectrum_running_average",
                                    **hook_options))
        return out

    title = (f"{base.model} (width {base.width:g}) on {base.dataset}, {base.optimizer} lr "
             f"{base.lr:g}, batch {base.batch_size}: minibatch Hessian spectrum")
    options = {"preset": preset, "spectrum_every": spectrum_every,
               "density_at": None if density_at is None else list(density),
               "lanczos_iters": lanczos_iters, "density_iters": density_iters,
               "density_runs": density_runs, **overrides}
    return Experiment("spectrum", runs, lambda out, r: spectrum_finalize(out, r, title=title),
                      hooks=hooks, options=clean_options(options))
