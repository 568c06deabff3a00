"""Li et al. (2018), skip connections: ``landscape reproduce skip``.

Their claim (Visualizing the Loss Landscape of Neural Nets, NeurIPS 2018, Sec. 5, Figs. 5 and 7):
residual nets *without* shortcuts turn chaotic and non-convex as depth grows (ResNet-20-noshort
still looks convex, 56/110-noshort do not), while the same nets with shortcuts stay smooth and
convex-looking; the map of |λ_min/λ_max| of the Hessian over a 2-D slice shows it (near 0: convex).

``skip_experiment`` trains, for each depth N, ``resnetN`` and ``resnetN-noshort`` (the same
config but ``shortcut=False``: same seed, data order and every non-shortcut parameter at
initialisation, :class:`landscape.models.ResNet`) with the Figure-4 probe
(:class:`~landscape.engine.StepProbeHook`, the config's ``probe_every``) and λ_max at the same steps
(:class:`~landscape.engine.CurvatureHook`). ``skip_finalize`` then measures, at the final
parameters θ on one training minibatch (the batch of step ``steps``, the same for every model) in
the batch-statistics loss:

1. the filter-normalized random 2-D slice L(θ + a d₁ + b d₂), (a, b) ∈ [−span, span]²
   (:func:`landscape.probes.random_direction`, :func:`landscape.probes.loss_surface`);
2. on a coarse grid of the *same* plane, λ_max and λ_min of the Hessian at every point and
   their ratio |λ_min/λ_max| (:func:`convexity_map`).

Outputs: ``skip.png`` (per depth: both slices and both convexity maps), ``skip_fig4.png`` (the
Figure-4 panels with λ_max for every model), ``skip_table.md``, ``surfaces/*.npz`` and
``summary.json`` (``models`` → the :func:`~landscape.experiments.fig4.fig4_summary` entry plus the
surface and convexity numbers; ``comparison``, a text written from them; ``table``).

Quick preset: resnet8 and resnet14 (1 and 2 blocks per stage) at width 0.25 (4/8/16 channels) on
MNIST-5k, SGD with momentum 0.9, lr 0.05, weight decay 5e-4, batch 32, 100 steps, probes (``host``:
a loop of one compiled gradient, not K + 2 in one program; on ResNet-20 w0.25 a ``lax.map`` of the
points ran 18.6 s a probe against 5.0 s for the loop, benchmarks/bench_architectures.py) and λ_max
(8 Lanczos steps) every 25; 9×9 slices on [−1, 1]², 5×5 convexity maps with 8 Lanczos steps on 16
examples. Li et al.: CIFAR-10, ResNet-20/56/110 at full width, 300 epochs, 51×51 grids — the
"paper" preset (resnet20/56/110, He et al.'s 64 000 steps with lr ÷ 10 at 50 % and 75 %), hours
to days on a CPU.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.experiments.base import Experiment, clean_options, median, preset_config

__all__ = ["SKIP_PRESETS", "convexity_map", "skip_experiment", "skip_finalize", "skip_runs"]

#: Per preset: the config (on top of :data:`~landscape.experiments.base.PRESETS`), the depths and
#: the measurement settings (grid points per axis of the slice and of the convexity map, Lanczos
#: steps per convexity point, examples in its batch, Lanczos steps of the λ_max hook).
SKIP_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"config": dict(width=0.25, optimizer="momentum", lr=0.05, momentum=0.9,
                             weight_decay=5e-4, batch_size=32, steps=100, probe_every=25,
                             num_step_sizes=4, probe_strategy="host", eval_every=100,
                             checkpoint_every=100),
              "depths": (8, 14), "grid": 9, "convexity_grid": 5, "lanczos_iters": 8,
              "convexity_examples": 16, "curvature_iters": 8},
    "paper": {"config": dict(width=1.0, optimizer="momentum", lr=0.1, momentum=0.9,
                             weight_decay=5e-4, batch_size=128, steps=64000, schedule="step",
                             probe_every=1000, num_step_sizes=8, eval_every=2000,
                             checkpoint_every=4000),
              "depths": (20, 56, 110), "grid": 51, "convexity_grid": 21, "lanczos_iters": 20,
              "convexity_examples": 128, "curvature_iters": 20},
}
#: |λ_min/λ_max| above this counts as "noticeably non-convex" in the summary (our threshold; Li
#: et al. show the ratio as a colour map without one).
NONCONVEX_RATIO = 0.1


def convexity_map(loss_fn, params, batch, directions: Sequence[Any], coords: Sequence[Any], *,
                  key, num_iters: int) -> dict[str, np.ndarray]:
    """λ_max, λ_min of the Hessian and |λ_min/λ_max| at every point θ + a_i d₁ + b_j d₂.

    At each grid point one Lanczos run of ``num_iters`` steps from the same start (``key``) gives
    all Ritz values of its Krylov space: the largest and the smallest are what
    :func:`landscape.probes.hessian_eigs` returns with ``which="largest"`` and
    ``which="smallest"`` (one run instead of two). The ratio is NaN where λ_max = 0. Li et al.
    (2018), Sec. 6 and Fig. 7 ("mapping the ratio of the principal curvatures").

    Returns:
        dict of (A, B) float64 arrays ``lambda_max``, ``lambda_min``, ``ratio`` and the
        coordinates ``a`` (A,), ``b`` (B,).

    Example::

        m = convexity_map(loss_fn, params, batch, (d1, d2), (np.linspace(-1, 1, 5),) * 2,
                          key=jax.random.key(0), num_iters=8)
        m["ratio"].max()
    """
    import optax

    from landscape import probes

    a, b = (np.asarray(c, np.float64) for c in coords)
    top, bottom = np.full((a.size, b.size), np.nan), np.full((a.size, b.size), np.nan)
    for i, j in np.ndindex(a.size, b.size):
        point = optax.tree.add_scale(optax.tree.add_scale(params, a[i], directions[0]),
                                     b[j], directions[1])
        ritz = np.asarray(probes.hessian_eigs(loss_fn, point, batch, num_iters, key=key,
                                              num_iters=num_iters).eigenvalues, np.float64)
        top[i, j], bottom[i, j] = ritz[0], ritz[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(top != 0, np.abs(bottom / top), np.nan)
    return {"a": a, "b": b, "lambda_max": top, "lambda_min": bottom, "ratio": ratio}


def skip_runs(base: TrainConfig, depths: Sequence[int]) -> dict[str, TrainConfig]:
    """``resnetN`` and ``resnetN-noshort`` for each depth N: ``base`` with that model and
    ``shortcut`` True / False, nothing else changed."""
    runs = {}
    for depth in depths:
        for shortcut in (True, False):
            label = f"resnet{depth}{'' if shortcut else '-noshort'}"
            runs[label] = base.replace(model=f"resnet{depth}", tag=label,
                                       model_options={**base.model_options, "shortcut": shortcut})
    return runs


def _depths(preset: dict[str, Any], depths: Sequence[int] | None,
            overrides: dict[str, Any]) -> tuple[int, ...]:
    """The depths asked for: ``depths``, or ``--model resnetN`` (one depth), or the preset's."""
    model = overrides.pop("model", None)
    if "shortcut" in (overrides.get("model_options") or {}):
        raise ConfigError("reproduce skip trains every depth with and without shortcuts; "
                          "--no-shortcut does not apply")
    if model is not None:
        match = re.fullmatch(r"resnet(\d+)", str(model))
        if not match:
            raise ConfigError(f"reproduce skip compares ResNets; --model must be resnetN, got "
                              f"{model!r}")
        depths = (int(match[1]),)
    return tuple(int(d) for d in (preset["depths"] if depths is None else depths))


