"""Generated data: a learnable synthetic image-classification task and the deep-linear-network
regression data of Santurkar et al. (2018, App. A.1). Both are functions of a seed only, offline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from landscape.choices import check_int
from landscape.data.dataset import DataError, Dataset, validate_dataset

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
    num_train = check_int("num_train", num_train, error=DataError)
    num_test = check_int("num_test", num_test, error=DataError)
    num_classes = check_int("num_classes", num_classes, error=DataError)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise DataError(f"input_shape must be (H, W, C), got {input_shape!r}")
    shape = tuple(check_int("input_shape entries", d, error=DataError) for d in shape)
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
    num_samples = check_int("num_samples", num_samples, error=DataError)
    dim = check_int("dim", dim, error=DataError)
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise DataError(f"dtype must be a floating dtype, got {dtype!r}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim)).astype(dtype)
    x = rng.standard_normal((num_samples, dim)).astype(dtype)
    y = (x.astype(np.float64) @ a.astype(np.float64).T).astype(dtype)
    return x, y, a
