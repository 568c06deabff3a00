"""MNIST (LeCun et al. 1998): 60 000 train / 10 000 test 28x28 grey images from the four IDX files.

:func:`load_mnist` finds the files (plain or ``.gz``) in a folder, downloads the missing ones when
asked (each checked against ``MNIST_MD5``), parses them (:mod:`landscape.data.formats`) and
returns a standardized :class:`Dataset`. The offline 5 000-image subset is
:func:`landscape.data.mnist5k.load_mnist5k`.

The download source is read when a download starts, so tests may point ``MNIST_URL`` (and
``MNIST_MD5``) of this module at a local ``file://`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from landscape.data.dataset import DataError, Dataset
from landscape.data.download import _download, _prepare_root
from landscape.data.formats import (
    _IDX_IMAGES_MAGIC,
    _IDX_LABELS_MAGIC,
    _parse_idx,
    _read_maybe_gzip,
)
from landscape.data.images import _make_image_dataset

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

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


def _mnist_paths(root: Path, download: bool) -> dict[str, Path]:
    """The path of each of the four files (by base name), downloading missing ones if allowed."""
    bases = [base for pair in _MNIST_FILES.values() for base in pair]
    found = {base: _find_mnist_file(root, base) for base in bases}
    missing = [base for base, path in found.items() if path is None]
    if missing and not download:
        problem = (
            f"'{root}' lacks {', '.join(missing)}"
            if root.is_dir()
            else f"data directory '{root}' does not exist"
        )
        raise DataError(f"MNIST: {problem}; {_MNIST_HINT}")
    paths = {}
    for base, path in found.items():
        if path is None:
            name = f"{base}.gz"
            path = root / name
            _download(MNIST_URL + name, path, MNIST_MD5[name])
        paths[base] = path
    return paths


def _read_mnist_split(
    split: str, images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """One split's ``(N, H, W, 1)`` uint8 images and its labels; checks counts and labels 0..9."""
    images = _parse_idx(_read_maybe_gzip(images_path), str(images_path), _IDX_IMAGES_MAGIC, ndim=3)
    labels = _parse_idx(_read_maybe_gzip(labels_path), str(labels_path), _IDX_LABELS_MAGIC, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST {split}: '{images_path}' has {images.shape[0]} images but"
            f" '{labels_path}' has {labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= _MNIST_CLASSES:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} is out of range; MNIST labels are 0..9"
        )
    return images[..., None], labels


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
    paths = _mnist_paths(root, download)
    splits = {
        split: _read_mnist_split(split, paths[images_base], paths[labels_base])
        for split, (images_base, labels_base) in _MNIST_FILES.items()
    }
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise DataError(
            f"MNIST: train images are {splits['train'][0].shape[1:3]} but test images are"
            f" {splits['test'][0].shape[1:3]}"
        )
    return _make_image_dataset(
        "mnist", *splits["train"], *splits["test"], _MNIST_CLASSES, normalize
    )