def skip_experiment(preset: str = "quick", *, depths: Sequence[int] | None = None,
                    grid: int | None = None, convexity_grid: int | None = None,
                    lanczos_iters: int | None = None, span: float = 1.0,
                    mode: str = "batch_stats", **overrides: Any) -> Experiment:
    """Li et al. (2018): ResNets with and without shortcuts at several depths (see the module).

    Args:
        preset: ``"quick"`` or ``"paper"`` (:data:`SKIP_PRESETS`).
        depths: ResNet depths 6n + 2 (default: the preset's; ``model="resnetN"`` gives one).
        grid, convexity_grid: points per axis of the 2-D slice and of the convexity map.
        lanczos_iters: Lanczos steps per convexity point.
        span: half-width of the plane, in filter-normalized units.
        mode: BatchNorm mode of the measured loss (``"batch_stats"``: the training loss).
        **overrides: :class:`~landscape.config.TrainConfig` fields.

    Example:
        >>> summary = run_experiment(skip_experiment(), "runs/skip")
        >>> print(summary["comparison"])
    """
    if preset not in SKIP_PRESETS:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of "
                          f"{', '.join(SKIP_PRESETS)}")
    p, overrides = SKIP_PRESETS[preset], clean_options(overrides)
    chosen = _depths(p, depths, dict(overrides))
    overrides.pop("model", None)
    base = preset_config(preset, **{**p["config"], "model": f"resnet{chosen[0]}", **overrides})
    settings = {"grid": int(grid or p["grid"]), "span": float(span), "mode": mode,
                "convexity_grid": int(convexity_grid or p["convexity_grid"]),
                "lanczos_iters": int(lanczos_iters or p["lanczos_iters"]),
                "convexity_examples": int(p["convexity_examples"])}
    runs = skip_runs(base, chosen)

    def hooks(label: str, cfg: TrainConfig):
        from landscape.engine import CurvatureHook

        return [CurvatureHook(every=cfg.probe_every, at=cfg.probe_at,
                              num_iters=p["curvature_iters"], mode=cfg.probe_mode)]

    title = (f"ResNets with / without shortcuts, width {base.width:g}, {base.dataset}, "
             f"{base.optimizer} lr {base.lr:g}, {base.steps} steps")
    options = {"preset": preset, "depths": list(chosen), "grid": grid,
               "convexity_grid": convexity_grid, "lanczos_iters": lanczos_iters, "span": span,
               "mode": mode, **overrides}
    return Experiment("skip", runs, lambda out, r: skip_finalize(out, r, settings=settings,
                                                                 title=title),
                      hooks=hooks, options=clean_options(options))


