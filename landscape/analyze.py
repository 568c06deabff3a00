"""Analyse the checkpoints of a finished (or running) training run: ``landscape analyze RUN_DIR``.

For every chosen checkpoint step S of a run folder written by :func:`landscape.train.train`
(``config.json`` + Orbax ``checkpoints/``) :func:`analyze` measures, in one explicit BatchNorm
``mode`` recorded with every result:

- the Figure-4 step probe (Santurkar et al. 2018) at the run's η grid
  ``lr_multiples(lr, step_size_lo, step_size_hi, num_step_sizes)`` on ``num_batches`` minibatches
  (training batches S, S+1, …, S+n−1 of the run's data order), reported as the mean and a 95 %
  confidence band ``mean ± t_{0.975, n−1} · sd / √n`` of the loss range max_η L(θ−ηg) − min_η
  L(θ−ηg), the gradient change max_η ‖∇L(θ−ηg) − g‖, the effective β and ‖g‖;
- with ``surface="2d"``: a filter-normalized 2-D slice L(θ + a d₁ + b d₂) on a ``grid``×``grid``
  grid over [−span, span]² (Li et al. 2018; d₁, d₂ from ``random_direction`` with the fixed keys
  ``split(key(seed))``) on minibatch S, and the 1-D interpolation below;
- with ``surface="1d"`` (and "2d"): L((1 − α)θ₀ + αθ_S) for 2·grid − 1 values of α on
  [−0.5, 1.5] (Goodfellow et al. 2015), θ₀ the step-0 checkpoint when there is one, otherwise
  the initialisation rebuilt from the configuration (the seed ``train`` used);
- λ_max of the Hessian on minibatch S (:func:`landscape.probes.hessian_eigs`,
  Lanczos, k = 1, 20 iterations, ``key(seed)``).

Files under ``RUN_DIR/analysis/``: ``analysis.jsonl`` (one record per step), ``analysis.json``
(the options), ``surface_step{S}.npz/.json/.png``, ``interpolation_step{S}.npz/.json``,
``analysis.png`` and ``interpolation.png``. A rerun skips the steps already in
``analysis.jsonl`` (every quantity depends only on the step and the options, so an interrupted
analysis resumed equals an uninterrupted one); options that differ from the recorded ones are
refused unless ``overwrite=True`` (which replaces ``analysis/`` only).

Example::

    from landscape.analyze import analyze
    result = analyze("runs/fig4/batchnorm", steps="all", surface="1d")
    result["records"][-1]["effective_beta_mean"]
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from landscape import bridge, probes
from landscape.choices import BN_MODES
from landscape.config import ConfigError, TrainConfig
from landscape.records import RecordWriter, read_records, truncate_records, write_json_atomic

__all__ = ["ANALYSIS_DIR", "PROBE_QUANTITIES", "SURFACE_KINDS", "analyze", "analyze_run",
           "checkpoint_steps", "confidence_band", "initial_params", "interpolation_1d", "interpolation_max_rise",
           "ring_increase", "surface_2d"]

ANALYSIS_DIR = "analysis"
SURFACE_KINDS = ("2d", "1d", "none")
#: Per-minibatch probe quantities averaged over minibatches (record keys ``{q}_mean/_lo/_hi``).
PROBE_QUANTITIES = ("loss0", "loss_range", "grad_change", "effective_beta", "grad_norm")


# ------------------------------------------------------------------------- pure summaries


def confidence_band(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` with lo/hi = mean ∓ t_{(1+level)/2, n−1} · sd / √n over the finite values.

    sd is the sample standard deviation (ddof 1). NaN band for fewer than two finite values
    (NaN mean for none).

    Example:
        >>> [round(v, 3) for v in confidence_band([1.0, 2.0, 3.0])]   # t_{0.975, 2} = 4.303
        [2.0, -0.484, 4.484]
    """
    from scipy import stats

    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(a.mean())
    if a.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return mean, mean - half, mean + half


