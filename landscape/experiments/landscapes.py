"""Santurkar et al. (2018) Figures 3 and 5, the deep linear network, and the normalization comparison.

Four experiments, registered with :data:`landscape.reproduce.EXPERIMENTS` on import
(``landscape reproduce fig3|fig5|dln`` and ``landscape compare``):

- ``fig3`` (:func:`fig3_experiment`) — internal covariate shift measured through gradients
  (Definition 2.1): ‖G − G′‖₂ and cos∠(G, G′) for two layers, BatchNorm vs vanilla. The
  measurement is the pure function :func:`internal_covariate_shift`.
- ``fig5`` (:func:`fig5_experiment`) — ℓp normalizations (p = 1, 2, ∞) vs BatchNorm vs vanilla:
  training curves and the Figure-4 landscape probes.
- ``dln`` (:func:`dln_experiment`) — the 25-layer 10×10 deep linear network (full-batch gradient
  descent, squared error) with and without BatchNorm, Figure-4 probes with η ∈ [1/100, 30] × lr.
- ``compare`` (:func:`compare_experiment`) — every normalization × matched seeds; per-norm
  mean and spread over seeds of each probe quantity, one figure per quantity and a table.

Each builder is ``builder(preset="quick", **overrides) -> Experiment``; every ``finalize`` returns
a JSON-able summary with a ``models`` key and writes ``out/<figure>.png`` and ``.pdf``.

Quick-preset wall times measured on the shared 2-core development CPU (load average 6–10, so a
free machine is faster): see each builder's docstring.

Example (trains; about 2 minutes)::

    from landscape.reproduce import run_experiment
    summary = run_experiment(fig3_experiment("quick"), "runs/fig3")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape.config import ConfigError, TrainConfig
from landscape.probes import ICS, block_masks, internal_covariate_shift, param_mask, param_paths
from landscape.reproduce import (
    PRESETS,
    Experiment,
    fig4_finalize,
    fig4_summary,
    preset_config,
    register_experiment,
)

__all__ = [
    "COMPARE_METRICS",
    "COMPARE_NORMS",
    "COMPARE_QUICK",
    "DLN_PRESETS",
    "FIG3_LAYERS",
    "FIG3_QUICK",
    "FIG5_NORMS",
    "FIG5_QUICK",
    "ICS",
    "aggregate_over_seeds",
    "block_masks",
    "clip_blocks",
    "compare_experiment",
    "dln_experiment",
    "fig3_experiment",
    "fig5_experiment",
    "ics_measurement",
    "internal_covariate_shift",
    "param_mask",
    "param_paths",
]

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


# ==============================================================================================
# Internal covariate shift (Definition 2.1): the probe is landscape.probes.internal_covariate_shift
# ==============================================================================================


def _layer_name(index: int) -> str:
    """The paper's 1-based layer number: block 4 → "layer #5"."""
    return f"layer #{index + 1}"


def clip_blocks(blocks: Iterable[int], depth: int) -> list[int]:
    """Distinct block indices within ``[0, depth)``, ascending, for layers asked for by index.

    Taken from the highest request down, each index becomes ``min(index, previous − 1)`` (the
    first one ``min(index, depth − 1)``), so requests beyond a shallow model's depth move to its
    last blocks instead of collapsing onto one; requests that no longer fit are dropped.

    Example:
        >>> clip_blocks([4, 9], 13), clip_blocks([4, 9], 8), clip_blocks([4, 9], 4)
        ([4, 9], [4, 7], [2, 3])
    """
    out: list[int] = []
    limit = depth - 1
    for b in sorted({int(b) for b in blocks}, reverse=True):
        b = min(b, limit)
        if b < 0:
            break
        out.append(b)
        limit = b - 1
    return sorted(out)


