"""Where raw files come from: a given folder, the download cache, or a checksummed download.

A download streams into a temporary file next to its destination and is renamed into place only
after its md5 matches, so an interrupted or corrupted download never leaves a file that looks
complete. Folders are never guessed silently: without one, a loader either uses the cache
(:func:`default_cache_dir`, only when downloading) or raises :class:`DataError` saying what to pass.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from landscape.data.dataset import DataError

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


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
    """``data_dir`` as a path (``~`` expanded); a loader called without one raises ``hint``."""
    if data_dir is None:
        raise DataError(f"{what} needs a data directory: {hint}")
    return Path(data_dir).expanduser()


def default_cache_dir(name: str) -> Path:
    """Where downloads go when no folder is given: ``$LANDSCAPE_DATA/<name>`` or
    ``~/.cache/landscape/<name>``."""
    root = os.environ.get("LANDSCAPE_DATA") or Path.home() / ".cache" / "landscape"
    return Path(root) / name


def _require_dir(
    name: str, data_dir: str | os.PathLike[str] | None, hint: str, download: bool = False
) -> str | os.PathLike[str]:
    """``data_dir``, or the created cache folder of ``name`` when downloading without one."""
    if data_dir is None:
        if download:
            folder = default_cache_dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        raise DataError(f"dataset '{name}' needs a data directory; {hint}")
    return data_dir
