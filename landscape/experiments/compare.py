"""``landscape compare``: every normalization × matched seeds, mean and spread of each probe quantity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.experiments.fig4 import fig4_summary
from landscape.experiments.base import (Experiment, aggregate_over_seeds, describe, layered_preset,
                                        median)

__all__ = ["COMPARE_METRICS", "COMPARE_NORMS", "COMPARE_QUICK", "TRANSFORMER_COMPARE_NORMS",
           "TRANSFORMER_DEFAULTS", "compare_defaults", "compare_experiment",
           "compare_finalize"]



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
#: The normalizations a transformer compares by default (no batch statistics across tokens).
TRANSFORMER_COMPARE_NORMS: tuple[str, ...] = ("layer", "rms", "dyt", "none")
#: Defaults for ``model="transformer"`` (they replace the CNN ones): next-character prediction on
#: ``--dataset text`` (context 64) with the model's own d_model 64 (``width`` 1), 2 layers, 4 heads;
#: AdamW (optax's weight decay 1e-4) at lr 1e-3 after a linear warm-up over the first 10 % of
#: the steps; batch 32. The Figure-4
#: probe moves along −g by η ∈ [10, 80] × lr = [0.01, 0.08]: AdamW's step is not η·g, and at
#: initialisation this range moves θ by 0.03–0.2, about one AdamW step (≈ lr·√P = 0.34 for the
#: 117 k parameters) for the LayerNorm models, where lr multiples [½, 4] change the loss by less
#: than 1e-3. Quick: 100 steps (≈ 50 s per run on the shared 2-core CPU).
TRANSFORMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="text", width=1.0, optimizer="adamw", lr=1e-3, batch_size=32,
                  steps=100, probe_every=10, num_step_sizes=4, step_size_lo=10.0,
                  step_size_hi=80.0, eval_every=50, checkpoint_every=100),
    "paper": dict(dataset="text", width=1.0, optimizer="adamw", lr=1e-3, batch_size=64,
                  steps=5000, probe_every=50, num_step_sizes=8, step_size_lo=10.0,
                  step_size_hi=80.0, eval_every=500, checkpoint_every=1000),
}
#: Warm-up of the transformer defaults: this fraction of the run's steps (linear from 0 to lr).
TRANSFORMER_WARMUP_FRACTION = 0.1


def compare_defaults(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-preset defaults layered under ``overrides``: :data:`COMPARE_QUICK`, or for
    ``model="transformer"`` :data:`TRANSFORMER_DEFAULTS` with a warm-up of
    :data:`TRANSFORMER_WARMUP_FRACTION` of the steps (the overridden number of steps, if any)."""
    if overrides.get("model") != "transformer":
        return COMPARE_QUICK
    out = {}
    for preset, values in TRANSFORMER_DEFAULTS.items():
        steps = overrides.get("steps") or values["steps"]
        out[preset] = {**values, "warmup_steps": int(steps * TRANSFORMER_WARMUP_FRACTION)}
    return out


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


def _fmt(d: Mapping[str, Any]) -> str:
    m, s = d["mean"], d["std"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.4g} ± {s:.2g}"


#: Figure titles / axis names of the aggregated metrics.
_METRIC_NAMES = {"effective_beta": "effective β-smoothness (max over η)",
                 "grad_change_max": "gradient predictiveness: max over η of ‖∇L(θ−ηg) − g‖₂",
                 "loss_range": "loss variation: max − min over η of L(θ−ηg)",
                 "grad_norm": "gradient norm ‖∇L(θ)‖₂", "train_loss": "train loss (minibatch)",
                 "lambda_max": "λ_max(∇²L) (Lanczos, the probe's minibatch)"}


def _table_row(entries: Sequence[Mapping[str, Any]], seeds: Mapping[int, str]) -> dict[str, Any]:
    """One normalization's row: final train loss, test accuracy, median effective β and median
    max gradient change (and median λ_max when measured), mean ± std over seeds."""
    row = {
        "seeds": sorted(seeds),
        "final_train_loss": _mean_std([e["train_loss"] for e in entries]),
        "test_accuracy": _mean_std([e["test_accuracy"] for e in entries]),
        "median_effective_beta": _mean_std([median(e["effective_beta"]) for e in entries]),
        "median_grad_change_max": _mean_std([median(e["grad_change_max"]) for e in entries]),
        "diverged": sum(e["diverged_at_step"] is not None for e in entries),
    }
    if all("lambda_max" in e for e in entries):
        row["median_lambda_max"] = _mean_std([median(e["lambda_max"]) for e in entries])
    return row


