"""Santurkar et al. (2018) Figure 3: internal covariate shift through gradients (Definition 2.1).

The measurement is the pure probe :func:`landscape.probes.internal_covariate_shift`;
:func:`ics_measurement` schedules it on a run, :func:`fig3_experiment` compares BN and vanilla.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.experiments.fig4 import fig4_summary
from landscape.probes import block_masks, internal_covariate_shift
from landscape.experiments.base import Experiment, describe, layered_preset, median
from landscape.experiments.dln import DLN_PRESETS

__all__ = ["FIG3_LAYERS", "FIG3_QUICK", "clip_blocks", "fig3_experiment", "ics_measurement"]



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
    from landscape.engine.hooks import Measurement, Schedule

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

    return Measurement(name, fn, Schedule(every=int(every)))


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
    from landscape.figures import plot_ics

    models: dict[str, Any] = {}
    for label, run in runs.items():
        layers = _ics_series(run.get("ics", []))
        for s in layers.values():
            rel = np.divide(s["l2"], s["grad_norm"], out=np.full(len(s["l2"]), np.nan),
                            where=np.asarray(s["grad_norm"]) > 0)
            s["relative_l2"] = rel.tolist()
            s["median_l2"] = median(s["l2"])
            s["median_cosine"] = median(s["cosine"])
            s["median_relative_l2"] = median(rel)
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

    Writes ``fig3.png/.pdf`` (:func:`landscape.figures.plot_ics`). Quick preset: about 1.5–3 min
    (100–175 s) on the shared 2-core CPU.
    """
    is_dln = "dln" in (overrides.get("model"), overrides.get("dataset"))
    base = layered_preset(preset, DLN_PRESETS if is_dln else FIG3_QUICK, overrides)
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
    title = (f"ICS (Def. 2.1): {describe(base)}"
             if len(rates) == 1 else f"ICS (Def. 2.1): {base.model} on {base.dataset}")
    measure = ics_measurement(chosen, every=every)
    return Experiment(
        "fig3", runs, lambda out, r: _fig3_finalize(out, r, title=title, groups=groups),
        measurements=lambda label, cfg: (measure,),
        options={"preset": preset, **overrides, "layers": list(chosen), "ics_every": every,
                 "lrs": list(rates)})

