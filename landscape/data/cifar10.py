"""CIFAR-10 (Krizhevsky 2009): 50 000 train / 10 000 test 32x32x3 images, 10 classes.

:func:`load_cifar10` finds the data under a folder (binary or python version, extracted or as the
official archive), downloads the binary archive when asked, parses the batches
(:mod:`landscape.data.formats`) and returns a standardized :class:`Dataset`.

The download source is read when a download starts, so tests may point ``CIFAR10_URL`` (and
``CIFAR10_MD5``) of this module at a local ``file://`` archive.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from landscape.data.dataset import DataError, Dataset
from landscape.data.download import _download, _prepare_root
from landscape.data.formats import _CIFAR_CLASSES, _parse_cifar_binary, _parse_cifar_pickle
from landscape.data.images import _make_image_dataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_PYTHON_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz (not downloaded)

_CIFAR_DIRS = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}
_CIFAR_ARCHIVES = {"bin": "cifar-10-binary.tar.gz", "py": "cifar-10-python.tar.gz"}
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


def _locate_cifar(root: Path, download: bool) -> tuple[str, Path]:
    """``(format, folder or archive)`` under ``root``, downloading the binary archive if allowed."""
    source = _find_cifar(root) if root.is_dir() else None
    if source is not None:
        return source
    if not download:
        problem = (
            f"no CIFAR-10 data in '{root}'"
            if root.is_dir()
            else f"data directory '{root}' does not exist"
        )
        raise DataError(f"{problem}; {_CIFAR_HINT}")
    archive = root / _CIFAR_ARCHIVES["bin"]
    _download(CIFAR10_URL, archive, CIFAR10_MD5)
    return "bin", archive


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
    fmt, path = _locate_cifar(root, download)
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
