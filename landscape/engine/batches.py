"""Where a run's minibatches come from: ``data(step) -> batch``, arrays in memory, or an indexable dataset.

:func:`as_batch_fn` turns each form :func:`landscape.engine.fit` accepts into one function of the
step, so that step t's minibatch is a function of t alone and a resumed run repeats an
uninterrupted one:

- a **callable** ``data(step) -> batch`` (any pytree: int tokens, masks, images), used as given;
- a **pytree of arrays** with a common leading axis N, with ``batch_size=B``: step t takes the
  examples ``landscape.data.batch_indices(N, t, B, seed=seed)`` of every leaf — epoch
  e = t // ⌊N/B⌋ visits ``np.random.default_rng([seed, e]).permutation(N)`` in order, drop-last;
- an **indexable dataset of batches** (``__getitem__`` and ``__len__``, e.g. a grain
  ``MapDataset`` after ``.batch(B)``, or a list of batches): step t takes ``data[t % len(data)]``.

:class:`BatchCheck` holds the first batch's structure, shapes and dtypes and names the first leaf
of any later batch that differs; :func:`fingerprint` is the CRC32 of a batch's bytes, which the
engine records at every checkpoint to refuse a resume whose data would differ.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from landscape.choices import check_int
from landscape.config import ConfigError
from landscape.data import DataError, batch_indices

__all__ = ["BatchCheck", "as_batch_fn", "data_error", "fingerprint"]


def _is_dataset(data: Any) -> bool:
    return (hasattr(data, "__getitem__") and hasattr(data, "__len__")
            and not isinstance(data, (dict, tuple, np.ndarray, jax.Array)))


def _array_batches(data: Any, batch_size: int, seed: int) -> Callable[[int], Any]:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ConfigError("data: an empty pytree of arrays")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ConfigError(f"data: every array needs the same leading (example) axis; got sizes "
                          f"{sorted(str(s) for s in sizes)}")
    n = sizes.pop()
    if batch_size > n:
        raise ConfigError(f"batch_size={batch_size} exceeds the {n} examples in data")
    arrays = jax.tree.map(np.asarray, data)

    def batch(step: int) -> Any:
        idx = batch_indices(n, step, batch_size, seed=seed)
        return jax.tree.map(lambda a: a[idx], arrays)

    return batch


def as_batch_fn(data: Any, *, batch_size: int | None = None, seed: int = 0) -> Callable[[int], Any]:
    """``batch(step)`` for any data form of :func:`landscape.engine.fit` (see the module docstring).

    Example:
        >>> batch = as_batch_fn({"x": np.zeros((10, 3)), "y": np.arange(10)}, batch_size=4)
        >>> batch(0)["x"].shape
        (4, 3)
    """
    if batch_size is not None:
        check_int("batch_size", batch_size, error=ConfigError)
        if callable(data):
            raise ConfigError("batch_size applies to arrays in memory; data(step) and datasets of "
                              "batches give whole minibatches")
        return _array_batches(data, batch_size, seed)
    if callable(data):
        return data
    if _is_dataset(data):
        if len(data) == 0:
            raise ConfigError("data: an empty dataset")
        return lambda step: data[step % len(data)]
    raise ConfigError("data must be a function data(step) -> batch, arrays in memory with "
                      "batch_size=, or an indexable dataset of batches (e.g. a grain MapDataset); "
                      f"got {type(data).__name__} without batch_size")


def _signature(batch: Any) -> tuple[Any, list[tuple[str, tuple[int, ...], str]]]:
    paths, treedef = jax.tree_util.tree_flatten_with_path(batch)
    return treedef, [(jax.tree_util.keystr(p), tuple(np.shape(x)),
                      str(x.dtype if hasattr(x, "dtype") else np.result_type(x))) for p, x in paths]


class BatchCheck:
    """Refuses a minibatch whose structure, shapes or dtypes differ from the first one.

    Example:
        >>> check = BatchCheck({"x": np.zeros((4, 3))})
        >>> check(5, {"x": np.zeros((4, 2))})
        Traceback (most recent call last):
        landscape.config.ConfigError: data(5) differs from data's first batch at ['x']: ...
    """

    def __init__(self, first: Any):
        self.treedef, self.leaves = _signature(first)

    def __call__(self, step: int, batch: Any) -> None:
        treedef, leaves = _signature(batch)
        if treedef != self.treedef:
            raise ConfigError(f"data({step}) has another structure than data's first batch: "
                              f"{treedef} vs {self.treedef}")
        for (path, shape, dtype), (_, shape0, dtype0) in zip(leaves, self.leaves):
            if (shape, dtype) != (shape0, dtype0):
                raise ConfigError(f"data({step}) differs from data's first batch at {path}: "
                                  f"{dtype}{list(shape)} vs {dtype0}{list(shape0)} (every step "
                                  "needs the same shapes; pad or drop the last batch)")


def fingerprint(batch: Any) -> str:
    """The CRC32 (hex) of every leaf's bytes, in tree order: equal batches, equal fingerprints."""
    crc = 0
    for leaf in jax.tree.leaves(batch):
        a = np.ascontiguousarray(jax.device_get(leaf))
        crc = zlib.crc32(str((a.shape, a.dtype.str)).encode(), crc)
        crc = zlib.crc32(a.tobytes(), crc)
    return f"{crc:08x}"


def data_error(e: Exception, step: int) -> ConfigError:
    """A user's ``data(step)`` failure as one ConfigError line."""
    if isinstance(e, (ConfigError, DataError)):
        return ConfigError(str(e))
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return ConfigError(f"data({step}) failed: {type(e).__name__}: {detail}")
