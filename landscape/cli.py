"""The ``landscape`` command: thin argument parsing over :mod:`landscape.reproduce`.

Every user error (bad flag value, missing data, an output folder holding another run) prints one
line ``error: …`` on stderr and exits with status 2; nothing finished is overwritten.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: printed as one ``error:`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


def _number_type(convert, *, what: str, **bounds: Any):
    """An argparse ``type`` converting with ``convert`` and validating with
    :func:`landscape.choices.check_number` (``bounds``); anything else is "expected WHAT, got 'TEXT'"."""
    from landscape.choices import check_number

    def parse(text: str):
        try:
            return check_number("value", convert(text), **bounds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _model_name(text: str) -> str:
    """A built-in model name or a user factory ``module:function`` (imported when the run starts)."""
    from landscape.choices import model_names
    from landscape.factories import is_factory_name

    if is_factory_name(text) or (text in model_names() and text != "dln") or text.startswith("resnet"):
        return text  # a resnet depth that is not 6n+2 gets the configuration's one-line error
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(m for m in model_names() if m != 'dln')} or "
        f"package.module:function, got {text!r}")


def _list_type(kind: type, valid, example: str):
    """A comma-separated list of ``kind`` values, each passing ``valid`` (an argparse type)."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or not all(valid(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected {example}, got {text!r}")
        return values

    return parse


_float_list = _list_type(float, lambda v: 0 < v < float("inf"),
                         "positive numbers like 0.05,0.1,0.2")
_int_list = _list_type(int, lambda v: v >= 1, "positive integers like 2,4,8")
_positive_int = _number_type(int, minimum=1, what="a positive integer")
_nonnegative_int = _number_type(int, minimum=0, what="an integer >= 0")
_positive_float = _number_type(float, minimum=0.0, strict=True, what="a positive finite number")