def _compare_figures(out: Path, runs: Mapping[str, Mapping[str, Any]],
                     models: Mapping[str, Mapping[str, Any]], per_norm: Mapping[str, Any],
                     grid: Mapping[str, Mapping[int, str]], metrics: Sequence[str],
                     title: str) -> list[str]:
    """``compare_<metric>.png`` per metric: the mean over seeds and the min..max band."""
    from landscape.figures import moving_average, plot_compare

    longest = max((len(r["train"]) for r in runs.values()), default=0)
    window = max(1, longest // 20)
    diverged = {norm: min((models[l]["diverged_at_step"] for l in seeds.values()
                           if models[l]["diverged_at_step"] is not None), default=None)
                for norm, seeds in grid.items()}
    figures = []
    for metric in metrics:
        smoothed = metric == "train_loss" and window > 1
        data = {norm: ({**per_norm[norm][metric], **{k: moving_average(per_norm[norm][metric][k], window)
                                                    for k in ("mean", "lo", "hi")}}
                       if smoothed else per_norm[norm][metric]) for norm in grid}
        note = f"; moving average of {window} steps" if smoothed else ""
        plot_compare(data, _METRIC_NAMES[metric], diverged=diverged, legend_outside=True,
                     title=f"{_METRIC_NAMES[metric]}\n{title}\n"
                           f"line: mean over seeds; band: min..max{note}",
                     path=out / f"compare_{metric}")
        figures.append(f"compare_{metric}")
    return figures


def _compare_markdown(table: Mapping[str, Mapping[str, Any]], title: str) -> str:
    curvature = all("median_lambda_max" in row for row in table.values())
    extra = " median λ_max |" if curvature else ""
    lines = ["| norm | seeds | final train loss | test accuracy | median effective β "
             f"| median max ‖∇L(θ−ηg) − g‖₂ |{extra} diverged |",
             "|---|---|---|---|---|---|" + ("---|" if curvature else "") + "---|"]
    for norm, row in table.items():
        lam = f" {_fmt(row['median_lambda_max'])} |" if curvature else ""
        lines.append(f"| {norm} | {len(row['seeds'])} | {_fmt(row['final_train_loss'])} | "
                     f"{_fmt(row['test_accuracy'])} | {_fmt(row['median_effective_beta'])} | "
                     f"{_fmt(row['median_grad_change_max'])} |{lam} {row['diverged']} |")
    return (f"# Normalization comparison\n\n{title}.\n\nEach cell: mean ± sample standard "
            "deviation (ddof = 1) over seeds. Final train loss: mean minibatch loss over the last "
            "10 % of steps; test accuracy: last evaluation; median effective β and median max "
            "gradient change (and λ_max): median over the probed steps of one run, then mean ± std "
            "over seeds.\n\n" + "\n".join(lines) + "\n")


def compare_finalize(out: Path, runs: dict[str, dict[str, Any]], *,
                     grid: Mapping[str, Mapping[int, str]], title: str) -> dict[str, Any]:
    """Aggregate ``grid`` (name → seed → run label) over seeds: :data:`COMPARE_METRICS` (and
    ``lambda_max`` when every run measured it) per probed step, the table per name, the figures
    and ``compare_table.md``; returns the ``summary.json`` content."""
    models = {label: fig4_summary(run) for label, run in runs.items()}
    metrics = COMPARE_METRICS + (("lambda_max",) if all("lambda_max" in m for m in models.values())
                                 else ())
    per_norm = {norm: {metric: aggregate_over_seeds(
        {s: _run_metric(models[label], runs[label], metric) for s, label in seeds.items()})
        for metric in metrics} for norm, seeds in grid.items()}
    table = {norm: _table_row([models[label] for label in seeds.values()], seeds)
             for norm, seeds in grid.items()}
    figures = _compare_figures(out, runs, models, per_norm, grid, metrics, title)
    (out / "compare_table.md").write_text(_compare_markdown(table, title), encoding="utf-8")
    return {"models": models, "per_norm": per_norm, "table": table, "figures": figures,
            "spread": {"figures": "min..max over seeds (band) around the mean (line)",
                       "table": "mean ± sample std (ddof=1) over seeds"},
            "config": {label: run["config"] for label, run in runs.items()}}


def compare_experiment(preset: str = "quick", *, norms: Sequence[str] | None = None,
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
    ``norms`` defaults to :data:`COMPARE_NORMS`, for ``model="transformer"`` to
    :data:`TRANSFORMER_COMPARE_NORMS` with :data:`TRANSFORMER_DEFAULTS` (``--dataset text``,
    AdamW with warm-up; ``model_options`` such as ``norm_position="post"`` apply to every run).
    """
    transformer = overrides.get("model") == "transformer"
    if norms is None:
        norms = TRANSFORMER_COMPARE_NORMS if transformer else COMPARE_NORMS
    norms = list(dict.fromkeys(str(n) for n in norms))
    if not norms:
        raise ConfigError("norms must name at least one normalization")
    if transformer and not set(norms) <= set(TRANSFORMER_COMPARE_NORMS):
        raise ConfigError(f"norms={','.join(norms)}: a transformer takes "
                          f"{', '.join(TRANSFORMER_COMPARE_NORMS)} (per-token normalizations)")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds={seeds!r} must be an integer >= 1")
    base = layered_preset(preset, compare_defaults(overrides), overrides)
    runs: dict[str, TrainConfig] = {}
    grid: dict[str, dict[int, str]] = {}
    for norm in norms:
        for k in range(seeds):
            seed = base.seed + k
            label = f"{norm}/seed{seed}"
            runs[label] = base.replace(norm=norm, seed=seed, tag=label)
            grid.setdefault(norm, {})[seed] = label
    shown = ", ".join(f"{k}={v}" for k, v in sorted(base.model_options.items()))
    title = (f"{describe(base)}{f' ({shown})' if shown else ''}, {seeds} "
             f"seed{'s' if seeds > 1 else ''}")
    return Experiment("compare", runs,
                      lambda out, r: compare_finalize(out, r, grid=grid, title=title),
                      options={"preset": preset, "norms": norms, "seeds": seeds, **overrides})