def ring_increase(coords: Sequence[Any], loss: Any, radius: float = 0.5, *,
                  num_angles: int = 64) -> float:
    """Mean loss increase on the circle of ``radius`` in a 2-D slice: a sharpness-like summary.

    ``(1/M) Σ_m L(r cos φ_m, r sin φ_m) − L(0, 0)`` over M = ``num_angles`` evenly spaced angles,
    the slice bilinearly interpolated from its grid (``loss[i, j]`` at (a_i, b_j), as
    :func:`landscape.probes.loss_surface` returns it). With filter-normalized directions
    r = 0.5 moves every filter by half its norm. NaN when the circle leaves the grid or crosses a
    non-finite value.

    Example:
        >>> a = np.linspace(-1, 1, 21)
        >>> round(ring_increase((a, a), a[:, None] ** 2 + a[None, :] ** 2, 0.5), 3)
        0.25
    """
    from scipy.interpolate import RegularGridInterpolator

    a, b = (np.asarray(c, np.float64) for c in coords)
    z = np.asarray(loss, np.float64)
    if radius > min(-a.min(), a.max(), -b.min(), b.max()):
        return math.nan
    phi = np.linspace(0.0, 2 * np.pi, num_angles, endpoint=False)
    f = RegularGridInterpolator((a, b), z)
    ring = f(np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1))
    value = float(ring.mean() - f([[0.0, 0.0]])[0])
    return value if math.isfinite(value) else math.nan


def interpolation_max_rise(alpha: Any, loss: Any) -> float:
    """Largest increase between consecutive points of L(α) on α ∈ [0, 1] (≤ 0: monotone).

    Goodfellow et al. (2015) report that L((1 − α)θ₀ + αθ₁) typically decreases monotonically from
    the initialisation (α = 0) to the solution (α = 1); a positive value is a bump on the way.

    Example:
        >>> interpolation_max_rise([0, 0.5, 1], [2.0, 1.0, 0.5])
        -0.5
    """
    alpha, loss = np.asarray(alpha, np.float64), np.asarray(loss, np.float64)
    inside = loss[(alpha >= -1e-9) & (alpha <= 1 + 1e-9)]
    return float(np.max(np.diff(inside))) if inside.size > 1 else math.nan


# ----------------------------------------------------------------------- measurements


def surface_2d(loss_fn: Callable, params: Any, batch: Any, *, key: jax.Array, grid: int = 21,
               span: float = 1.0) -> probes.LossSurface:
    """L(θ + a d₁ + b d₂) on ``grid``×``grid`` points of [−span, span]², d₁, d₂ filter-normalized.

    The two directions are :func:`landscape.probes.random_direction` with ``split(key)`` (biases
    and BN parameters zeroed), so the same key gives the same slice (Li et al. 2018, Sec. 4).

    Example::

        s = surface_2d(loss_fn, params, batch, key=jax.random.key(0), grid=21)
        s.loss[10, 10]          # = loss_fn(params, batch)
    """
    k1, k2 = jax.random.split(key)
    directions = (probes.random_direction(k1, params), probes.random_direction(k2, params))
    axis = jnp.linspace(-span, span, grid)
    return probes.loss_surface(loss_fn, params, batch, directions, (axis, axis))


def interpolation_1d(loss_fn: Callable, params_from: Any, params_to: Any, batch: Any, *,
                     num: int = 41, lo: float = -0.5, hi: float = 1.5) -> probes.LossSurface:
    """L((1 − α)θ₀ + αθ₁) for ``num`` values of α on [lo, hi] (Goodfellow et al. 2015, Sec. 2).

    Example::

        s = interpolation_1d(loss_fn, theta0, theta1, batch, num=401)
        s.coords[0], s.loss      # α and the loss along the line
    """
    d = probes.interpolation_direction(params_from, params_to)
    return probes.loss_surface(loss_fn, params_from, batch, (d,), (jnp.linspace(lo, hi, num),))


# -------------------------------------------------------------------------- run folders


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """The steps of the Orbax checkpoints in ``run_dir/checkpoints`` (ascending)."""
    import orbax.checkpoint as ocp

    folder = Path(run_dir).absolute() / "checkpoints"
    if not folder.is_dir():
        return []
    with ocp.CheckpointManager(folder) as manager:
        return sorted(int(s) for s in manager.all_steps())


