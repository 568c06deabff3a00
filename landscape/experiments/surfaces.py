"""Loss surfaces at the end of training, BatchNorm vs vanilla: ``landscape reproduce surfaces``.

Trains the Figure-4 pair (same VGG, same seeds and data order, with and without BatchNorm)
without step probes, keeping ~10 checkpoints along the trajectory, then for each model measures
on one training minibatch (the batch of step ``steps``, the same for both models) in the
batch-statistics loss (``mode``, recorded):

1. a filter-normalized 2-D slice L(θ + a d₁ + b d₂), (a, b) ∈ [−span, span]², ``grid``² points
   (Li et al. 2018, Sec. 4; 21×21 quick, 51×51 paper);
2. the interpolation L((1 − α)θ₀ + αθ_final), α ∈ [−0.5, 1.5] (Goodfellow et al. 2015;
   41 points quick, 401 paper), θ₀ the initialisation rebuilt from the config;
3. the trajectory θ₀, θ_{t₁}, …, θ_final projected on its top-2 PCA plane
   (:func:`landscape.probes.pca_directions` of θ_t − θ_final) and the loss on that plane
   (Li et al. 2018, Sec. 7, Fig. 9).

``summary.json → models → label``: ``train_loss`` (final, :func:`final_train_loss`),
``surface_min/max``, ``ring_increase_0.25/0.5/1.0`` (mean L on the circle of that radius minus L at
the centre: a sharpness-like number, :func:`landscape.analyze.ring_increase`),
``interpolation_monotone`` and ``interpolation_max_rise``, ``pca_explained_variance``; and
``summary["comparison"]``, a text written from those numbers.

Example::

    from landscape.experiments.surfaces import surfaces_experiment
    from landscape.reproduce import run_experiment
    summary = run_experiment(surfaces_experiment("quick"), "runs/surfaces")
    print(summary["comparison"])
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from landscape.experiments.base import (PRESETS, Experiment, clean_options, final_train_loss,
                                        preset_config)

__all__ = ["SURFACE_SETTINGS", "surfaces_experiment", "surfaces_finalize"]

#: Grid sizes per preset: Li et al.'s 51×51 and 401-point lines for "paper", smaller for "quick".
SURFACE_SETTINGS = {"quick": {"grid": 21, "interp_points": 41},
                    "paper": {"grid": 51, "interp_points": 401}}
#: Relative tolerance for "monotone": a rise of L along the line smaller than this × L(θ₀) is
#: float32 rounding, not a bump.
MONOTONE_RTOL = 1e-4


def surfaces_experiment(preset: str = "quick", *, grid: int | None = None, span: float = 1.0,
                        interp_points: int | None = None, mode: str = "batch_stats",
                        **overrides: Any) -> Experiment:
    """BN vs vanilla on the Figure-4 preset, ~10 checkpoints kept, surfaces in ``finalize``.

    ``overrides`` go to :func:`preset_config` (e.g. ``steps=20, width=0.125``); ``probe_every``
    defaults to 0 and ``checkpoint_every`` to steps // 10 (all checkpoints kept).
    """
    settings = {**SURFACE_SETTINGS.get(preset, SURFACE_SETTINGS["quick"]),
                **clean_options({"grid": grid, "interp_points": interp_points}),
                "span": float(span), "mode": mode}
    steps = overrides.get("steps") or PRESETS.get(preset, PRESETS["quick"])["steps"]
    every = overrides.get("checkpoint_every") or max(1, steps // 10)
    base = preset_config(preset, **{"probe_every": 0, "checkpoint_every": every,
                                    "keep_checkpoints": steps // every + 2,
                                    **clean_options(overrides)})
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}
    title = f"{base.model} (width {base.width:g}) on {base.dataset}, {base.steps} steps, {mode}"
    return Experiment("surfaces", runs,
                      lambda out, r: surfaces_finalize(out, r, settings=settings, title=title),
                      options={"preset": preset, **overrides, **settings})


# ----------------------------------------------------------------------------- measurement


def _trajectory(run_dir: Path, steps: list[int]) -> list[Any]:
    from landscape import bridge
    from landscape.train import restore_model

    return [bridge.split(restore_model(run_dir, step=s))[1] for s in steps]


def _measure(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The three surfaces of one run (arrays) around its last checkpoint."""
    import jax
    import jax.numpy as jnp

    from landscape import bridge, probes
    from landscape.analyze import (checkpoint_steps, initial_params, interpolation_1d,
                                   surface_2d)
    from landscape.config import TrainConfig
    from landscape.data import batch_at
    from landscape.engine import load_run_data
    from landscape.train import restore_model

    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    steps = checkpoint_steps(run_dir)
    train_data, _, input_shape, num_classes = load_run_data(config)
    model = restore_model(run_dir, step=steps[-1])
    _, params, state = bridge.split(model)
    x, y = batch_at(train_data, config.steps, config.batch_size, seed=config.seed)
    batch = bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)
    loss_fn = bridge.make_loss_fn(model, mode=settings["mode"])
    init, _ = initial_params(run_dir, config, input_shape, num_classes, steps)
    measured = {
        "loss": float(loss_fn(params, batch)), "final_step": steps[-1], "checkpoints": steps,
        "surface": surface_2d(loss_fn, params, batch, key=jax.random.key(config.seed),
                              grid=settings["grid"], span=settings["span"]),
        "interpolation": interpolation_1d(loss_fn, init, params, batch,
                                          num=settings["interp_points"]),
        "pca": None, "pca_surface": None,
    }
    before = sorted(set(steps[:-1]) | {0})  # θ₀ and the checkpoints before θ_final
    if len(before) < 2:  # with θ_final they span one direction: no PCA plane
        measured["pca_missing"] = f"θ₀ and θ_final alone\n(checkpoints {steps})"
        return measured
    pca = probes.pca_directions([init] + _trajectory(run_dir, steps), params, num=2)
    lo, hi = pca.projected.min(axis=0), pca.projected.max(axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-12)
    plane = tuple(np.linspace(lo[k] - pad[k], hi[k] + pad[k], settings["grid"]) for k in range(2))
    measured["pca"] = pca
    measured["pca_surface"] = probes.loss_surface(loss_fn, params, batch, pca.directions, plane)
    return measured


