"""Deterministic, random-access minibatches: the batch of global step ``t`` is a function of
``(seed, t)`` only, so a run resumed from a checkpoint at step ``t`` sees exactly the batches of an
uninterrupted run (Santurkar et al. 2018, App. A.1: plain SGD, batch 128, drop-last epochs).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator

import numpy as np

from landscape.choices import check_int
from landscape.data.dataset import DataError, Dataset

def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of full minibatches per epoch (the last partial batch is dropped).

    Example:
      >>> steps_per_epoch(50_000, 128)
      390
    """
    num_examples = check_int("num_examples", num_examples, error=DataError)
    batch_size = check_int("batch_size", batch_size, error=DataError)
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
    num_examples = check_int("num_examples", num_examples, error=DataError)
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