def _options(*, num_batches: int, surface: str, grid: int, span: float, mode: str,
             seed: int, step_sizes: Sequence[float] | None = None) -> dict[str, Any]:
    """Validated measurement options (what ``analysis.json`` records and reruns must match)."""
    from landscape.choices import check_choice, check_number

    check_number("num_batches", num_batches, minimum=1, integer=True, error=ConfigError)
    check_number("grid", grid, minimum=2, integer=True, error=ConfigError)
    check_number("span", span, minimum=0, strict=True, error=ConfigError)
    check_number("seed", seed, minimum=0, integer=True, error=ConfigError)
    check_choice("surface", surface, SURFACE_KINDS, ConfigError)
    check_choice("mode", mode, BN_MODES, ConfigError)
    options = {"num_batches": int(num_batches), "surface": surface, "grid": int(grid),
               "span": float(span), "mode": mode, "seed": int(seed)}
    if step_sizes is not None:  # left out by default: older analyses keep matching
        etas = [float(v) for v in np.atleast_1d(np.asarray(step_sizes, dtype=float))]
        if not etas or not all(math.isfinite(v) and v > 0 for v in etas):
            raise ConfigError(f"step_sizes={step_sizes!r} must be positive finite numbers")
        options["step_sizes"] = etas
    return options


def _choose_steps(steps: str | int | Sequence[int], available: list[int], where: Path) -> list[int]:
    if steps == "last":
        return available[-1:]
    if steps == "all":
        return list(available)
    if isinstance(steps, str):
        try:
            steps = [int(s) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"steps={steps!r} is not accepted; expected 'last', 'all' or step "
                              "numbers like 100,200") from None
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        steps = [int(steps)]
    chosen = sorted({int(s) for s in steps})
    missing = [s for s in chosen if s not in available]
    if not chosen or missing:
        raise ConfigError(f"{where} has no checkpoint at step(s) {missing or '(none given)'}; "
                          f"available: {', '.join(map(str, available))}")
    return chosen


def _read_config(run_dir: Path) -> TrainConfig | dict[str, Any]:
    """The run's :class:`TrainConfig`, or the ``config.json`` dict of a ``fit`` run."""
    from landscape.engine.rebuild import is_fit_run

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder")
    path = run_dir / "config.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json, no experiment.json)")
    try:
        identity = json.loads(path.read_text())
        return identity if is_fit_run(identity) else TrainConfig.from_dict(identity)
    except ValueError as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None


