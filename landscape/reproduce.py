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

import json
import os
import shutil
from pathlib import Path
from typing import Any


from landscape import parallel
from landscape.config import ConfigError
from landscape.experiments import EXPERIMENTS
from landscape.experiments.base import Experiment
from landscape.records import to_jsonable, write_json_atomic

__all__ = ["ExperimentExistsError", "EXPERIMENTS", "replot",
           "run_experiment", "write_report"]


class ExperimentExistsError(RuntimeError):
    """The output folder holds a different experiment (use ``overwrite``)."""


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
                   progress: bool = True, tensorboard: bool = False,
                   devices: int | None = None) -> dict[str, Any]:
    """Train every run of ``experiment`` under ``out`` (resuming), then write ``summary.json``.

    Returns the summary. Raises :class:`ExperimentExistsError` when ``out`` holds another
    experiment and ``overwrite`` is false. ``overwrite`` starts over: it deletes the old run
    folders (sub-folders holding a ``config.json``, or runs one level down) and summary files
    first, nothing else. ``tensorboard`` mirrors every run's records into ``<run>/tensorboard``
    (``tensorboard --logdir OUT``). ``devices`` is :func:`landscape.engine.train`'s (data
    parallel over all devices by default); the count used is added to each run's entry of the
    summary's ``config``. In a multi-process run (:func:`landscape.parallel.initialize`) every
    process trains and only process 0 writes the manifest, summary and figures (the others
    return an empty dict).
    """
    from landscape.train import read_run, train

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    manifest_path = out / "experiment.json"
    manifest = experiment.manifest()
    writer = parallel.is_writer()
    if overwrite and out.exists():
        if writer:
            _remove_old_runs(out)
    elif manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = None
        if previous != manifest and _old_runs(out):  # a manifest with no runs (a failed start) is no result
            raise ExperimentExistsError(
                f"{out} holds a different run ({(previous or {}).get('experiment', 'unreadable')}); "
                "pass --overwrite to replace it or choose another --out")
    elif out.exists() and _old_runs(out):
        raise ExperimentExistsError(f"{out} holds results of another command; pass --overwrite "
                                    "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if writer:
        write_json_atomic(manifest_path, manifest)
    parallel.barrier("landscape:experiment-folder-ready")
    for label, cfg in experiment.runs.items():
        train(cfg, out / label, progress=progress,
              measurements=experiment.measurements(label, cfg),
              hooks=experiment.hooks(label, cfg), tensorboard=tensorboard, devices=devices)
    if not writer:
        return {}
    runs = {label: read_run(out / label) for label in experiment.runs}
    summary = _summarize(experiment, out, runs)
    write_json_atomic(out / "summary.json", summary)
    return summary


def _summarize(experiment: Experiment, out: Path, runs: dict[str, Any]) -> dict[str, Any]:
    """The experiment's summary (and figures), plus its name, options and every run's config
    with the number of devices it ran on."""
    summary = experiment.finalize(out, runs)
    summary.setdefault("experiment", experiment.name)
    summary.setdefault("options", to_jsonable(experiment.options, default=str))
    configs = summary.setdefault("config", {})
    for label, run in runs.items():
        entry = configs.get(label, run["config"] or {})
        if isinstance(entry, dict):  # a copy: the run's own config stays as read
            configs[label] = {**entry, "devices": run["run"].get("devices", 1)}
    return summary





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
    write_json_atomic(run_dir / "summary.json", _summarize(experiment, run_dir, runs))
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