def _add_training_flags(p: argparse.ArgumentParser, *, default_out: str | None) -> None:
    from landscape.choices import DATASETS, MATMUL_PRECISIONS, model_names

    p.add_argument("--preset", choices=("quick", "paper"), default="quick",
                   help="quick: offline MNIST-5k default for a 2-core CPU; paper: CIFAR-10, "
                        "15 000 steps, probe every step (default: quick)")
    p.add_argument("--dataset", choices=[d for d in DATASETS if d != "dln"],
                   help="dataset (default: the preset's)")
    p.add_argument("--data-dir", help="folder with the dataset files (cifar10, mnist)")
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--model", type=_model_name, metavar="MODEL",
                   help=f"architecture: {', '.join(m for m in model_names() if m != 'dln')}, or "
                        "your NNX model factory as package.module:function or file.py:function "
                        "(default: the preset's)")
    p.add_argument("--width", type=_positive_float, help="width multiplier (1 = full VGG)")
    p.add_argument("--steps", type=_positive_int, help="training steps")
    p.add_argument("--lr", type=_positive_float, help="learning rate (SGD)")
    p.add_argument("--batch-size", type=_positive_int, help="minibatch size")
    p.add_argument("--probe-every", type=_positive_int, help="probe every N steps")
    p.add_argument("--checkpoint-every", type=_positive_int, help="checkpoint every N steps")
    p.add_argument("--num-step-sizes", type=_positive_int, help="K, the number of η values probed")
    p.add_argument("--seed", type=_nonnegative_int, help="seed for init and data order (default 0)")
    _add_model_flags(p)
    p.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output folder that holds a different run")
    p.add_argument("--resume", action="store_true",
                   help="require --out to hold this run and continue it (the same command resumes "
                        "anyway when the configuration matches)")
    p.add_argument("--stop-on-divergence", action="store_true",
                   help="stop a run at its first non-finite loss (default: finish it, record NaN)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="precision of the whole run, probes included (default float32)")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS,
                   help="float32 matmul/conv arithmetic: default (TF32 on Ampere+ GPUs, bfloat16 "
                        "on TPUs), high, or highest (true float32; slower on accelerators)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write records for TensorBoard (tensorboard --logdir OUT); needs "
                        "tensorboardX")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--devices", type=_positive_int,
                   help="train data-parallel on this many devices (default: all JAX sees)")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="multi-process run: address of process 0's coordinator (also "
                        "JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=_positive_int,
                   help="multi-process run: number of processes (also JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=_nonnegative_int,
                   help="multi-process run: this process's id, 0 writes the results (also "
                        "JAX_PROCESS_ID)")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """Options of one model family, mapped into ``model_options`` (:func:`_model_options`)."""
    p.add_argument("--no-shortcut", action="store_true",
                   help="resnetN: drop every shortcut (Li et al. 2018's noshort nets)")
    p.add_argument("--norm-position", choices=("pre", "post"),
                   help="transformer: Pre-LN or Post-LN (Xiong et al. 2020; default pre)")
    p.add_argument("--qk-norm", action="store_true",
                   help="transformer: normalize queries and keys per head")
    p.add_argument("--context", type=_positive_int,
                   help="transformer: context length T (tokens per example of --dataset text)")
    p.add_argument("--layers", type=_positive_int, help="transformer: number of layers")
    p.add_argument("--d-model", type=_positive_int,
                   help="transformer: width before --width scales it (--heads must divide it)")
    p.add_argument("--heads", type=_positive_int, help="transformer: attention heads")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``landscape`` command."""
    from landscape.reproduce import EXPERIMENTS

    parser = _Parser(prog="landscape", description="Loss-landscape probes for JAX: reproduce "
                     "Santurkar et al. (2018) and compare normalization schemes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    rep = sub.add_parser("reproduce", help="reproduce a paper figure")
    rep.add_argument("figure", choices=sorted(EXPERIMENTS), help="which figure")
    rep.add_argument("--curvature", action="store_true",
                     help="fig4: also measure λ_max(∇²L) (Lanczos) and gᵀHg/‖g‖² at every probe, "
                          "beside the effective β")
    rep.add_argument("--seeds", type=_positive_int,
                     help="fig4, transformer-norms: train each model for N matched seeds; the "
                          "summary gives each comparison with a 95 %% interval over seeds")
    rep.add_argument("--depths", type=_int_list,
                     help="skip: the ResNet depths 6n+2 (default 8,14); transformer-norms: the "
                          "depths of the Xiong et al. measurement at initialisation (default "
                          "2,4,8,16)")
    rep.add_argument("--norms", help="transformer-norms: the normalizations of the training grid, "
                                     "each Pre-LN and Post-LN (default layer,rms,dyt,none)")
    rep.add_argument("--grid", type=_positive_int,
                     help="surfaces: points per axis of the 2-D slices (default 21; the paper "
                          "preset 51, Li et al.); skip: of its slices and of the convexity map "
                          "(default 9 and 5; paper 51 and 21)")
    _add_training_flags(rep, default_out=None)

    cmp_ = sub.add_parser("compare", help="compare normalization schemes with matched seeds")
    cmp_.add_argument("--norms", help="comma-separated normalization names (default: "
                      "none,batch,layer,group,rms,weight,lp1,lp2,lpinf; for --model transformer "
                      "layer,rms,dyt,none)")
    cmp_.add_argument("--seeds", type=_positive_int, default=3, help="seeds per normalization")
    _add_training_flags(cmp_, default_out="runs/compare")

    plot = sub.add_parser("plot", help="redraw the figures of a finished run folder")
    plot.add_argument("run_dir")
    report = sub.add_parser("report", help="write report.html for a run folder")
    report.add_argument("run_dir")

    ana = sub.add_parser("analyze", help="probe, slice and plot the checkpoints of a run folder")
    ana.add_argument("run_dir", help="a run folder (config.json + checkpoints/) or an experiment "
                     "folder (experiment.json + run sub-folders)")
    ana.add_argument("--steps", default="last",
                     help="checkpoint steps: last, all, or N,M,... (default: last)")
    ana.add_argument("--num-batches", type=_positive_int, default=4,
                     help="minibatches per probe, for the 95%% band (default: 4)")
    ana.add_argument("--surface", choices=("2d", "1d", "none"), default="2d",
                     help="2d: 2-D slice + interpolation; 1d: interpolation only (default: 2d)")
    ana.add_argument("--grid", type=_positive_int, default=21, help="2-D grid points per axis")
    ana.add_argument("--span", type=_positive_float, default=1.0, help="2-D slice half-width")
    ana.add_argument("--mode", choices=("batch_stats", "running_average"), default="batch_stats",
                     help="BatchNorm mode of the loss (default: batch_stats, the paper's)")
    ana.add_argument("--seed", type=_nonnegative_int, default=0, help="key of the directions")
    ana.add_argument("--step-sizes", type=_float_list, metavar="ETA,ETA,...",
                     help="the probe's step sizes (default: the run's own: the config's lr "
                          "multiples, or those a fit run's probes.jsonl recorded)")
    ana.add_argument("--overwrite", action="store_true",
                     help="replace an analysis/ made with other options")
    ana.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("dataset", "data_dir", "model", "width", "steps", "lr", "batch_size", "probe_every",
            "checkpoint_every", "num_step_sizes", "seed", "dtype", "matmul_precision")
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    for flag in ("download", "stop_on_divergence"):
        if getattr(args, flag, False):
            out[flag] = True
    options = _model_options(args)
    if options:
        out["model_options"] = options
    return out


#: Model flags whose value goes to ``model_options`` under the same name; ``--qk-norm`` maps to
#: ``qk_norm=True``, ``--no-shortcut`` to ``shortcut=False``. The configuration refuses each on a
#: model of another family (one line, exit 2).
_MODEL_FLAGS = ("norm_position", "context", "layers", "d_model", "heads")


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``model_options`` the model flags ask for."""
    options = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k, None) is not None}
    if getattr(args, "qk_norm", False):
        options["qk_norm"] = True
    if getattr(args, "no_shortcut", False):
        options["shortcut"] = False
    return options