def _prepare_folder(out: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    """Refuse an ``analysis/`` made with other options (unless ``overwrite``); write the manifest;
    drop a torn last record line left by a kill."""
    manifest_path = out / "analysis.json"
    if out.exists() and overwrite:
        shutil.rmtree(out)
    elif manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text()).get("options")
        except ValueError:
            previous = None
        if previous != manifest["options"]:
            raise ConfigError(f"{out} holds an analysis with other options ({previous}); pass "
                              "--overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest_path, manifest)
    truncate_records(out / "analysis.jsonl", before_step=2**62)  # complete rows only


def initial_params(run_dir: Path, config: TrainConfig, input_shape: Sequence[int],
                   num_classes: int, available: Sequence[int]) -> tuple[Any, str]:
    """``(θ₀, where from)``: the step-0 checkpoint when there is one, else the initialisation
    rebuilt from the configuration — :func:`landscape.train.train` builds its model from the
    config and its seed, so that is the run's θ₀ (not for a run given its own ``model=``)."""
    from landscape.engine import build_config_model
    from landscape.train import restore_model

    if 0 in available:
        return bridge.split(restore_model(run_dir, step=0))[1], "step 0"
    init = build_config_model(config, input_shape, num_classes)
    if config.dtype != "float32":
        bridge.cast(init, config.dtype)
    return bridge.split(init)[1], "initialisation (rebuilt from config)"


@functools.lru_cache(maxsize=16)
def _compiled(graphdef: Any, mode: str, strategy: str, kind: str) -> tuple[Callable, Callable]:
    """``(loss_fn, jitted probe)`` per model structure and mode: one object each, so the probe and
    the surface chunks compile once per process, not once per run folder or step."""
    loss_fn = bridge.make_loss_fn(graphdef, mode=mode, loss=kind)
    return loss_fn, probes.make_step_probe(loss_fn, strategy=strategy)


class _Context:
    """What every step of one config run's analysis shares: data, the compiled loss and probe."""

    def __init__(self, run_dir: Path, config: TrainConfig, options: dict[str, Any],
                 available: list[int]):
        from landscape.engine import load_run_data
        from landscape.train import restore_model

        self.run_dir, self.config, self.options = run_dir, config, options
        self.train_data, _, input_shape, num_classes = load_run_data(config)
        x_train = self.train_data[0] if isinstance(self.train_data, tuple) else self.train_data.x_train
        self.batch_size = len(x_train) if config.dataset == "dln" else min(config.batch_size,
                                                                            len(x_train))
        self._restore_model = restore_model
        model = restore_model(run_dir, step=available[0])
        self.loss_fn, self.probe = _compiled(nnx.graphdef(model), options["mode"],
                                             config.probe_strategy,
                                             getattr(model, "loss_kind", "cross_entropy"))
        self.step_sizes = options.get("step_sizes") or probes.lr_multiples(
            config.lr, config.step_size_lo, config.step_size_hi, config.num_step_sizes)
        self.init_params, self.init_from = initial_params(run_dir, config, input_shape,
                                                          num_classes, available)

    def restore(self, step: int) -> tuple[Any, Any]:
        return bridge.split(self._restore_model(self.run_dir, step=step))[1:]

    def batch(self, index: int, state: Any) -> dict[str, Any]:
        from landscape.data import batch_at

        x, y = batch_at(self.train_data, index, self.batch_size, seed=self.config.seed)
        x = np.asarray(x)  # integer tokens stay integers; only floating inputs take the run's dtype
        x = x.astype(self.config.dtype) if np.issubdtype(x.dtype, np.floating) else x
        return bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)


class _FitContext:
    """The same for a :func:`landscape.engine.fit` run, rebuilt from its recorded setup."""

    def __init__(self, run: Any, options: dict[str, Any], available: list[int]):
        self.run, self.run_dir, self.options = run, run.run_dir, options
        self.loss_fn = run.objective.loss_fn(options["mode"])
        self.probe = probes.make_step_probe(self.loss_fn)
        self.step_sizes = options.get("step_sizes") or _recorded_step_sizes(run.run_dir)
        if 0 in available:
            self.init_params, self.init_from = run.restore(0)[0], "step 0"
        else:
            self.init_params, self.init_from = run.params, "initialisation (rebuilt from setup)"

    def restore(self, step: int) -> tuple[Any, Any]:
        return self.run.restore(step)

    def batch(self, index: int, state: Any) -> Any:
        return self.run.probe_batch(index, state)


def _recorded_step_sizes(run_dir: Path) -> list[float]:
    rows = read_records(run_dir / "probes.jsonl")
    if not rows or "step_sizes" not in rows[0]:
        raise ConfigError(f"{run_dir} has no probes.jsonl to take the step sizes from; pass "
                          "step_sizes (--step-sizes 0.05,0.1,0.2)")
    return [float(v) for v in rows[0]["step_sizes"]]


def _probe_record(ctx: _Context, step: int, params: Any, state: Any) -> dict[str, Any]:
    per_batch: dict[str, list[float]] = {q: [] for q in PROBE_QUANTITIES}
    for b in range(ctx.options["num_batches"]):
        s = probes.summarize(ctx.probe(params, ctx.batch(step + b, state), ctx.step_sizes))
        values = {"loss0": s["loss0"], "loss_range": s["loss_max"] - s["loss_min"],
                  "grad_change": s["grad_change_max"], "effective_beta": s["effective_beta"],
                  "grad_norm": s["grad_norm"]}
        for q in PROBE_QUANTITIES:
            per_batch[q].append(values[q])
    record: dict[str, Any] = {"step": step, "mode": ctx.options["mode"],
                              "num_batches": ctx.options["num_batches"]}
    for q in PROBE_QUANTITIES:
        record[f"{q}_mean"], record[f"{q}_lo"], record[f"{q}_hi"] = confidence_band(per_batch[q])
    return record