def ics_measurement(blocks: Sequence[int], *, every: int, name: str = "ics",
                    container: str = "blocks", weight: str = "proj/kernel"):
    """A :class:`~landscape.train.Measurement` of :func:`internal_covariate_shift` every ``every`` steps.

    ``blocks`` are 0-based block indices (the paper's layers #5 and #10 are blocks 4 and 9),
    fitted to the model's depth by :func:`clip_blocks` (on the 4-block ``vgg5``: blocks 2 and 3);
    records list the layers in block order. The loss is the model's
    training loss in batch-statistics mode (:func:`landscape.bridge.make_loss_fn`), the update is
    the run's optimizer applied to ∇L(θ_t) with the run's optimizer state, so it equals the update
    the training step takes. Each record is ``{"step": t, "layers": {"layer #5": {"block": 4,
    "l2", "cosine", "grad_norm", "shifted_grad_norm"}, ...}}``.
    """
    from landscape import bridge
    from landscape.train import Measurement, ProbeSchedule

    cache: dict[str, Any] = {}

    def build(ctx):
        chosen = clip_blocks(blocks, len(ctx.model.blocks))
        loss_fn = bridge.make_loss_fn(ctx.model, mode="batch_stats")
        masks = {b: block_masks(ctx.params, b, container=container, weight=weight) for b in chosen}
        tx = ctx.tx

        @jax.jit
        def measure(params, opt_state, batch):
            grad = jax.grad(loss_fn)(params, batch)
            updates, _ = tx.update(grad, opt_state, params)
            return {b: internal_covariate_shift(loss_fn, params, batch, updates, layer=lm,
                                                earlier=em, grad=grad)
                    for b, (lm, em) in masks.items()}

        cache.update(model=ctx.model, measure=measure)

    def fn(ctx) -> dict[str, Any]:
        if cache.get("model") is not ctx.model:
            build(ctx)
        result = cache["measure"](ctx.params, ctx.opt_state, ctx.batch)
        return {"layers": {
            _layer_name(b): {"block": b, **{k: float(v) for k, v in result[b]._asdict().items()}}
            for b in sorted(result)}}

    return Measurement(name, fn, ProbeSchedule(every=int(every)))


# ==============================================================================================
# Shared helpers
# ==============================================================================================


def _clean(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _preset(preset: str, defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]
            ) -> TrainConfig:
    """``preset_config`` with experiment-specific defaults layered between preset and overrides."""
    if preset not in PRESETS:
        raise ConfigError(
            f"preset={preset!r} is not accepted; expected one of {', '.join(PRESETS)}")
    return preset_config(preset, **{**defaults.get(preset, {}), **_clean(overrides)})


def _finite(values: Iterable[Any]) -> np.ndarray:
    a = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    return a[np.isfinite(a)]


def _median(values: Iterable[Any]) -> float:
    a = _finite(values)
    return float(np.median(a)) if a.size else math.nan


def _training_curves(run: Mapping[str, Any]) -> dict[str, list[float]]:
    train, ev = run["train"], run["eval"]
    return {"steps": [r["step"] for r in train], "train_loss": [r["loss"] for r in train],
            "train_accuracy": [r["accuracy"] for r in train],
            "eval_steps": [r["step"] for r in ev],
            "test_accuracy": [r["test_accuracy"] for r in ev]}


def _describe(cfg: TrainConfig) -> str:
    if cfg.model == "dln":
        return f"deep linear network (25×10×10), full-batch GD, lr {cfg.lr:g}"
    return f"{cfg.model} (width {cfg.width:g}) on {cfg.dataset}, {cfg.optimizer} lr {cfg.lr:g}"


# ==============================================================================================
# Figure 3 — ICS
# ==============================================================================================

#: Paper's layers: VGG #5 and #10 (0-based blocks 4, 9); DLN #9 and #17 (blocks 8, 16); for the
#: 3-block MLP the last two (block 0 has no earlier layer: its ICS is 0 by definition).
FIG3_LAYERS = {"vgg": (4, 9), "dln": (8, 16), "mlp": (1, 2)}
#: Fig. 3 quick defaults on top of ``PRESETS["quick"]``: the ICS every 10 steps.
FIG3_QUICK: dict[str, dict[str, Any]] = {"quick": dict(probe_every=10)}


