"""Checks on saved images that the tests share."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.image import imread


def is_blank(path: str | os.PathLike, *, tolerance: float = 0.02,
             min_fraction: float = 1e-3) -> bool:
    """True when the saved PNG at ``path`` is (nearly) a single colour.

    A pixel counts as different when any RGB channel differs from the top-left pixel's by more than
    ``tolerance`` (channels in [0, 1]); the image is blank when fewer than ``min_fraction`` of the
    pixels differ.
    """
    img = np.asarray(imread(os.fspath(path)), dtype=float)
    if img.ndim == 2:
        img = img[..., None]
    if img.max() > 1.0:  # integer PNG loaded as 0..255
        img = img / 255.0
    rgb = img[..., :3]
    ref = rgb[0, 0]
    differs = np.abs(rgb - ref).max(axis=-1) > tolerance
    return bool(differs.mean() < min_fraction)