def _hessian_record(ctx: _Context, params: Any, batch: Any) -> dict[str, float]:
    r = probes.hessian_eigs(ctx.loss_fn, params, batch, 1, key=jax.random.key(ctx.options["seed"]),
                     num_iters=20)
    return {"lambda_max": float(r.eigenvalues[0])}


def _surface_records(ctx: _Context, step: int, params: Any, batch: Any, out: Path) -> dict[str, Any]:
    opts, meta = ctx.options, {"mode": ctx.options["mode"], "step": step, "batch_index": step}
    record: dict[str, Any] = {}
    if opts["surface"] == "2d":
        s = surface_2d(ctx.loss_fn, params, batch, key=jax.random.key(opts["seed"]),
                       grid=opts["grid"], span=opts["span"])
        probes.save_surface(out / f"surface_step{step}", s, norm="filter", ignore_1d=True,
                            seed=opts["seed"], **meta)
        record["surface_ring_increase_0.5"] = ring_increase(s.coords, s.loss, 0.5 * opts["span"])
    if opts["surface"] in ("2d", "1d"):
        s = interpolation_1d(ctx.loss_fn, ctx.init_params, params, batch, num=2 * opts["grid"] - 1)
        probes.save_surface(out / f"interpolation_step{step}", s, start=ctx.init_from, **meta)
        record["interpolation_max_rise"] = interpolation_max_rise(s.coords[0], s.loss)
    return record


def analyze_step(ctx: _Context, step: int, out: Path) -> dict[str, Any]:
    """Every measurement at checkpoint ``step``; returns its ``analysis.jsonl`` record."""
    params, state = ctx.restore(step)
    record = _probe_record(ctx, step, params, state)
    batch = ctx.batch(step, state)
    record.update(_hessian_record(ctx, params, batch))
    record.update(_surface_records(ctx, step, params, batch, out))
    return record


def analyze_run(run_dir: str | os.PathLike, *, steps: str | Sequence[int] = "last",
                overwrite: bool = False, progress: bool = True, setup: Any = None,
                **options: Any) -> dict[str, Any]:
    """:func:`analyze` for one run folder (``options`` as there)."""
    from tqdm.auto import tqdm

    from landscape.engine.rebuild import rebuild

    run_dir = Path(run_dir).absolute()
    config = _read_config(run_dir)
    options = _options(**options)
    available = checkpoint_steps(run_dir)
    if not available:
        raise ConfigError(f"{run_dir} has no checkpoints to analyse")
    chosen = _choose_steps(steps, available, run_dir)
    out = run_dir / ANALYSIS_DIR
    _prepare_folder(out, {"options": options, "run": str(run_dir), "steps_available": available},
                    overwrite)
    done = {int(r["step"]) for r in read_records(out / "analysis.jsonl")}
    todo = [s for s in chosen if s not in done]
    fit_run = rebuild(run_dir, setup) if isinstance(config, dict) else None
    with (fit_run or config).arithmetic():
        if not todo:
            ctx = None
        elif fit_run is not None:
            ctx = _FitContext(fit_run, options, available)
        else:
            ctx = _Context(run_dir, config, options, available)
        with RecordWriter(out / "analysis.jsonl") as writer:
            for step in tqdm(todo, desc=f"analyze {run_dir.name}", disable=not progress,
                             unit="checkpoint"):
                writer.write(analyze_step(ctx, step, out))  # the record last: it marks the step done
    records = sorted(read_records(out / "analysis.jsonl"), key=lambda r: r["step"])
    figures = plot_analysis(out, records, options)
    return {"run_dir": str(run_dir), "options": options, "steps": chosen, "records": records,
            "figures": [str(p) for p in figures]}


