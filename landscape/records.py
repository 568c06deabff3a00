"""Append-only JSON-lines records: one line per measurement, flushed as it is written.

Encoding: standard JSON. Non-finite floats (NaN, ±Inf — a diverged run produces them) are written as
``null`` in JSON, which any reader accepts, and read back as ``nan``. Arrays become lists.

A run killed mid-write leaves at most one torn last line; :func:`read_records` drops it with a warning.
:func:`truncate_records` rewrites a file atomically keeping only rows before a step, so a resumed run
never duplicates rows.

Example:
    >>> with RecordWriter(path) as w:
    ...     w.write({"step": 0, "loss": [1.0, float("nan")]})
    >>> read_records(path)[0]["loss"]
    [1.0, nan]
    >>> records_to_arrays(read_records(path))["loss"].shape
    (1, 2)
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The Figure-4 quantities of every probe record and summary (Santurkar et al. 2018, Fig. 4):
#: the bands of (a) loss and (b) gradient change over η, (c) the effective β, and ‖∇L‖. The one
#: source of truth for summaries (:mod:`landscape.experiments.fig4`) and figures (:mod:`landscape.figures`).
FIG4_FIELDS: tuple[str, ...] = ("loss_min", "loss_max", "grad_change_min", "grad_change_max",
                                "effective_beta", "grad_norm")

__all__ = ["FIG4_FIELDS", "RecordWriter", "read_records", "records_to_arrays", "truncate_records", "to_jsonable",
           "write_json_atomic"]


def to_jsonable(value: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """Python/JSON form of ``value``: mappings to dicts with ``str`` keys, tuples and arrays (NumPy,
    JAX) to lists, NumPy/JAX scalars to Python numbers, non-finite floats to ``None``.

    Anything else (not ``None``, bool, int, float or str) is returned as it is, or as
    ``default(value)`` when ``default`` is given (e.g. ``str`` for paths and user objects).

    Example:
        >>> to_jsonable({"a": (1, np.float32(2.5)), "b": float("nan")})
        {'a': [1, 2.5], 'b': None}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, default=default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, default=default) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return to_jsonable(arr.item(), default=default)
        return [to_jsonable(v, default=default) for v in arr.tolist()]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return to_jsonable(float(value))
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if default is not None and not (value is None or isinstance(value, (bool, int, str))):
        return default(value)
    return value


def _from_json(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


class RecordWriter:
    """Appends one JSON object per line to ``path``; each line is flushed and fsync'ed."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line (non-finite floats become ``null``)."""
        line = json.dumps(to_jsonable(record), allow_nan=False, separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | os.PathLike, *, missing_ok: bool = True) -> list[dict[str, Any]]:
    """All records in ``path``; ``null`` comes back as ``nan``. A torn last line is dropped with a
    warning; a corrupt line elsewhere raises ``ValueError`` naming the line."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise FileNotFoundError(f"no records at {path}")
    lines = path.read_text(encoding="utf-8").split("\n")
    complete_last = lines[-1] == ""
    if complete_last:
        lines = lines[:-1]
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: dropping a torn last line (line {i + 1})", RuntimeWarning,
                              stacklevel=2)
                break
            raise ValueError(f"{path}: line {i + 1} is not a JSON record") from None
        rows.append(_from_json(row))
    return rows


def truncate_records(path: str | os.PathLike, *, before_step: int) -> int:
    """Keep only rows with ``step < before_step`` (atomic rewrite); returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    rows = read_records(path)
    keep = [r for r in rows if r.get("step", -1) < before_step]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in keep:
            f.write(json.dumps(to_jsonable(r), allow_nan=False, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(rows) - len(keep)


def records_to_arrays(rows: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack rows into arrays, one per key present in every row (numbers → float, NaN kept)."""
    rows = list(rows)
    if not rows:
        return {}
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    out = {}
    for k in keys:
        values = [r[k] for r in rows]
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            arr = np.asarray(values, dtype=object)
        out[k] = arr
    return out


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty JSON (non-finite → null) via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_jsonable(obj), f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