def _entry(run: dict[str, Any], m: dict[str, Any], mode: str) -> dict[str, Any]:
    """One model's ``summary.json`` entry from its measurements."""
    from landscape.analyze import interpolation_max_rise, ring_increase

    s, line = m["surface"], m["interpolation"]
    loss = np.asarray(s.loss, np.float64)
    alpha, along = np.asarray(line.coords[0], np.float64), np.asarray(line.loss, np.float64)
    rise = interpolation_max_rise(alpha, along)
    at = lambda a: float(np.interp(a, alpha, along))  # noqa: E731
    return {
        "train_loss": final_train_loss(run), "mode": mode, "final_step": m["final_step"],
        "checkpoint_steps": m["checkpoints"], "loss_at_centre": m["loss"],
        "surface_min": float(np.nanmin(loss)), "surface_max": float(np.nanmax(loss)),
        "ring_increase_0.25": ring_increase(s.coords, loss, 0.25),
        "ring_increase_0.5": ring_increase(s.coords, loss, 0.5),
        "ring_increase_1.0": ring_increase(s.coords, loss, 1.0),
        "interpolation_loss_init": at(0.0), "interpolation_loss_final": at(1.0),
        "interpolation_max_rise": rise,
        "interpolation_monotone": bool(rise <= MONOTONE_RTOL * abs(at(0.0))),
        "pca_explained_variance": ([] if m["pca"] is None else
                                   [float(v) for v in m["pca"].explained_variance_ratio]),
    }


def _comparison(models: dict[str, dict[str, Any]], batch_size: int) -> str:
    """An honest sentence-level comparison written from the numbers (BN vs vanilla)."""
    if not {"batchnorm", "vanilla"} <= models.keys():
        return "needs both a 'batchnorm' and a 'vanilla' model"
    bn, va = models["batchnorm"], models["vanilla"]
    r_bn, r_va = bn["ring_increase_0.5"], va["ring_increase_0.5"]
    flatter = "BN" if r_bn < r_va else "vanilla"
    ratio = max(r_bn, r_va) / min(r_bn, r_va) if min(r_bn, r_va) > 0 else math.nan

    def mono(e):
        return ("monotone" if e["interpolation_monotone"]
                else f"not monotone (largest rise {e['interpolation_max_rise']:.3g})")

    def explained(e):
        ratios = e["pca_explained_variance"]
        return f"{sum(ratios):.0%}" if ratios else "n/a"

    return (
        f"Final train loss: BN {bn['train_loss']:.3g}, vanilla {va['train_loss']:.3g}. "
        f"Filter-normalized random 2-D slice at the end of training ({bn['mode']} loss, one "
        f"training minibatch of {batch_size}): the mean loss increase on the radius-0.5 circle is "
        f"{r_bn:.3g} with BN and {r_va:.3g} without, so {flatter}'s neighbourhood is flatter in "
        f"this measure (ratio {ratio:.2g}); on the radius-1 circle the increase is "
        f"{bn['ring_increase_1.0']:.3g} (BN) and {va['ring_increase_1.0']:.3g} (vanilla); the slice spans [{bn['surface_min']:.3g}, "
        f"{bn['surface_max']:.3g}] with BN and [{va['surface_min']:.3g}, {va['surface_max']:.3g}] "
        f"without. Interpolation θ₀ → θ_final: BN {mono(bn)}, vanilla {mono(va)}. The top-2 PCA "
        f"directions explain {explained(bn)} (BN) and "
        f"{explained(va)} (vanilla) of the trajectory's variance. "
        "Caveats: one random plane, one minibatch, one seed, a short run; filter normalization "
        "makes the two nets' directions comparable (BN's filters are scale-invariant) but their "
        "losses at the centre differ, so compare increases, not levels.")