def analyze(run_dir: str | os.PathLike, *, steps: str | Sequence[int] = "last",
            num_batches: int = 4, surface: str = "2d", grid: int = 21, span: float = 1.0,
            mode: str = "batch_stats", seed: int = 0, overwrite: bool = False,
            progress: bool = True, step_sizes: Sequence[float] | None = None,
            setup: Any = None) -> dict[str, Any]:
    """Probe, slice and (when available) λ_max-measure the checkpoints of a run folder.

    See the module docstring for the measurements and files. ``run_dir`` is a run folder of
    :func:`landscape.train.train`, or an experiment folder of ``landscape reproduce`` (an
    ``experiment.json`` with run sub-folders), whose runs are analysed one by one.

    Args:
      run_dir: the folder.
      steps: ``"last"`` (default), ``"all"``, a list of checkpoint steps or "100,200".
      num_batches: minibatches n per probe (the 95 % band uses Student's t with n − 1 dof).
      surface: ``"2d"`` (2-D slice and 1-D interpolation), ``"1d"`` (interpolation) or ``"none"``.
      grid: points per axis of the 2-D slice (the interpolation has 2·grid − 1).
      span: the 2-D slice covers [−span, span]² in filter-normalized units.
      mode: ``"batch_stats"`` (the paper's training-mode loss) or ``"running_average"``.
      seed: key of the random directions and of the Lanczos start vector.
      overwrite: replace an ``analysis/`` made with other options (only that folder).
      progress: a tqdm bar over checkpoints.
      step_sizes: the probe's η values (default: the config's ``lr_multiples``; for a ``fit``
        run the step sizes its ``probes.jsonl`` recorded).
      setup: for a ``fit`` run, the setup factory (or its ``(loss_fn, params, optimizer,
        data)``) when the run did not record one, or to override it.

    Returns:
      ``{"run_dir", "options", "steps", "records", "figures"}`` for a run folder;
      ``{"runs": {label: that dict}}`` for an experiment folder.

    Raises:
      ConfigError: not a run folder, no checkpoints, a missing step, a bad option, or an
        ``analysis/`` made with other options.

    Example::

        analyze("runs/fig4", steps="all", surface="none", num_batches=8)
    """
    opts = dict(num_batches=num_batches, surface=surface, grid=grid, span=span, mode=mode,
                seed=seed, step_sizes=step_sizes)
    root = Path(run_dir)
    manifest = root / "experiment.json"
    if root.is_dir() and manifest.exists() and not (root / "config.json").exists():
        try:
            labels = list(json.loads(manifest.read_text())["runs"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{manifest} is not a valid experiment manifest") from None
        return {"runs": {label: analyze_run(root / label, steps=steps, overwrite=overwrite,
                                            progress=progress, **opts) for label in labels}}
    return analyze_run(root, steps=steps, overwrite=overwrite, progress=progress, setup=setup, **opts)


# ------------------------------------------------------------------------------ figures


def plot_analysis(out: Path, records: list[dict[str, Any]], options: dict[str, Any]) -> list[Path]:
    """``analysis.png`` (probe means and bands vs checkpoint step), one contour per 2-D slice,
    ``interpolation.png`` (every step's line); returns the PNG paths."""
    from landscape.figures import plot_checkpoint_analysis, plot_surface_1d, plot_surface_contour

    if not records:
        return []
    plot_checkpoint_analysis(records, options["mode"], path=out / "analysis", formats=("png",))
    paths = [out / "analysis.png"]
    curves = {}
    for r in records:
        stem = out / f"surface_step{r['step']}"
        if Path(f"{stem}.npz").exists():
            s, _ = probes.load_surface(stem)
            plot_surface_contour(*s.coords, s.loss, log=bool(np.all(s.loss > 0)), path=stem,
                                 formats=("png",), title=f"step {r['step']} ({options['mode']})")
            paths.append(Path(f"{stem}.png"))
        stem = out / f"interpolation_step{r['step']}"
        if Path(f"{stem}.npz").exists():
            s, _ = probes.load_surface(stem)
            curves[f"step {r['step']}"] = (s.coords[0], s.loss)
    if curves:
        plot_surface_1d(curves, log_y=True, marks=(0, 1), xlabel="α  (θ₀ → θ_step)",
                        title=f"interpolation ({options['mode']})", path=out / "interpolation",
                        formats=("png",))
        paths.append(out / "interpolation.png")
    return paths