def _ics_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    series: dict[str, dict[str, list[float]]] = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        for name, vals in row.get("layers", {}).items():
            s = series.setdefault(name, {"block": vals.get("block"), "steps": [], "l2": [],
                                         "cosine": [], "grad_norm": [], "shifted_grad_norm": []})
            s["steps"].append(int(row["step"]))
            for k in ("l2", "cosine", "grad_norm", "shifted_grad_norm"):
                v = vals.get(k)
                s[k].append(math.nan if v is None else float(v))
    return series


def _fig3_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str,
                   groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    from landscape.plotting import plot_ics

    models: dict[str, Any] = {}
    for label, run in runs.items():
        layers = _ics_series(run.get("ics", []))
        for s in layers.values():
            rel = np.divide(s["l2"], s["grad_norm"], out=np.full(len(s["l2"]), np.nan),
                            where=np.asarray(s["grad_norm"]) > 0)
            s["relative_l2"] = rel.tolist()
            s["median_l2"] = _median(s["l2"])
            s["median_cosine"] = _median(s["cosine"])
            s["median_relative_l2"] = _median(rel)
        base = fig4_summary(run)
        models[label] = {"layers": layers, "train_loss": base["train_loss"],
                         "test_accuracy": base["test_accuracy"],
                         "diverged_at_step": base["diverged_at_step"]}
    comparison: dict[str, Any] = {}
    for suffix, labels in groups.items():
        bn, va = (models.get(l) for l in labels)
        if bn is None or va is None:
            continue
        for name in bn["layers"]:
            if name not in va["layers"]:
                continue
            a, b = bn["layers"][name], va["layers"][name]
            n = min(len(a["l2"]), len(b["l2"]))
            x, y = np.asarray(a["l2"][:n]), np.asarray(b["l2"][:n])
            ok = np.isfinite(x) & np.isfinite(y)
            comparison[f"{name}{suffix}"] = {
                "fraction_steps_bn_l2_below_vanilla":
                    float(np.mean(x[ok] < y[ok])) if ok.any() else math.nan,
                "median_l2_bn": a["median_l2"], "median_l2_vanilla": b["median_l2"],
                "median_cosine_bn": a["median_cosine"], "median_cosine_vanilla": b["median_cosine"],
                "median_relative_l2_bn": a["median_relative_l2"],
                "median_relative_l2_vanilla": b["median_relative_l2"],
            }
    series = {label: {name: {k: s[k] for k in ("steps", "l2", "cosine")}
                      for name, s in m["layers"].items()} for label, m in models.items()}
    figures = ["fig3"]
    plot_ics(series, title=title, path=out / "fig3")
    if len(groups) > 1:
        for suffix, labels in groups.items():
            name = f"fig3_lr{suffix.split('=')[-1]}"
            plot_ics({l: series[l] for l in labels if l in series}, title=f"{title}{suffix}",
                     path=out / name)
            figures.append(name)
    # ``comparison`` holds flat floats (the CLI prints it); ``ics_comparison`` the full statistics.
    flat = {f"{layer}: {key}": comparison[layer][key] for layer in comparison
            for key in ("fraction_steps_bn_l2_below_vanilla", "median_cosine_bn",
                        "median_cosine_vanilla")}
    return {"models": models, "comparison": flat, "ics_comparison": comparison,
            "figures": figures, "config": {label: run["config"] for label, run in runs.items()}}


