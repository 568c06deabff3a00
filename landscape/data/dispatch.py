"""Load a dataset by name: the one entry point the CLI and the engine use (:func:`load_dataset`)."""

from __future__ import annotations

import os

from landscape.choices import DATA_FILES_DATASETS
from landscape.data.cifar10 import _CIFAR_HINT, load_cifar10
from landscape.data.dataset import DataError, Dataset
from landscape.data.download import _require_dir
from landscape.data.mnist import _MNIST_HINT, load_mnist
from landscape.data.mnist5k import load_mnist5k
from landscape.data.synthetic import make_synthetic
from landscape.data.text import DEFAULT_TEXT_CONTEXT, load_text

DATASET_NAMES = DATA_FILES_DATASETS

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
