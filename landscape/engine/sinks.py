"""Where records go: one interface, the JSON-lines files as the source of truth, TensorBoard optional.

A sink takes ``write(name, record)`` — ``name`` is the record stream (``train``, ``eval``,
``probes``, a hook's name) and ``record`` a JSON-able dict with an integer ``step``.

- :class:`JsonlSink` appends each record to ``workdir/{name}.jsonl`` (flushed and fsync'ed per line;
  see :mod:`landscape.records`). Everything a figure or summary reads comes from these files.
- :class:`TensorBoardSink` mirrors every finite scalar field as ``{name}/{field}`` (and dict-valued
  fields one level down, e.g. ``probes/grad_norm_per_layer/blocks/0/proj/kernel``) into
  ``workdir/tensorboard/`` so probes appear live in ``tensorboard --logdir runs/``. Needs the
  optional ``tensorboardX`` package (``pip install "jax-landscape[tensorboard]"``). After a resume,
  steps between the checkpoint and the interruption are written twice; TensorBoard shows the later.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from landscape.records import RecordWriter

__all__ = ["JsonlSink", "RecordSink", "Sinks", "TensorBoardSink"]


class RecordSink(Protocol):
    def write(self, name: str, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """``workdir/{name}.jsonl`` per stream (opened on first write)."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir)
        self._writers: dict[str, RecordWriter] = {}

    def write(self, name: str, record: Mapping[str, Any]) -> None:
        if name not in self._writers:
            self._writers[name] = RecordWriter(self.workdir / f"{name}.jsonl")
        self._writers[name].write(record)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _scalars(record: Mapping[str, Any], prefix: str):
    for key, value in record.items():
        if key in ("step", "tag"):
            continue
        if isinstance(value, Mapping):
            yield from _scalars(value, f"{prefix}/{key}")
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            yield f"{prefix}/{key}", float(value)


class TensorBoardSink:
    """Scalar fields of every record as TensorBoard summaries under ``logdir``."""

    def __init__(self, logdir: str | os.PathLike):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # pragma: no cover - depends on the environment
            from landscape.config import ConfigError

            raise ConfigError("the TensorBoard writer needs tensorboardX: "
                              "pip install 'jax-landscape[tensorboard]'") from None
        self._writer = SummaryWriter(str(logdir))

    def write(self, name: str, record: Mapping[str, Any]) -> None:
        step = int(record["step"])
        for tag, value in _scalars(record, name):
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class Sinks:
    """Fans each record out to several sinks; a context manager that closes them."""

    def __init__(self, *sinks: RecordSink):
        self.sinks = sinks

    def write(self, name: str, record: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(name, record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> "Sinks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
