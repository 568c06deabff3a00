"""The :class:`Dataset` convention every loader returns, its checks, and :class:`DataError`.

Images are ``float32`` NHWC arrays and labels ``int32`` in ``[0, num_classes)`` (see the package
docstring, :mod:`landscape.data`); :func:`validate_dataset` checks exactly that. The argument
check ``_open_fraction`` is shared by the loaders of this package.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

_CHUNK_ROWS = 2048  # images per chunk when computing statistics / finiteness


class DataError(ValueError):
    """A dataset could not be loaded or is malformed; the message says what and what is accepted."""


class Dataset(NamedTuple):
    """An image-classification dataset in NHWC ``float32`` with ``int32`` labels (or, from
    :func:`load_text`, int32 token windows ``x`` (N, T) with next-token targets ``y`` (N, T)).

    Attributes:
      x_train: ``(N_train, H, W, C)`` float32 images (see the module docstring for scaling).
      y_train: ``(N_train,)`` int32 labels in ``[0, num_classes)``.
      x_test: ``(N_test, H, W, C)`` float32 images, normalized with the training statistics.
      y_test: ``(N_test,)`` int32 labels.
      num_classes: number of classes.
      name: dataset name, e.g. ``"cifar10"``.
      pixel_mean: ``(C,)`` float32 per-channel training mean subtracted (``[0, 1]`` pixel units),
        or ``None`` when the images were not standardized.
      pixel_std: ``(C,)`` float32 per-channel training standard deviation divided by, or ``None``.

    Example:
      >>> ds = make_synthetic(num_train=20, num_test=10, input_shape=(4, 4, 3), num_classes=2)
      >>> ds.input_shape
      (4, 4, 3)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    pixel_mean: np.ndarray | None = None
    pixel_std: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])


def _open_fraction(value: Any, what: str) -> float:
    """``value`` as a float in the open interval ``(0, 1)``, else a :class:`DataError`."""
    if not 0.0 < float(value) < 1.0:
        raise DataError(f"{what} must be in (0, 1), got {value!r}")
    return float(value)


def _all_finite(x: np.ndarray) -> bool:
    """``np.isfinite(x).all()`` without a full-size boolean temporary."""
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        if not np.isfinite(x[start : start + _CHUNK_ROWS]).all():
            return False
    return True


def _check_split(name: str, split: str, x: Any, y: Any, num_classes: int) -> None:
    """One split of :func:`validate_dataset`: float32 NHWC images, in-range integer labels."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
        desc = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x)
        raise DataError(f"{name}: x_{split} must be a float32 (N, H, W, C) array, got {desc}")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        desc = f"{y.dtype} array of shape {y.shape}" if isinstance(y, np.ndarray) else type(y)
        raise DataError(f"{name}: y_{split} must be a 1-D integer label array, got {desc}")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{name}: x_{split} has {x.shape[0]} images but y_{split} has {y.shape[0]} labels"
        )
    if x.shape[0] == 0:
        raise DataError(f"{name}: the {split} split is empty")
    if min(x.shape[1:]) < 1:
        raise DataError(f"{name}: x_{split} has an empty image shape {x.shape[1:]}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        index = int(np.flatnonzero(y == bad)[0])
        raise DataError(
            f"{name}: y_{split}[{index}] = {bad} is out of range;"
            f" labels must be in [0, {num_classes})"
        )
    if not _all_finite(x):
        index = next(i for i in range(x.shape[0]) if not np.isfinite(x[i]).all())
        raise DataError(f"{name}: x_{split}[{index}] contains NaN or Inf values")


def validate_dataset(ds: Dataset) -> Dataset:
    """Check that a dataset follows the :class:`Dataset` convention; return it unchanged.

    Checks: ``num_classes`` is a positive int; each split has float32 NHWC images and a 1-D
    integer label vector of the same (non-zero) length; train and test images have the same
    ``(H, W, C)``; every image value is finite; every label is in ``[0, num_classes)``.

    Args:
      ds: the dataset to check.

    Returns:
      ``ds`` itself, so loaders can ``return validate_dataset(Dataset(...))``.

    Raises:
      DataError: naming the first problem found.

    Example:
      >>> ds = validate_dataset(make_synthetic(num_train=8, num_test=4))
    """
    name = getattr(ds, "name", "dataset")
    k = ds.num_classes
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"{name}: num_classes must be a positive int, got {k!r}")
    for split in ("train", "test"):
        _check_split(name, split, getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}"), k)
    train_shape, test_shape = ds.x_train.shape[1:], ds.x_test.shape[1:]
    if train_shape != test_shape:
        raise DataError(f"{name}: train images are {train_shape} but test images are {test_shape}")
    return ds