# -------------------------------------------------------------------------------- figures


def _overview(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`landscape.figures.plot_surfaces_overview`'s numbers from the measurements."""
    rows = {}
    for label, m in measured.items():
        s, line = m["surface"], m["interpolation"]
        rows[label] = {"slice": (*s.coords, s.loss), "line": (line.coords[0], line.loss),
                       "pca": None, "pca_missing": m.get("pca_missing")}
        if m["pca"] is not None:
            ps = m["pca_surface"]
            rows[label]["pca"] = (*ps.coords, ps.loss, m["pca"].projected,
                                  m["pca"].explained_variance_ratio)
    return rows


def _save(out: Path, measured: dict[str, dict[str, Any]], mode: str, title: str) -> None:
    """Arrays under ``out/surfaces/`` and the separate figures next to ``surfaces.png``."""
    from landscape.figures import plot_surface_1d, plot_surface_contour, plot_surfaces_overview
    from landscape.probes import save_surface

    for label, m in measured.items():
        meta = {"mode": mode, "model": label, "step": m["final_step"]}
        save_surface(out / "surfaces" / f"{label}_random2d", m["surface"], norm="filter",
                     ignore_1d=True, **meta)
        save_surface(out / "surfaces" / f"{label}_interpolation", m["interpolation"], **meta)
        plot_surface_contour(*m["surface"].coords, m["surface"].loss, log=True,
                             path=out / f"surface_{label}", title=f"{label}: random 2-D slice")
        if m["pca"] is None:
            continue
        save_surface(out / "surfaces" / f"{label}_pca", m["pca_surface"],
                     trajectory=m["pca"].projected,
                     explained_variance_ratio=m["pca"].explained_variance_ratio, **meta)
        plot_surface_contour(*m["pca_surface"].coords, m["pca_surface"].loss, log=True,
                             trajectory=m["pca"].projected, xlabel="PC 1", ylabel="PC 2",
                             path=out / f"pca_{label}", title=f"{label}: trajectory, PCA plane")
    plot_surface_1d({label: (m["interpolation"].coords[0], m["interpolation"].loss)
                     for label, m in measured.items()}, log_y=True, marks=(0, 1),
                    xlabel="α  (θ₀ → θ_final)", path=out / "interpolation",
                    title=f"interpolation ({mode})")
    plot_surfaces_overview(_overview(measured), title=title, path=out / "surfaces")


def surfaces_finalize(out: Path, runs: dict[str, dict[str, Any]], *, settings: dict[str, Any],
                      title: str) -> dict[str, Any]:
    """Measure every run's surfaces, write the arrays and figures, return ``summary.json``."""
    measured = {label: _measure(out / label, settings) for label in runs}
    missing = [label for label, m in measured.items() if m["pca"] is None]
    if missing:
        warnings.warn(f"surfaces: no PCA panel for {', '.join(missing)}: the trajectory is θ₀ and "
                      "θ_final alone; its PCA plane needs a checkpoint between them (checkpoint "
                      "more often)", RuntimeWarning, stacklevel=2)
    models = {label: _entry(runs[label], m, settings["mode"]) for label, m in measured.items()}
    _save(out, measured, settings["mode"], title)
    batch_size = next(iter(runs.values()))["config"]["batch_size"]
    return {"models": models, "comparison": _comparison(models, batch_size),
            "settings": settings, "config": {label: run["config"] for label, run in runs.items()}}
