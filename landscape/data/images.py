"""Raw ``[0, 255]`` pixels to a :class:`Dataset`: scale to ``[0, 1]``, standardize per channel.

The mean and (population) standard deviation are those of the *training* split, per channel,
accumulated in float64; the test split is standardized with the same statistics, and both are kept
in ``Dataset.pixel_mean`` / ``pixel_std`` so ``x * pixel_std + pixel_mean`` recovers the pixels.
"""

from __future__ import annotations

import numpy as np

from landscape.data.dataset import _CHUNK_ROWS, Dataset, validate_dataset


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of NHWC ``x``, accumulated in float64 by chunks."""
    channels = x.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        chunk = x[start : start + _CHUNK_ROWS].astype(np.float64).reshape(-1, channels)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    count = x.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    # A constant channel carries no information; leave its scale alone instead of dividing by 0.
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def _to_float_images(pixels: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` pixels in ``[0, 255]`` (any numeric dtype) -> float32 in ``[0, 1]``."""
    x = pixels.astype(np.float32)  # always a fresh, contiguous copy
    x *= np.float32(1.0 / 255.0)
    return x


def _make_image_dataset(
    name: str,
    train_pixels: np.ndarray,
    y_train: np.ndarray,
    test_pixels: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    normalize: bool,
) -> Dataset:
    """Scale ``[0, 255]`` NHWC pixels to ``[0, 1]``, standardize with train stats, validate."""
    x_train = _to_float_images(train_pixels)
    x_test = _to_float_images(test_pixels)
    mean = std = None
    if normalize:
        mean64, std64 = _channel_stats(x_train)
        mean, std = mean64.astype(np.float32), std64.astype(np.float32)
        for x in (x_train, x_test):
            x -= mean
            x /= std
    return validate_dataset(
        Dataset(
            x_train=x_train,
            y_train=np.asarray(y_train, dtype=np.int32),
            x_test=x_test,
            y_test=np.asarray(y_test, dtype=np.int32),
            num_classes=num_classes,
            name=name,
            pixel_mean=mean,
            pixel_std=std,
        )
    )
