"""Restricted unpickling for the CIFAR-10 python version: numpy arrays and plain containers only.

The official ``cifar-10-python.tar.gz`` batches are pickles. :func:`restricted_loads` reads them
with an unpickler whose ``find_class`` knows only the few callables a pickled numpy array needs, so
a tampered file raises :class:`DataError` instead of running code.
"""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any

import numpy as np

from landscape.data.dataset import DataError


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


def restricted_loads(raw: bytes, where: str) -> Any:
    """Unpickle ``raw`` (read from ``where``) allowing only numpy arrays, dtypes and containers.

    Args:
      raw: the pickle's bytes (protocol 2 or later; ``bytes`` keys stay ``bytes``).
      where: the file name used in error messages.

    Returns:
      The unpickled object.

    Raises:
      DataError: the pickle names anything outside the allow-list, or is not a readable pickle.

    Example:
      >>> restricted_loads(pickle.dumps({b"labels": [1, 2]}, protocol=2), "batch")
      {b'labels': [1, 2]}
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), where).load()
    except DataError:
        raise
    except Exception as err:  # any failure inside unpickling means a bad file
        raise DataError(
            f"{where}: not a readable CIFAR-10 python pickle ({type(err).__name__}: {err})"
        ) from err
