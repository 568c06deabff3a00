"""Plain-number series as the figures read them: arrays, validity masks, runs, a moving average.

Every figure takes mappings of label → arrays (lists, NumPy arrays, ``None`` for a missing value,
as the JSON records hold them). These helpers turn them into 1-D float arrays and tell which
points can be drawn; none of them draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def as_array(values: Any) -> np.ndarray:
    """1-D float array; ``None`` (the whole series) → empty, ``None`` items → NaN.

    Example:
        >>> as_array([1, None, 3.0])
        array([ 1., nan,  3.])
    """
    if values is None:
        return np.zeros(0)
    return np.asarray(values, dtype=float).reshape(-1)


def valid_mask(*arrays: np.ndarray, log: bool = False) -> np.ndarray:
    """Mask of positions where every array is finite (and > 0 for the non-x arrays when ``log``)."""
    mask = np.ones(arrays[0].shape, dtype=bool)
    for i, a in enumerate(arrays):
        mask &= np.isfinite(a)
        if log and i > 0:
            with np.errstate(invalid="ignore"):
                mask &= a > 0
    return mask


def true_runs(mask: np.ndarray) -> list[slice]:
    """Contiguous True stretches of ``mask`` as slices.

    Example:
        >>> true_runs(np.array([True, True, False, True]))
        [slice(0, 2, None), slice(3, 4, None)]
    """
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append(slice(start, i))
            start = None
    if start is not None:
        out.append(slice(start, len(mask)))
    return out


def check_lengths(name: str, data: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming ``name`` unless every array has the same length."""
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name}: arrays must have equal lengths, got {lengths}")


def all_positive(*arrays: np.ndarray) -> bool:
    """True when the finite values are all > 0 and there is at least one (a log axis fits)."""
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    return vals.size > 0 and bool(np.all(vals > 0))


def moving_average(values: Any, window: int) -> np.ndarray:
    """NaN-aware trailing moving average over ``window`` points.

    With ok_i = [y_i finite]: m_i = Σ_{j=i−w+1..i} ok_j y_j / Σ_{j=i−w+1..i} ok_j, so a NaN inside
    the window is skipped rather than spread; a NaN point stays NaN. ``window`` ≤ 1 (or an empty
    series) returns the values unchanged.

    Example:
        >>> moving_average([1.0, 3.0, float("nan"), 5.0], 2)
        array([ 1.,  2., nan,  5.])
    """
    y = as_array(values)
    if window <= 1 or y.size == 0:
        return y
    ok = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(idx - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = (csum[idx] - csum[lo]) / (ccnt[idx] - ccnt[lo])
    return np.where(ok, avg, np.nan)