def fig3_experiment(preset: str = "quick", *, layers: Sequence[int] | None = None,
                    ics_every: int | None = None, lrs: Sequence[float] | None = None,
                    **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 3: ICS (Definition 2.1) with and without BatchNorm, matched seeds.

    Runs ``batchnorm`` (norm "batch") and ``vanilla`` (norm "none"), otherwise identical, and
    records :func:`internal_covariate_shift` of two layers every ``ics_every`` steps
    (default: the preset's ``probe_every``; the paper does not state a frequency). The
    Figure-4 probes are switched off in these runs (they are not part of Fig. 3).

    Args:
        preset: "quick" (``PRESETS["quick"]`` with the ICS every 10 steps, :data:`FIG3_QUICK`) or
            "paper". With ``model="dln"`` (and ``dataset="dln"``) the defaults come from
            :data:`DLN_PRESETS` instead (lr 1e-6; the paper's DLN panels use 1e-6 and 1e-7).
        layers: 0-based block indices (default: the paper's layers #5, #10 → blocks 4, 9 for a VGG,
            #9, #17 → 8, 16 for the DLN; blocks 1, 2 for the MLP — block 0 has no earlier layer,
            so its ICS is 0 by definition), fitted to the model's depth by
            :func:`clip_blocks` (VGG-16: #5, #10; VGG-11: #5, #8; the 4-block vgg5: #3, #4).
        ics_every: measure every N steps (default: the config's ``probe_every``).
        lrs: learning rates (default: the preset's); the paper shows 0.1 and 0.01. With several,
            labels become ``"batchnorm lr=0.1"`` etc. and one extra figure per rate is written.
        **overrides: :class:`TrainConfig` fields.

    Writes ``fig3.png/.pdf`` (:func:`landscape.plotting.plot_ics`). Quick preset: about 1.5–3 min
    (100–175 s) on the shared 2-core CPU.
    """
    is_dln = "dln" in (overrides.get("model"), overrides.get("dataset"))
    base = _preset(preset, DLN_PRESETS if is_dln else FIG3_QUICK, overrides)
    every = int(ics_every if ics_every is not None else (base.probe_every or 10))
    if every < 1:
        raise ConfigError(f"ics_every={every!r} must be >= 1")
    family = "vgg" if base.model.startswith("vgg") else base.model
    chosen = tuple(int(b) for b in (layers if layers is not None else FIG3_LAYERS[family]))
    if not chosen or any(b < 0 for b in chosen):
        raise ConfigError(f"layers={layers!r} must be non-negative 0-based block indices")
    rates = tuple(float(r) for r in (lrs if lrs is not None else (base.lr,)))
    runs: dict[str, TrainConfig] = {}
    groups: dict[str, tuple[str, str]] = {}
    for lr in rates:
        suffix = "" if len(rates) == 1 else f" lr={lr:g}"
        bn, va = f"batchnorm{suffix}", f"vanilla{suffix}"
        runs[bn] = base.replace(norm="batch", lr=lr, probe_every=0, probe_at=(), tag=bn)
        runs[va] = base.replace(norm="none", lr=lr, probe_every=0, probe_at=(), tag=va)
        groups[suffix] = (bn, va)
    title = (f"ICS (Def. 2.1): {_describe(base)}"
             if len(rates) == 1 else f"ICS (Def. 2.1): {base.model} on {base.dataset}")
    measure = ics_measurement(chosen, every=every)
    return Experiment(
        "fig3", runs, lambda out, r: _fig3_finalize(out, r, title=title, groups=groups),
        measurements=lambda label, cfg: (measure,),
        options={"preset": preset, **overrides, "layers": list(chosen), "ics_every": every,
                 "lrs": list(rates)})


# ==============================================================================================
# Figure 5 — ℓp normalization
# ==============================================================================================

#: Figure-5 runs: label → normalization name.
FIG5_NORMS: dict[str, str] = {"vanilla": "none", "batchnorm": "batch", "lp1": "lp1", "lp2": "lp2",
                              "lpinf": "lpinf"}
#: Fig. 5 quick defaults on top of ``PRESETS["quick"]`` (five runs must fit in a few minutes).
FIG5_QUICK: dict[str, dict[str, Any]] = {"quick": dict(width=0.125, steps=200, probe_every=10,
                                                       eval_every=50, checkpoint_every=100)}


def _fig5_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str) -> dict[str, Any]:
    from landscape.plotting import plot_training

    summary = fig4_finalize(out, runs, title=f"landscape probes: {title}",
                            figure_name="fig5_probes")
    curves = {label: _training_curves(run) for label, run in runs.items()}
    longest = max((len(c["steps"]) for c in curves.values()), default=0)
    smooth = max(1, longest // 40)
    diverged = {k: v["diverged_at_step"] for k, v in summary["models"].items()}
    plot_training(curves, title=f"{title} (train curves: moving average of {smooth} steps)",
                  smooth=smooth, diverged=diverged, path=out / "fig5")
    for label, c in curves.items():
        acc = c["train_accuracy"]
        tail = acc[-max(1, len(acc) // 10):] if acc else [math.nan]
        summary["models"][label]["train_accuracy"] = float(np.mean(tail))
        summary["models"][label]["norm"] = runs[label]["config"]["norm"]
    summary["figures"] = ["fig5", "fig5_probes"]
    summary["train_smoothing_window"] = smooth
    return summary


def fig5_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 5: ℓ1, ℓ2, ℓ∞ normalization vs BatchNorm vs vanilla, matched seeds.

    Five runs identical but for the normalization (labels :data:`FIG5_NORMS`). Writes
    ``fig5.png`` (train loss, train and test accuracy; :func:`landscape.plotting.plot_training`,
    train series smoothed by a trailing moving average of steps/40 steps) and ``fig5_probes.png``
    (the Figure-4 probes of all five). Quick preset: ``PRESETS["quick"]`` with width 0.125,
    200 steps, probes every 10 steps (:data:`FIG5_QUICK`) — about 3 min (170–215 s) on the
    shared 2-core CPU.
    """
    base = _preset(preset, FIG5_QUICK, overrides)
    runs = {label: base.replace(norm=norm, tag=label) for label, norm in FIG5_NORMS.items()}
    title = (f"{_describe(base)}, η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")
    return Experiment("fig5", runs, lambda out, r: _fig5_finalize(out, r, title=title),
                      options={"preset": preset, **overrides})


# ==============================================================================================
# Deep linear network
# ==============================================================================================

#: DLN settings. "paper": lr 1e-6, 10 000 full-batch GD steps, a probe at every step,
#: η ∈ [1/100, 30] × lr. "quick": the same lr and η range, 2 000 steps, a probe every 20 steps.
DLN_PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="dln", model="dln", lr=1e-6, steps=2000, batch_size=1000,
                  probe_every=20, num_step_sizes=8, step_size_lo=0.01, step_size_hi=30.0,
                  eval_every=500, checkpoint_every=1000),
    "paper": dict(dataset="dln", model="dln", lr=1e-6, steps=10000, batch_size=1000,
                  probe_every=1, num_step_sizes=8, step_size_lo=0.01, step_size_hi=30.0,
                  eval_every=1000, checkpoint_every=1000),
}


def dln_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. deep-linear-network landscape (Sec. 3.2, App. A.1): BN vs vanilla.

    The 25-layer 10×10 linear network ``‖W₂₅⋯W₁x − Ax‖²`` on 1 000 Gaussian samples, full-batch
    gradient descent, with BatchNorm after each layer but the last ("batchnorm") and without
    ("vanilla"); Figure-4 probes over η ∈ [1/100, 30] × lr. ``dataset``/``model`` are fixed to
    "dln" (other values raise :class:`ConfigError`); ``width`` and ``batch_size`` have no effect.
    Writes ``dln.png`` (:func:`landscape.plotting.plot_fig4`). Quick preset
    (:data:`DLN_PRESETS`): the paper's lr 1e-6 for 2 000 steps, probes every 20 steps — about
    2.5 min (150 s; the BatchNorm run takes 5× the vanilla one) on the shared 2-core CPU.
    """
    for key in ("dataset", "model"):
        if overrides.get(key) not in (None, "dln"):
            raise ConfigError(f"{key}={overrides[key]!r} is not accepted by the dln experiment "
                              "(it is always the deep linear network)")
    base = _preset(preset, DLN_PRESETS, overrides)
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}
    title = (f"{_describe(base)}, {base.steps} steps, "
             f"η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")

    def finalize(out: Path, r: dict[str, dict[str, Any]]) -> dict[str, Any]:
        summary = fig4_finalize(out, r, title=title, figure_name="dln")
        summary["figures"] = ["dln"]
        return summary

    return Experiment("dln", runs, finalize, options={"preset": preset, **overrides})


# ==============================================================================================
# Normalization comparison over seeds
# ==============================================================================================

#: Every normalization the CLI compares by default.
COMPARE_NORMS: tuple[str, ...] = ("none", "batch", "layer", "group", "rms", "weight", "lp1", "lp2",
                                  "lpinf")
#: The per-step quantities aggregated over seeds (one figure each: ``compare_<metric>.png``).
COMPARE_METRICS: tuple[str, ...] = ("effective_beta", "grad_change_max", "loss_range", "grad_norm",
                                    "train_loss")
#: Compare quick defaults on top of ``PRESETS["quick"]``: its VGG at width 0.125, 100 steps,
#: probes every 10 steps at 4 step sizes. 9 norms × 3 seeds take about 10 min on the shared
#: 2-core CPU (612 s measured; ≈ 20 s per run, most of it compilation).
COMPARE_QUICK: dict[str, dict[str, Any]] = {"quick": dict(width=0.125, steps=100, probe_every=10,
                                                          num_step_sizes=4, eval_every=50,
                                                          checkpoint_every=100)}


def aggregate_over_seeds(per_seed: Mapping[Any, tuple[Sequence[float], Sequence[float]]]
                         ) -> dict[str, Any]:
    """Mean and spread over seeds of one per-step quantity, aligned on the union of steps.

    Args:
        per_seed: seed → ``(steps, values)`` (equal lengths; ``None`` counts as NaN).

    Returns:
        dict of lists over the sorted union of steps: ``steps``, ``mean`` (over the seeds with a
        finite value at that step), ``std`` (sample standard deviation, ddof = 1; 0 with one
        value), ``lo``/``hi`` (min/max over seeds — the band :func:`landscape.plotting.plot_compare`
        draws), ``count`` (finite values per step); and ``n``, the number of seeds. Steps where
        no seed is finite hold NaN.

    Example:
        >>> aggregate_over_seeds({0: ([0, 1], [1.0, 2.0]), 1: ([0, 1], [3.0, 4.0])})["mean"]
        [2.0, 3.0]
    """
    steps = sorted({int(s) for st, _ in per_seed.values() for s in st})
    index = {s: i for i, s in enumerate(steps)}
    table = np.full((len(per_seed), len(steps)), np.nan)
    for row, (st, vals) in enumerate(per_seed.values()):
        if len(st) != len(vals):
            raise ValueError(f"steps and values differ in length ({len(st)} vs {len(vals)})")
        for s, v in zip(st, vals):
            table[row, index[int(s)]] = math.nan if v is None else float(v)
    ok = np.isfinite(table)
    count = ok.sum(axis=0)
    filled = np.where(ok, table, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), np.nan)
        sq = np.where(ok, (table - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(sq / np.maximum(count - 1, 1)),
                       np.where(count == 1, 0.0, np.nan))
    lo = np.where(count > 0, np.where(ok, table, np.inf).min(axis=0), np.nan)
    hi = np.where(count > 0, np.where(ok, table, -np.inf).max(axis=0), np.nan)
    return {"steps": steps, "mean": mean.tolist(), "std": std.tolist(), "lo": lo.tolist(),
            "hi": hi.tolist(), "count": count.astype(int).tolist(), "n": len(per_seed)}


def _mean_std(values: Sequence[float]) -> dict[str, Any]:
    a = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    f = a[np.isfinite(a)]
    return {"mean": float(f.mean()) if f.size else math.nan,
            "std": float(f.std(ddof=1)) if f.size > 1 else (0.0 if f.size else math.nan),
            "values": a.tolist(), "finite": int(f.size)}


def _run_metric(entry: Mapping[str, Any], run: Mapping[str, Any], metric: str
                ) -> tuple[list[int], list[float]]:
    if metric == "train_loss":
        return [int(r["step"]) for r in run["train"]], [r["loss"] for r in run["train"]]
    if metric == "loss_range":
        return entry["steps"], np.subtract(entry["loss_max"], entry["loss_min"]).tolist()
    return entry["steps"], entry[metric]


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """NaN-aware trailing moving average over ``window`` points (NaN points stay NaN)."""
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(idx - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = (csum[idx] - csum[lo]) / (ccnt[idx] - ccnt[lo])
    return np.where(ok, avg, np.nan).tolist()


def _legend_outside(fig: Any) -> None:
    """Move a one-axis figure's legend to the right of the axis (nine norms cover the data)."""
    ax = fig.axes[0]
    legend = ax.get_legend()
    if legend is None:
        return
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    fig.set_size_inches(8.2, 4.8)
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=9)


def _fmt(d: Mapping[str, Any]) -> str:
    m, s = d["mean"], d["std"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.4g} ± {s:.2g}"


def _compare_finalize(out: Path, runs: dict[str, dict[str, Any]], *,
                      grid: Mapping[str, Mapping[int, str]], title: str) -> dict[str, Any]:
    from landscape.plotting import plot_compare, save_figure

    models = {label: fig4_summary(run) for label, run in runs.items()}
    per_norm: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, Any]] = {}
    figures = []
    for norm, seeds in grid.items():
        per_norm[norm] = {metric: aggregate_over_seeds(
            {s: _run_metric(models[label], runs[label], metric) for s, label in seeds.items()})
            for metric in COMPARE_METRICS}
        entries = [models[label] for label in seeds.values()]
        table[norm] = {
            "seeds": sorted(seeds),
            "final_train_loss": _mean_std([e["train_loss"] for e in entries]),
            "test_accuracy": _mean_std([e["test_accuracy"] for e in entries]),
            "median_effective_beta": _mean_std([_median(e["effective_beta"]) for e in entries]),
            "median_grad_change_max": _mean_std([_median(e["grad_change_max"]) for e in entries]),
            "diverged": sum(e["diverged_at_step"] is not None for e in entries),
        }
    names = {"effective_beta": "effective β-smoothness (max over η)",
             "grad_change_max": "gradient predictiveness: max over η of ‖∇L(θ−ηg) − g‖₂",
             "loss_range": "loss variation: max − min over η of L(θ−ηg)",
             "grad_norm": "gradient norm ‖∇L(θ)‖₂", "train_loss": "train loss (minibatch)"}
    longest = max((len(r["train"]) for r in runs.values()), default=0)
    window = max(1, longest // 20)
    for metric in COMPARE_METRICS:
        data = {}
        for norm in grid:
            agg = dict(per_norm[norm][metric])
            if metric == "train_loss" and window > 1:
                agg = {**agg, **{k: _smooth(agg[k], window) for k in ("mean", "lo", "hi")}}
            data[norm] = agg
        diverged = {norm: min((models[l]["diverged_at_step"] for l in seeds.values()
                               if models[l]["diverged_at_step"] is not None), default=None)
                    for norm, seeds in grid.items()}
        smoothed = metric == "train_loss" and window > 1
        note = f"; moving average of {window} steps" if smoothed else ""
        fig = plot_compare(data, names[metric], diverged=diverged,
                           title=f"{names[metric]}\n{title}\n"
                                 f"line: mean over seeds; band: min..max{note}")
        _legend_outside(fig)
        save_figure(fig, out / f"compare_{metric}")
        figures.append(f"compare_{metric}")
    lines = ["| norm | seeds | final train loss | test accuracy | median effective β "
             "| median max ‖∇L(θ−ηg) − g‖₂ | diverged |",
             "|---|---|---|---|---|---|---|"]
    for norm, row in table.items():
        lines.append(f"| {norm} | {len(row['seeds'])} | {_fmt(row['final_train_loss'])} | "
                     f"{_fmt(row['test_accuracy'])} | {_fmt(row['median_effective_beta'])} | "
                     f"{_fmt(row['median_grad_change_max'])} | {row['diverged']} |")
    md = (f"# Normalization comparison\n\n{title}.\n\nEach cell: mean ± sample standard deviation "
          "(ddof = 1) over seeds. Final train loss: mean minibatch loss over the last 10 % of "
          "steps; test accuracy: last evaluation; median effective β and median max gradient "
          "change: median over the probed steps of one run, then mean ± std over seeds.\n\n"
          + "\n".join(lines) + "\n")
    (out / "compare_table.md").write_text(md, encoding="utf-8")
    return {"models": models, "per_norm": per_norm, "table": table, "figures": figures,
            "spread": {"figures": "min..max over seeds (band) around the mean (line)",
                       "table": "mean ± sample std (ddof=1) over seeds"},
            "config": {label: run["config"] for label, run in runs.items()}}


def compare_experiment(preset: str = "quick", *, norms: Sequence[str] = COMPARE_NORMS,
                       seeds: int = 3, **overrides: Any) -> Experiment:
    """Every normalization in ``norms`` × ``seeds`` matched seeds, aggregated per normalization.

    Run ``f"{norm}/seed{s}"`` uses seed ``s`` = base seed + k (k < ``seeds``) for both the
    initialisation and the data order, so seed s is the same across norms. ``finalize`` aggregates,
    per norm over seeds (:func:`aggregate_over_seeds`), each probe quantity per probed step —
    ``effective_beta``, ``grad_change_max``, ``loss_range`` (loss_max − loss_min), ``grad_norm`` —
    and the per-step train loss; it writes ``compare_<metric>.png`` (mean line, min..max band;
    the train loss is drawn as a moving average of steps/20 steps), ``compare_table.md`` and
    ``summary["table"]``: per norm the final train loss, test accuracy, median effective β and
    median max gradient change, each mean ± sample std over seeds.

    Quick preset: ``PRESETS["quick"]`` with :data:`COMPARE_QUICK` (width 0.125, 100 steps, probes
    every 10 steps at 4 step sizes): ≈ 20–25 s per run on the shared 2-core CPU, so the default 9
    norms × 3 seeds take ≈ 10 min (612 s measured); two norms × two seeds ≈ 1.5 min.
    """
    norms = list(dict.fromkeys(str(n) for n in norms))
    if not norms:
        raise ConfigError("norms must name at least one normalization")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds={seeds!r} must be an integer >= 1")
    base = _preset(preset, COMPARE_QUICK, overrides)
    runs: dict[str, TrainConfig] = {}
    grid: dict[str, dict[int, str]] = {}
    for norm in norms:
        for k in range(seeds):
            seed = base.seed + k
            label = f"{norm}/seed{seed}"
            runs[label] = base.replace(norm=norm, seed=seed, tag=label)
            grid.setdefault(norm, {})[seed] = label
    title = f"{_describe(base)}, {seeds} seed{'s' if seeds > 1 else ''}"
    return Experiment("compare", runs,
                      lambda out, r: _compare_finalize(out, r, grid=grid, title=title),
                      options={"preset": preset, "norms": norms, "seeds": seeds, **overrides})


register_experiment("fig3", fig3_experiment)
register_experiment("fig5", fig5_experiment)
register_experiment("dln", dln_experiment)
register_experiment("compare", compare_experiment)