# ----------------------------------------------------------------------------- measurement


def _measure(run_dir: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The 2-D slice and the convexity map of one run around its final parameters."""
    import jax
    import jax.numpy as jnp

    from landscape import bridge, probes
    from landscape.data import batch_at
    from landscape.engine import load_run_data
    from landscape.train import restore_model

    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    train_data = load_run_data(config)[0]
    model = restore_model(run_dir)
    _, params, state = bridge.split(model)
    x, y = batch_at(train_data, config.steps, config.batch_size, seed=config.seed)
    batch = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)
    n = min(settings["convexity_examples"], len(x))
    small = bridge.make_batch(jnp.asarray(x[:n]), jnp.asarray(y[:n]), state)
    loss_fn = bridge.make_loss_fn(model, mode=settings["mode"])
    k1, k2 = jax.random.split(jax.random.key(config.seed))  # surface_2d's plane, kept for the map
    plane = (probes.random_direction(k1, params), probes.random_direction(k2, params))
    axis = jnp.linspace(-settings["span"], settings["span"], settings["grid"])
    coarse = np.linspace(-settings["span"], settings["span"], settings["convexity_grid"])
    surface = probes.loss_surface(loss_fn, params, batch, plane, (axis, axis))
    centre = settings["grid"] // 2  # (0, 0) when the grid is odd
    return {"surface": surface,
            "convexity": convexity_map(loss_fn, params, small, plane, (coarse, coarse),
                                       key=jax.random.key(config.seed + 1),
                                       num_iters=settings["lanczos_iters"]),
            "loss": float(surface.loss[centre, centre] if settings["grid"] % 2
                          else jax.jit(loss_fn)(params, batch))}


def _entry(fig4: Mapping[str, Any], m: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A model's summary numbers: depth and shortcut, the slice's ring increases, the map's
    ratio statistics, and the medians over training of β and λ_max."""
    from landscape.analyze import ring_increase

    s, c = m["surface"], m["convexity"]
    loss, ratio = np.asarray(s.loss, np.float64), c["ratio"]
    finite = ratio[np.isfinite(ratio)]
    centre = (len(c["a"]) // 2, len(c["b"]) // 2)
    lam = [v for v in fig4.get("lambda_max", []) if v is not None and math.isfinite(v)]
    return {
        "depth": int(re.match(r"resnet(\d+)", label)[1]), "shortcut": not label.endswith("noshort"),
        "loss_at_centre": m["loss"], "surface_min": float(np.nanmin(loss)),
        "surface_max": float(np.nanmax(loss)),
        **{f"ring_increase_{r}": ring_increase(s.coords, loss, r * float(s.coords[0][-1]))
           for r in (0.25, 0.5, 1.0)},
        "convexity_median_ratio": float(np.median(finite)) if finite.size else math.nan,
        "convexity_max_ratio": float(finite.max()) if finite.size else math.nan,
        "convexity_centre_ratio": float(ratio[centre]),
        "convexity_fraction_nonconvex": float((finite > NONCONVEX_RATIO).mean())
        if finite.size else math.nan,
        "median_effective_beta": median(fig4["effective_beta"]),
        "median_lambda_max": median(lam), "final_lambda_max": lam[-1] if lam else math.nan,
    }


# ------------------------------------------------------------------------- summary, figures


def _ratio(x: float, y: float) -> float:
    return x / y if y and math.isfinite(x) and math.isfinite(y) else math.nan


def _pairs(models: Mapping[str, Mapping[str, Any]]) -> dict[int, tuple[str, str]]:
    """depth → (label with shortcuts, label without) for the depths that have both."""
    return {m["depth"]: (f"resnet{m['depth']}", label) for label, m in models.items()
            if not m["shortcut"] and f"resnet{m['depth']}" in models}


def _comparison(models: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The text of ``summary["comparison"]`` and the per-depth numbers behind it."""
    table, parts = {}, []
    for depth, (short, noshort) in sorted(_pairs(models).items()):
        a, b = models[short], models[noshort]
        row = {f"noshort_over_short_{k}": _ratio(b[k], a[k])
               for k in ("ring_increase_0.5", "convexity_median_ratio", "median_effective_beta",
                         "median_lambda_max")}
        row.update(short_train_loss=a["train_loss"], noshort_train_loss=b["train_loss"])
        table[depth] = row
        parts.append(
            f"ResNet-{depth}: final train loss {a['train_loss']:.3g} with shortcuts, "
            f"{b['train_loss']:.3g} without; loss rise on the radius-0.5 circle of the slice "
            f"{a['ring_increase_0.5']:.3g} vs {b['ring_increase_0.5']:.3g}; median |λ_min/λ_max| "
            f"over the map {a['convexity_median_ratio']:.3g} vs {b['convexity_median_ratio']:.3g} "
            f"(points above {NONCONVEX_RATIO}: {a['convexity_fraction_nonconvex']:.0%} vs "
            f"{b['convexity_fraction_nonconvex']:.0%}); median λ_max over training "
            f"{a['median_lambda_max']:.3g} vs {b['median_lambda_max']:.3g}.")
    depths = sorted(table)
    if len(depths) >= 2:
        ring = [table[d]["noshort_over_short_ring_increase_0.5"] for d in depths]
        conv = [table[d]["noshort_over_short_convexity_median_ratio"] for d in depths]
        grows = lambda v: all(math.isfinite(x) for x in v) and v[-1] > v[0]  # noqa: E731
        parts.append(
            f"Li et al.'s claim, that removing shortcuts hurts more as depth grows: the noshort/"
            f"short ratio of the ring increase goes {' → '.join(f'{v:.3g}' for v in ring)} and of "
            f"the median convexity ratio {' → '.join(f'{v:.3g}' for v in conv)} from depth "
            f"{depths[0]} to {depths[-1]}, so it {'holds' if grows(ring) else 'does not hold'} "
            f"for sharpness and {'holds' if grows(conv) else 'does not hold'} for non-convexity "
            "here.")
    parts.append("Caveats: one seed, one random plane, one minibatch (the convexity map on a "
                 "subset of it), few Lanczos steps (the smallest Ritz value over-estimates λ_min, "
                 "so |λ_min/λ_max| is a lower bound), short training of narrow nets on MNIST-5k in "
                 "the quick preset: Li et al.'s chaotic surfaces appear at depth 56+ on CIFAR-10.")
    return " ".join(parts), table


def _markdown(models: Mapping[str, Mapping[str, Any]], title: str) -> str:
    cols = ("train_loss", "test_accuracy", "ring_increase_0.5", "ring_increase_1.0",
            "convexity_median_ratio", "convexity_max_ratio", "convexity_fraction_nonconvex",
            "median_effective_beta", "median_lambda_max")
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, m in models.items():
        lines.append(f"| {label} | " + " | ".join(f"{m[c]:.4g}" for c in cols) + " |")
    return (f"# Skip connections (Li et al. 2018)\n\n{title}.\n\nRing increase: mean loss on the "
            "circle of that radius in the filter-normalized slice minus the loss at the centre; "
            "convexity: |λ_min/λ_max| of the Hessian over the coarse grid of the same plane "
            f"(fraction: points above {NONCONVEX_RATIO}); medians over the probed steps.\n\n"
            + "\n".join(lines) + "\n")


def _plot(path: Path, measured: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Per depth (rows): the slice with and without shortcuts, then both convexity maps."""
    from landscape.figures import plot_skip_overview

    pairs = [labels for _, labels in
             sorted(_pairs({k: v["entry"] for k, v in measured.items()}).items())]
    slices = {label: (*m["surface"].coords, m["surface"].loss) for label, m in measured.items()}
    plot_skip_overview(pairs, slices, {label: m["convexity"] for label, m in measured.items()},
                       title=title, path=path)


def _save(out: Path, measured: Mapping[str, Mapping[str, Any]], mode: str) -> None:
    from landscape.probes import save_surface

    for label, m in measured.items():
        save_surface(out / "surfaces" / f"{label}_random2d", m["surface"], norm="filter",
                     ignore_1d=True, mode=mode, model=label)
        np.savez(out / "surfaces" / f"{label}_convexity.npz", **m["convexity"])


def skip_finalize(out: Path, runs: dict[str, dict[str, Any]], *, settings: Mapping[str, Any],
                  title: str) -> dict[str, Any]:
    """Figure-4 summary per run (:func:`~landscape.experiments.fig4.fig4_finalize`, figure
    ``skip_fig4``), then each run's slice and convexity map, ``skip.png``, ``skip_table.md``."""
    from landscape.experiments.fig4 import fig4_finalize

    summary = fig4_finalize(out, runs, title=title, figure_name="skip_fig4")
    measured = {label: _measure(out / label, settings) for label in runs}
    for label, m in measured.items():
        m["entry"] = summary["models"][label]
        m["entry"].update(_entry(m["entry"], m, label))
    _save(out, measured, settings["mode"])
    _plot(out / "skip", measured, title)
    models = summary["models"]
    (out / "skip_table.md").write_text(_markdown(models, title), encoding="utf-8")
    summary["comparison"], summary["table"] = _comparison(models)
    summary["settings"] = dict(settings)
    return summary
