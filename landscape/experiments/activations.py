"""Activation figures: Santurkar et al. (2018) Fig. 1 and 2, Ioffe & Szegedy (2015) Fig. 1.

Three experiments (listed in :data:`landscape.experiments.EXPERIMENTS`):

- ``fig1`` (:func:`fig1_experiment`) — S Fig. 1: the same VGG with BatchNorm and without, at
  learning rates 0.1 and 0.5 (4 runs): training curves and the distribution of one layer's
  activations over training.
- ``fig2`` (:func:`fig2_experiment`) — S Fig. 2: standard, BatchNorm and "noisy" BatchNorm
  (Algorithm 1): accuracy curves and activation distributions.
- ``ioffe-fig1`` (:func:`ioffe_fig1_experiment`) — I Fig. 1: a 3 × 100 sigmoid MLP on MNIST with
  and without BN: test accuracy and the 15th/50th/85th percentiles of the input to one sigmoid of
  the last hidden layer.

The activations come from :func:`activation_measurement`, a :class:`~landscape.train.Measurement`
that runs a *copy* of the model (:func:`landscape.bridge.merge`) in train mode on step t's own
minibatch (batch statistics, and the step's noise key for noisy BN) with ``collect={}``, and keeps
the chosen block's normalization output — the input to the nonlinearity. It records that output's
15/50/85th percentiles and, at a few chosen steps, a fixed-size random subsample of its values. The
copy (and the running statistics it advances) is thrown away: running statistics are untouched.

Output folder (see :func:`landscape.reproduce.run_experiment`): one sub-folder per run, with an
``activations.jsonl`` next to ``train.jsonl``; ``summary.json``; and the figures
``NAME.png``/``.pdf`` (the composite: training curves above, activations below) plus its two
parts, ``NAME_training`` and ``NAME_activations``, as separate vector figures.

Example:
    >>> from landscape.reproduce import run_experiment
    >>> summary = run_experiment(fig1_experiment("quick"), "runs/fig1")
    >>> summary["models"]["batchnorm lr=0.1"]["test_accuracy"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from landscape import bridge
from landscape.config import ConfigError, TrainConfig
from landscape.engine.hooks import Measurement, Schedule, StepContext
from landscape.experiments.base import Experiment, preset_config, tail_mean
from landscape.probes import activation_statistics

__all__ = [
    "ACTIVATIONS_MEASUREMENT",
    "activation_measurement",
    "activation_series",
    "block_output",
    "fig1_experiment",
    "fig2_experiment",
    "ioffe_fig1_experiment",
    "run_entry",
]

#: Name of the measurement (``activations.jsonl`` in each run folder).
ACTIVATIONS_MEASUREMENT = "activations"

# ------------------------------------------------------------------------------- measurement


_statistics = jax.jit(activation_statistics, static_argnames="unit")


def _resolve_block(model: Any, layer: int) -> str:
    names = tuple(model.block_names())
    if not names:
        raise ConfigError("the model has no blocks to measure")
    if layer < 0:
        return names[max(layer, -len(names))]
    return names[min(layer, len(names) - 1)]


def block_output(model: Any, params: Any, state: Any, x: Any, rng: Any = None, *,
                 layer: int = 2) -> tuple[str, np.ndarray]:
    """``(block name, activation)``: block ``layer``'s normalization output in train mode.

    The activation is the input to the block's nonlinearity (``collect[name]``), shape ``x``'s batch
    followed by the block's feature shape (``(B, H, W, C)`` for a conv block, ``(B, C)`` for a dense
    one), computed on a throw-away copy of ``model`` with ``params``/``state`` and batch statistics;
    ``rng`` is the noise key of a noisy normalization. ``layer`` counts blocks from 0 and is clipped
    to the model's depth (negative: from the end).

    Example:
        >>> name, act = block_output(model, params, state, x, layer=2)   # "block2", (B, …, C)
    """
    block = _resolve_block(model, int(layer))
    graphdef = bridge.split(model)[0]
    out = bridge.make_block_output_fn(graphdef, block)(params, state, x, rng)
    return block, np.asarray(out)


def activation_measurement(*, layer: int = 2, unit: int | None = None, num_samples: int = 2000,
                           every: int = 10, sample_at: Sequence[int] = (), seed: int = 0,
                           name: str = ACTIVATIONS_MEASUREMENT) -> Measurement:
    """A :class:`~landscape.train.Measurement` of one block's activations (nonlinearity input).

    At a due step t it runs :func:`block_output` on θ_t, the running statistics and step t's
    minibatch (``ctx.batch``, including its noise key) and records::

        {"block": "block2", "unit": unit, "count": n, "p15": …, "p50": …, "p85": …,
         "mean": …, "std": …, "samples": [...]}   # "samples" only at steps in sample_at

    The values are all of the block's outputs over the batch (and spatial positions), or only
    feature ``unit`` (the last axis) when given — Ioffe & Szegedy's "one typical sigmoid".
    Percentiles use ``numpy.percentile`` (linear interpolation) over all n values; ``samples`` is a
    uniform random subsample without replacement of ``min(num_samples, n)`` of them, drawn with
    ``numpy.random.default_rng([seed, t])`` and rounded to 5 significant digits.

    Args:
        layer: block index (0 = first), clipped to the depth (Santurkar's "layer #3" is 2).
        unit: one feature index, or ``None`` for every feature.
        num_samples: size of the stored subsample.
        every: measure every ``every`` steps (also at the steps in ``sample_at``).
        sample_at: steps whose record also stores ``samples`` (for the histograms).
        seed: subsample seed.
        name: the measurement (record file) name.

    Returns:
        The measurement; it never changes the training state (the model copy is discarded).

    Example:
        >>> m = activation_measurement(layer=2, every=10, sample_at=(0, 100))
        >>> train(cfg, "runs/x", measurements=[m])   # runs/x/activations.jsonl
    """
    if int(num_samples) < 1:
        raise ConfigError(f"num_samples={num_samples!r} must be >= 1")
    if int(every) < 0:
        raise ConfigError(f"every={every!r} must be >= 0")
    if unit is not None and int(unit) < 0:
        raise ConfigError(f"unit={unit!r} must be >= 0 (or None for every unit)")
    sample_steps = frozenset(int(s) for s in sample_at)
    graphdefs: dict[int, Any] = {}

    def measure(ctx: StepContext) -> dict[str, Any]:
        key = id(ctx.model)
        if key not in graphdefs:
            graphdefs.clear()
            graphdefs[key] = (bridge.split(ctx.model)[0], _resolve_block(ctx.model, int(layer)))
        graphdef, block = graphdefs[key]
        act = bridge.make_block_output_fn(graphdef, block)(
            ctx.params, ctx.state, ctx.batch["x"], ctx.batch.get("rng"))
        if unit is not None and unit >= act.shape[-1]:
            raise ConfigError(f"unit={unit} is out of range: {block} has {act.shape[-1]} units")
        stats = _statistics(act, unit=unit)  # on the device: only five numbers come back
        count = act.size // (act.shape[-1] if unit is not None else 1)
        row: dict[str, Any] = {"block": block, "unit": unit, "count": int(count),
                               **{k: float(v) for k, v in stats._asdict().items()}}
        if ctx.step in sample_steps:
            values = np.asarray(act if unit is None else act[..., unit]).reshape(-1)
            rng = np.random.default_rng([int(seed), int(ctx.step)])
            k = min(int(num_samples), values.size)
            picked = values[np.sort(rng.choice(values.size, size=k, replace=False))]
            row["samples"] = [float(f"{v:.5g}") for v in picked.astype(np.float64)]
        return row

    return Measurement(name, measure, Schedule(int(every), tuple(sorted(sample_steps))))


# ------------------------------------------------------------------------------ run summaries


def activation_series(run: Mapping[str, Any],
                      name: str = ACTIVATIONS_MEASUREMENT) -> dict[str, Any]:
    """The activation records of one :func:`~landscape.train.read_run` dict as arrays.

    Returns ``{"block", "unit", "steps", "p15", "p50", "p85", "mean", "std", "sample_steps",
    "samples"}`` (``samples``: one list per entry of ``sample_steps``).
    """
    rows = run.get(name, [])
    out: dict[str, Any] = {"block": rows[0].get("block") if rows else None,
                           "unit": rows[0].get("unit") if rows else None}
    out["steps"] = [int(r["step"]) for r in rows]
    for key in ("p15", "p50", "p85", "mean", "std"):
        out[key] = [float(r[key]) for r in rows]
    with_samples = [r for r in rows if "samples" in r]
    out["sample_steps"] = [int(r["step"]) for r in with_samples]
    out["samples"] = [r["samples"] for r in with_samples]
    if isinstance(out["unit"], float) and math.isnan(out["unit"]):
        out["unit"] = None  # JSON null reads back as nan
    return out


def _thin(arrays: dict[str, Any], keys: Sequence[str], max_points: float) -> None:
    """Keep every k-th entry (and the last) of ``arrays[keys]``: at most ~``max_points`` remain."""
    n = len(arrays[keys[0]])
    if n <= max_points:
        return
    stride = math.ceil(n / max_points)
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    for k in keys:
        arrays[k] = [arrays[k][i] for i in idx]


def run_entry(run: Mapping[str, Any], *, max_points: float = 2000) -> dict[str, Any]:
    """One model's ``summary.json`` entry from its :func:`~landscape.train.read_run` dict.

    Final ``train_loss`` and ``train_accuracy`` (means over the last 10 % of steps; NaN once
    diverged), ``test_accuracy`` (last evaluation), ``diverged_at_step``, ``curves`` (``steps``,
    ``train_loss``, ``train_accuracy``, ``eval_steps``, ``test_accuracy``) and ``activations``
    (:func:`activation_series` without the samples). Curves longer than ``max_points`` are thinned
    to every k-th point (the last kept) so that a 50 000-step run's summary stays small; the
    figures are drawn from the full records.
    """
    train_rows, eval_rows = run.get("train", []), run.get("eval", [])
    curves = {"steps": [int(r["step"]) for r in train_rows],
              "train_loss": [float(r["loss"]) for r in train_rows],
              "train_accuracy": [float(r["accuracy"]) for r in train_rows],
              "eval_steps": [int(r["step"]) for r in eval_rows],
              "test_accuracy": [float(r["test_accuracy"]) for r in eval_rows]}
    acts = activation_series(run)
    acts.pop("samples")
    entry = {"train_loss": tail_mean(curves["train_loss"]),
             "train_accuracy": tail_mean(curves["train_accuracy"]),
             "test_accuracy": curves["test_accuracy"][-1] if eval_rows else math.nan,
             "diverged_at_step": run.get("run", {}).get("diverged_at_step")}
    _thin(curves, ("steps", "train_loss", "train_accuracy"), max_points)
    _thin(curves, ("eval_steps", "test_accuracy"), max_points)
    _thin(acts, ("steps", "p15", "p50", "p85", "mean", "std"), max_points)
    return {**entry, "curves": curves, "activations": acts}


# ------------------------------------------------------------------------------------ figures


def _hist_series(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for label, run in runs.items():
        s = activation_series(run)
        out[label] = {"steps": s["sample_steps"], "values": s["samples"]}
    return out


def _layer_words(entries: Mapping[str, Mapping[str, Any]]) -> str:
    """"block2 (layer #3)", with ", unit 0" when one unit was measured."""
    acts = [e["activations"] for e in entries.values() if e["activations"]["block"]]
    blocks = {a["block"] for a in acts}
    if len(blocks) != 1:
        return "one layer"
    block = blocks.pop()
    words = f"{block} (layer #{int(block.removeprefix('block')) + 1})"
    units = {a["unit"] for a in acts}
    if len(units) == 1 and (unit := units.pop()) is not None:
        words += f", unit {int(unit)}"
    return words


def _finalize_distributions(out: Path, runs: Mapping[str, Mapping[str, Any]], *, name: str,
                            title: str, smooth: int) -> dict[str, Any]:
    """Summary and figures of ``fig1``/``fig2``: training curves above, ridge histograms below."""
    from landscape.figures import (plot_activation_histograms, plot_training, save_figure,
                                   stack_figures)

    models = {label: run_entry(run) for label, run in runs.items()}
    full = {label: run_entry(run, max_points=math.inf) for label, run in runs.items()}
    diverged = {k: v["diverged_at_step"] for k, v in models.items()}
    training = plot_training({k: v["curves"] for k, v in full.items()}, title=title,
                             smooth=smooth, diverged=diverged)
    layer = _layer_words(models)
    hist = plot_activation_histograms(
        _hist_series(runs),
        title=f"distribution over training of the activations of {layer} (input to the "
              "nonlinearity; train mode, the step's minibatch)")
    written = save_figure(training, out / f"{name}_training")
    written += save_figure(hist, out / f"{name}_activations")
    written += stack_figures([training, hist], out / name)
    return {"models": models, "figures": [p.name for p in written],
            "config": {label: run["config"] for label, run in runs.items()}}


# ------------------------------------------------------------------------------------ builders

_SANTURKAR_DEFAULTS: dict[str, dict[str, Any]] = {
    # The quick preset's VGG (vgg5) narrowed to width 0.125, batch 64, 400 steps, evaluation every
    # 20: fig1's 4 runs took ~1¾ min, fig2's 3 runs ~1½ min on a busy 2-core CPU. (With vgg11 the
    # vanilla net at lr 0.1 sits on a plateau for ~250 steps and at lr 0.5 never leaves it.)
    "quick": dict(width=0.125, batch_size=64, steps=400, eval_every=20, checkpoint_every=100,
                  probe_every=0),
    # App. A.1 (preset "paper": CIFAR-10, VGG, lr 0.1, batch 128, 15 000 steps); no Fig.-4 probes.
    "paper": dict(probe_every=0, eval_every=250, checkpoint_every=1000),
}

_IOFFE_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="mnist5k", model="mlp", width=1.0, batch_size=60, lr=0.1, steps=2000,
                  eval_every=50, checkpoint_every=500, probe_every=0),
    "paper": dict(dataset="mnist", model="mlp", width=1.0, batch_size=60, lr=0.1, steps=50000,
                  eval_every=500, checkpoint_every=5000, probe_every=0),
}


def _base(preset: str, defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]
          ) -> TrainConfig:
    """``preset_config`` with the figure's defaults in between (user overrides win)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return preset_config(preset, **{**defaults.get(preset, {}), **given})


def _measure_every(steps: int, every: int | None, points: int) -> int:
    if every is not None:
        if int(every) < 1:
            raise ConfigError(f"measure_every={every!r} must be >= 1")
        return int(every)
    return max(1, steps // points)


def _sample_steps(steps: int, num: int) -> tuple[int, ...]:
    """``num`` evenly spaced steps from 0 to the last step (both included)."""
    if num < 1:
        raise ConfigError(f"num_ridges={num!r} must be >= 1")
    return tuple(sorted({int(round(s)) for s in np.linspace(0, steps - 1, num)}))


def _default_smooth(steps: int) -> int:
    return max(1, steps // 40)


def _distribution_experiment(name: str, runs: dict[str, TrainConfig], base: TrainConfig,
                             headline: str, *, preset: str, layer: int, unit: int | None,
                             num_samples: int, num_ridges: int, measure_every: int | None,
                             smooth: int | None, extra_options: Mapping[str, Any],
                             overrides: Mapping[str, Any]) -> Experiment:
    """The part fig1 and fig2 share: the activation measurement on every run, the smoothing of the
    train curves, and the training-curves + activation-ridges figure."""
    every = _measure_every(base.steps, measure_every, 30)
    sample_at = _sample_steps(base.steps, num_ridges)
    sm = _default_smooth(base.steps) if smooth is None else int(smooth)
    title = headline + (f" (train curves: moving average over {sm} steps)" if sm > 1 else "")

    def measurements(label: str, cfg: TrainConfig) -> list[Measurement]:
        return [activation_measurement(layer=layer, unit=unit, num_samples=num_samples,
                                       every=every, sample_at=sample_at, seed=cfg.seed)]

    return Experiment(
        name, runs,
        lambda out, r: _finalize_distributions(out, r, name=name, title=title, smooth=sm),
        measurements=measurements,
        options={"preset": preset, "layer": layer, "unit": unit, "num_samples": num_samples,
                 "num_ridges": num_ridges, "measure_every": every, "smooth": sm,
                 **extra_options, **overrides})


def fig1_experiment(preset: str = "quick", *, layer: int = 2, unit: int | None = None,
                    lrs: Sequence[float] | None = None, num_samples: int = 2000,
                    num_ridges: int = 6, measure_every: int | None = None,
                    smooth: int | None = None, **overrides: Any) -> Experiment:
    """Santurkar et al. (2018) Figure 1: BatchNorm vs vanilla VGG at two learning rates.

    The paper's figure: (a) training and (b) test accuracy of a VGG on CIFAR-10 with and without
    BatchNorm at lr 0.1 and 0.5 — BN trains faster and tolerates the larger rate — and (c) the
    distribution of a layer's activations (#3, #11) over training, which looks about as stable
    without BN as with it: the speed-up is not explained by steadier layer inputs.

    Runs: ``{"batchnorm lr=a", "vanilla lr=a"}`` for every a in ``lrs`` (default: the base lr and
    5× it, i.e. 0.1 and 0.5), identical seeds and data order otherwise. Activations: block
    ``layer`` (default 2 = the paper's layer #3, clipped to the depth), the normalization output
    (input to the ReLU) in train mode on the step's minibatch; every value of the layer (all
    channels, positions and examples; ``unit=c`` keeps channel c only) — the paper "sampled
    activations of a given layer" without saying more — subsampled to ``num_samples`` values at
    ``num_ridges`` evenly spaced steps and drawn as ridge histograms (one panel per run).
    Percentiles are recorded every ``measure_every`` steps (default: about 30 points). Train
    curves are smoothed over ``smooth`` steps (default steps/40); test accuracy is raw.

    Presets: "quick" — the quick preset's VGG (vgg5: 4 conv layers) at width 0.125 on the offline
    MNIST subset, batch 64, 400 steps, evaluation every 20 steps (~1¾ min on a busy 2-core CPU);
    "paper" — App. A.1 (CIFAR-10, the paper preset's full-width VGG-16 — 13 conv layers, as the
    paper's figures cite layer #13 — batch 128, 15 000 steps; ``layer=10`` for its layer #11). ``overrides`` are
    :class:`TrainConfig` fields and win.

    Example:
        >>> run_experiment(fig1_experiment("quick"), "runs/fig1")  # runs/fig1/fig1.png
    """
    base = _base(preset, _SANTURKAR_DEFAULTS, overrides)
    rates = tuple(float(a) for a in (lrs if lrs is not None else (base.lr, 5 * base.lr)))
    if not rates:
        raise ConfigError("lrs must hold at least one learning rate")
    runs: dict[str, TrainConfig] = {}
    for a in rates:
        for norm, word in (("batch", "batchnorm"), ("none", "vanilla")):
            label = f"{word} lr={a:g}"
            runs[label] = base.replace(norm=norm, lr=a, tag=label)
    headline = (f"{base.model} (width {base.width:g}) on {base.dataset}, batch "
                f"{base.batch_size}; lr ∈ {{{', '.join(f'{a:g}' for a in rates)}}}")
    return _distribution_experiment(
        "fig1", runs, base, headline, preset=preset, layer=layer, unit=unit,
        num_samples=num_samples, num_ridges=num_ridges, measure_every=measure_every,
        smooth=smooth, extra_options={"lrs": list(rates)}, overrides=overrides)


def fig2_experiment(preset: str = "quick", *, layer: int = 2, unit: int | None = 0,
                    num_samples: int = 2000, num_ridges: int = 6,
                    measure_every: int | None = None, smooth: int | None = None,
                    noise: Mapping[str, Any] | None = None, **overrides: Any) -> Experiment:
    """Santurkar et al. (2018) Figure 2: standard vs BatchNorm vs "noisy" BatchNorm.

    The paper's figure: accuracy of a VGG without BN ("Standard"), with BN and with BN followed by
    Algorithm 1's time-varying noise (random per-unit shift and scale redrawn at every step, so the
    layer inputs never settle); the noisy network trains about as fast as plain BN although its
    activation distributions (right panels) move around much more — distributional stability is
    not what makes BN work.

    Runs: ``"standard"`` (norm "none"), ``"batchnorm"`` ("batch") and ``"noisy batchnorm"``
    ("noisy_batch" with ``noise`` as its options; default the paper's constants n_μ = 0.5,
    n_σ = 1.25, r_μ = r_σ = 0.1 with r_σ a standard deviation and the noise after the γ/β affine
    — see :class:`landscape.normalization.NoisyBatchNorm`). The noise key of step t is
    ``fold_in(key(seed), t)``; the activation measurement uses that same key (``ctx.batch["rng"]``),
    so it sees exactly the noisy activations the step trained on.

    Histograms show ONE unit (``unit``, default channel 0, over all positions and examples) rather
    than the whole layer: the noise is drawn per unit, so pooled over the units its shifts and
    scalings average into a slightly wider but steady histogram and the instability the paper
    shows is invisible; per unit the histogram shifts and rescales from step to step.
    ``unit=None`` pools the layer as in :func:`fig1_experiment`. Layer, presets and overrides as in
    :func:`fig1_experiment` (one learning rate: the base lr, 0.1).

    Example:
        >>> run_experiment(fig2_experiment("quick"), "runs/fig2")  # runs/fig2/fig2.png
    """
    base = _base(preset, _SANTURKAR_DEFAULTS, overrides)
    noisy_options = dict(base.norm_options if base.norm == "noisy_batch" else {})
    noisy_options.update(noise or {})
    runs = {"standard": base.replace(norm="none", norm_options={}, tag="standard"),
            "batchnorm": base.replace(norm="batch", norm_options={}, tag="batchnorm"),
            "noisy batchnorm": base.replace(norm="noisy_batch", norm_options=noisy_options,
                                            tag="noisy batchnorm")}
    headline = (f"{base.model} (width {base.width:g}) on {base.dataset}, lr {base.lr:g}, batch "
                f"{base.batch_size}; noisy BN: Santurkar et al. Alg. 1")
    return _distribution_experiment(
        "fig2", runs, base, headline, preset=preset, layer=layer, unit=unit,
        num_samples=num_samples, num_ridges=num_ridges, measure_every=measure_every,
        smooth=smooth, extra_options={"noise": dict(noise or {})}, overrides=overrides)


def ioffe_fig1_experiment(preset: str = "quick", *, layer: int = -1, unit: int = 0,
                          measure_every: int | None = None, smooth: int | None = None,
                          **overrides: Any) -> Experiment:
    """Ioffe & Szegedy (2015) Figure 1: an MNIST MLP with and without BatchNorm.

    The paper's figure: (a) test accuracy vs training step of a 3 × 100 sigmoid MLP on MNIST,
    trained 50 000 steps on minibatches of 60, with and without BN (BN before each sigmoid) — BN
    is higher throughout; (b, c) the 15th, 50th and 85th percentiles over training of the input to
    one typical sigmoid of the last hidden layer: without BN they drift (mean and spread change),
    with BN they stay put.

    Runs: ``"without BN"`` (norm "none", biases kept) and ``"with BN"`` ("batch", bias dropped),
    ``model="mlp"`` at ``width=1.0`` (3 × 100 sigmoid units). Activations: unit ``unit`` (default
    0) of block ``layer`` (default: the last hidden layer, block2), the input to its sigmoid in
    train mode over the step's 60 examples, every ``measure_every`` steps (default: about 100
    points); drawn with :func:`landscape.figures.plot_activation_percentiles`.

    Choices where the paper is silent: plain SGD with lr 0.1 for both nets (the paper gives neither
    optimizer nor rate; with 0.1 the net without BN trains within the quick budget but visibly
    slower, while lr 0.5 lets both saturate the 4 000-image subset within a few hundred steps and
    hides the difference), Glorot-uniform initialisation (the paper: "small random Gaussian values";
    :class:`TrainConfig` has no initialisation field), ε = 1e-5, EMA running statistics for the
    test-time BN (momentum 0.9).

    Presets: "quick" — the offline MNIST subset (4 000 train / 1 000 test images), 2 000 steps,
    evaluation every 50 (~40 s on a busy 2-core CPU); "paper" — full MNIST (``data_dir``),
    50 000 steps, evaluation every 500. Any :class:`TrainConfig` field in ``overrides`` wins
    (e.g. another ``lr``).

    Example:
        >>> run_experiment(ioffe_fig1_experiment("quick"), "runs/ioffe-fig1")
    """
    base = _base(preset, _IOFFE_DEFAULTS, overrides)
    runs = {"without BN": base.replace(norm="none", tag="without BN"),
            "with BN": base.replace(norm="batch", tag="with BN")}
    every = _measure_every(base.steps, measure_every, 100)
    sm = _default_smooth(base.steps) if smooth is None else int(smooth)
    title = (f"{base.model} (width {base.width:g}) on {base.dataset}, {base.optimizer.upper()} lr "
             f"{base.lr:g}, batch {base.batch_size}"
             + (f" (train curves: moving average over {sm} steps)" if sm > 1 else ""))

    def measurements(label: str, cfg: TrainConfig) -> list[Measurement]:
        return [activation_measurement(layer=layer, unit=unit, every=every, seed=cfg.seed)]

    def finalize(out: Path, r: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from landscape.figures import (plot_activation_percentiles, plot_training, save_figure,
                                       stack_figures)

        models = {label: run_entry(run) for label, run in r.items()}
        full = {label: run_entry(run, max_points=math.inf) for label, run in r.items()}
        diverged = {k: v["diverged_at_step"] for k, v in models.items()}
        training = plot_training({k: v["curves"] for k, v in full.items()}, title=title,
                                 smooth=sm, diverged=diverged)
        layer_words = _layer_words(models)
        pct = plot_activation_percentiles(
            {k: {key: v["activations"][key] for key in ("steps", "p15", "p50", "p85")}
             for k, v in full.items()},
            title=f"input to one sigmoid, {layer_words}: 15th/50th/85th percentiles over "
                  "the step's minibatch")
        written = save_figure(training, out / "ioffe-fig1_training")
        written += save_figure(pct, out / "ioffe-fig1_activations")
        written += stack_figures([training, pct], out / "ioffe-fig1")
        return {"models": models, "figures": [p.name for p in written],
                "config": {label: run["config"] for label, run in r.items()}}

    return Experiment("ioffe-fig1", runs, finalize, measurements=measurements,
                      options={"preset": preset, "layer": layer, "unit": unit,
                               "measure_every": every, "smooth": sm, **overrides})