def _names(text: str | None) -> list[str] | None:
    """``"a, b,"`` → ``["a", "b"]`` (None stays None: the experiment's default)."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _figure_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``reproduce NAME`` that only some experiments take, each refused elsewhere
    (one line, exit 2)."""
    extra: dict[str, Any] = {}
    if args.seeds is not None:
        if args.figure not in ("fig4", "transformer-norms"):
            raise UsageError("--seeds applies to fig4 and transformer-norms (and to compare)")
        extra["seeds"] = args.seeds
    if args.curvature:
        if args.figure != "fig4":
            raise UsageError("--curvature applies to fig4")
        extra["curvature"] = True
    if args.norms is not None:
        if args.figure != "transformer-norms":
            raise UsageError("--norms applies to transformer-norms (and to compare)")
        extra["norms"] = _names(args.norms)
    if args.depths is not None:
        if args.figure == "skip":
            extra["depths"] = args.depths
        elif args.figure == "transformer-norms":
            extra["xiong"] = {"depths": args.depths}
        else:
            raise UsageError("--depths applies to skip and transformer-norms")
    if args.grid is not None:
        if args.figure == "surfaces":
            extra["grid"] = args.grid
        elif args.figure == "skip":
            extra["grid"] = extra["convexity_grid"] = args.grid
        else:
            raise UsageError("--grid applies to surfaces and skip (and to analyze)")
    return extra


def _run(args: argparse.Namespace) -> int:
    from landscape import reproduce

    if args.command in ("reproduce", "compare"):
        if args.command == "reproduce":
            experiment = reproduce.EXPERIMENTS[args.figure](args.preset, **_figure_options(args),
                                                            **_overrides(args))
            out = Path(args.out or f"runs/{args.figure}")
        else:
            experiment = reproduce.EXPERIMENTS["compare"](args.preset, norms=_names(args.norms),
                                                          seeds=args.seeds, **_overrides(args))
            out = Path(args.out)
        _check_resume(args, out)
        summary = reproduce.run_experiment(experiment, out, overwrite=args.overwrite,
                                           progress=not args.no_progress,
                                           tensorboard=args.tensorboard, devices=args.devices)
        if summary:  # the writing process (every process but 0 returns {})
            _print_summary(out, summary)
        return 0
    if args.command == "plot":
        paths = reproduce.replot(Path(args.run_dir))
        print("\n".join(str(p) for p in paths))
        return 0
    if args.command == "report":
        print(reproduce.write_report(Path(args.run_dir)))
        return 0
    if args.command == "analyze":
        return _analyze(args)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover


def _analyze(args: argparse.Namespace) -> int:
    from landscape.analyze import analyze

    result = analyze(args.run_dir, steps=args.steps, num_batches=args.num_batches,
                     surface=args.surface, grid=args.grid, span=args.span, mode=args.mode,
                     seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress,
                     step_sizes=args.step_sizes)
    for label, run in result.get("runs", {"": result}).items():
        print(f"wrote {Path(run['run_dir']) / 'analysis'}/")
        for r in run["records"]:
            line = (f"  {label + ' ' if label else ''}step {r['step']}: loss {r['loss0_mean']:.4g}, "
                    f"gradient change {r['grad_change_mean']:.4g}, "
                    f"effective β {r['effective_beta_mean']:.4g}")
            if "lambda_max" in r:
                line += f", λ_max {r['lambda_max']:.4g}"
            print(line)
    return 0


