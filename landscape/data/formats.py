"""Byte-level readers of the two on-disk image formats: bytes in, uint8 arrays and labels out.

* IDX (MNIST): a big-endian header (magic number, then one 4-byte size per dimension) followed by
  the unsigned-byte data; files may be gzipped.
* CIFAR-10 binary: records of 3 073 bytes, one label byte then 3 x 32 x 32 CHW pixels.
* CIFAR-10 python: a pickled dict with ``data`` (N x 3 072 uint8, CHW rows) and ``labels``,
  read with :func:`landscape.data.safe_pickle.restricted_loads`.

Every malformed input raises :class:`DataError` naming the file (``where``) and what is expected.
Locating the files (folders, archives, downloads) is the loaders' job, not this module's.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from landscape.data.dataset import DataError
from landscape.data.safe_pickle import restricted_loads

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_CIFAR_SHAPE = (3, 32, 32)  # CHW, as stored
_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS
_CIFAR_CLASSES = 10


# --------------------------------------------------------------------------------------------
# IDX (MNIST)
# --------------------------------------------------------------------------------------------


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"'{path}' could not be read ({err}); is it a valid (gzipped) IDX file?"
        ) from err


def _parse_idx(raw: bytes, where: str, magic: int, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (big-endian header: magic, ``ndim`` sizes, then data)."""
    kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"{where}: truncated IDX header ({len(raw)} bytes, need {header})")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{where}: bad IDX magic number {found}; expected {magic} (MNIST {kind}, big-endian)"
        )
    dims = tuple(int.from_bytes(raw[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) < expected:
        raise DataError(
            f"{where}: truncated IDX file: the header promises {dims} ({expected} bytes),"
            f" found {len(raw)} bytes"
        )
    if len(raw) > expected:
        raise DataError(
            f"{where}: {len(raw) - expected} unexpected trailing bytes after the {dims} IDX data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


# --------------------------------------------------------------------------------------------
# CIFAR-10 batches
# --------------------------------------------------------------------------------------------


def _check_cifar_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= _CIFAR_CLASSES):
        bad = int(labels.max() if labels.max() >= _CIFAR_CLASSES else labels.min())
        raise DataError(f"{where}: label {bad} is out of range; CIFAR-10 labels are 0..9")


def _parse_cifar_binary(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """3073-byte records (label byte + CHW pixels) -> (NHWC uint8 pixels, labels)."""
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError(
            f"{where}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte CIFAR-10"
            " records (truncated file, or not the binary version)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_cifar_labels(labels, where)
    pixels = records[:, 1:].reshape(-1, *_CIFAR_SHAPE).transpose(0, 2, 3, 1)
    return pixels, labels


def _parse_cifar_pickle(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A python-version batch (dict with ``data`` N x 3072 uint8 CHW, ``labels``) -> NHWC."""
    batch = restricted_loads(raw, where)
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if data is None or labels is None:
        raise DataError(f"{where}: pickled dict lacks the 'data' and 'labels' entries")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR_PIXELS
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: 'labels' is not a list of integers ({err})") from err
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: 'labels' must be a list of integers, got {labels.dtype} array")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{where}: {data.shape[0]} images but {labels.shape[0]} labels")
    labels = labels.astype(np.int64)
    _check_cifar_labels(labels, where)
    return data.reshape(-1, *_CIFAR_SHAPE).transpose(0, 2, 3, 1), labels