def _check_resume(args: argparse.Namespace, out: Path) -> None:
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if args.resume and not (out / "experiment.json").exists():
        raise UsageError(f"--resume: {out} holds no run to resume")


#: At most this many items of a list or dict are shown in a summary line (then "…").
_MAX_ITEMS = 6
#: A text value in a summary line is cut to this many characters.
_MAX_TEXT = 160


def _is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    import numbers

    import numpy as np

    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _format_value(value: Any) -> str:
    """One short line for a summary value: numbers to 4 significant digits, None as ``n/a``, a list
    as ``a, b, c`` (the first few, ``…`` and the count when longer), a dict as ``k=v`` pairs (nested
    values in parentheses), text on one line cut to :data:`_MAX_TEXT` characters."""
    import numbers
    from collections.abc import Mapping

    import numpy as np

    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"  # nan, inf print as such
    if isinstance(value, str):
        text = " ".join(value.split())
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 1] + "…"
    if isinstance(value, Mapping):
        items = list(value.items())
        parts = [f"{k}={_nested(v)}" for k, v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            parts.append(f"… ({len(items)} entries)")
        return ", ".join(parts) if parts else "{}"
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # NumPy / JAX arrays
        value = value.tolist()
        if not isinstance(value, list):
            return _format_value(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) <= _MAX_ITEMS:
            return ", ".join(_nested(v) for v in items) if items else "[]"
        head = ", ".join(_nested(v) for v in items[:_MAX_ITEMS - 2])
        return f"{head}, …, {_nested(items[-1])} ({len(items)} values)"
    return _format_value(str(value))


def _nested(value: Any) -> str:
    """:func:`_format_value` of a list or dict item, in parentheses when it is a collection."""
    text = _format_value(value)
    if isinstance(value, (dict, list, tuple)) and value:
        return f"({text})"
    return text


def _model_line(label: str, entry: Any) -> str | None:
    """A model's line: its final train loss (``train_loss`` or ``final_train_loss``, whichever is a
    number), test accuracy and divergence step, those it has; None when it has none."""
    from collections.abc import Mapping

    if not isinstance(entry, Mapping):
        return f"  {label:>12}: {_format_value(entry)}"
    parts = []
    loss = next((entry[k] for k in ("train_loss", "final_train_loss") if _is_number(entry.get(k))),
                None)
    if loss is not None:
        parts.append(f"final train loss {float(loss):.4g}")
    acc = entry.get("test_accuracy")
    if _is_number(acc) and acc == acc:
        parts.append(f"test accuracy {float(acc):.3f}")
    if entry.get("diverged_at_step") is not None:
        parts.append(f"diverged at step {_format_value(entry['diverged_at_step'])}")
    return f"  {label:>12}: {', '.join(parts)}" if parts else None


def _print_summary(out: Path, summary: dict[str, Any]) -> None:
    """Print ``wrote OUT/``, one line per model and one line per ``comparison`` key (a written
    comparison, a string, as one line); any value type prints (:func:`_format_value`)."""
    from collections.abc import Mapping

    print(f"wrote {out}/")
    models = summary.get("models")
    if isinstance(models, Mapping):
        for label, entry in models.items():
            line = _model_line(str(label), entry)
            if line is not None:
                print(line)
    comparison = summary.get("comparison")
    if comparison is None:
        return
    if isinstance(comparison, str):  # a written comparison (reproduce surfaces)
        print(f"  {comparison}")
    elif isinstance(comparison, Mapping):
        for key, value in comparison.items():
            print(f"  {key}: {_format_value(value)}")
    else:
        print(f"  comparison: {_format_value(comparison)}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landscape`` console script; returns the exit status."""
    from landscape import parallel
    from landscape.config import ConfigError
    from landscape.data import DataError
    from landscape.normalization import NormalizationError
    from landscape.reproduce import ExperimentExistsError
    from landscape.train import RunExistsError

    user_errors = (UsageError, ConfigError, DataError, NormalizationError, ExperimentExistsError,
                   RunExistsError, parallel.ParallelError, FileNotFoundError, NotADirectoryError, PermissionError,
                   IsADirectoryError, FileExistsError)
    try:
        args = build_parser().parse_args(argv)
        if hasattr(args, "coordinator"):  # before anything touches a device
            parallel.initialize(args.coordinator, args.num_processes, args.process_id)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return _run(args)
    except user_errors as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and e.filename:
            message = f"{e.strerror or type(e).__name__}: {e.filename}"
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _entry() -> NoReturn:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
