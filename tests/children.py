"""Child processes that run compute-heavy user code (examples, README blocks).

The suite compiles for compile speed (:data:`FAST_COMPILE`, set by conftest.py): right for its
tiny models, where compilation is the time, but a child that runs many steps of a real-sized
model (batch 128 of VGG) runs several times slower that way. :func:`optimised_env` is the
environment such a child gets: the suite's, minus those flags (and with the repository on
``PYTHONPATH``), so the child runs as a user's process does.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: XLA:CPU flags the suite compiles with (conftest.py adds each one ``XLA_FLAGS`` does not name):
#: LLVM optimisation off, and the loop emitters instead of the MLIR fusion emitters. Measured on
#: 2 cores, cold: ``landscape reproduce spectrum`` tiny 39.6 s with neither, 26.2 s with the first,
#: 16.9 s with both; tests/test_engine.py + test_curvature.py 57.0 → 43.0 s (70 → 44 s CPU) from
#: the second. Machine code is slower either way (examples/attach_probes.py: 26 s optimised,
#: 47 s with the loop emitters, 67 s with both), hence :func:`optimised_env`.
FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def flag_name(flag: str) -> str:
    """``--name=value`` → ``name``."""
    return flag.lstrip("-").split("=")[0]


def _flags_without(*names: str) -> str:
    """``XLA_FLAGS`` without the flags called ``names``."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                    if flag_name(f) not in names)


def child_env(*, drop: tuple[str, ...]) -> dict[str, str]:
    """The suite's environment for a child process: the repository on ``PYTHONPATH`` and
    ``XLA_FLAGS`` without the flags called ``drop``."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = _flags_without(*drop)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


_OPTIMISED = tuple(flag_name(f) for f in FAST_COMPILE)


def optimised_flags() -> str:
    """``XLA_FLAGS`` without the suite's :data:`FAST_COMPILE` flags."""
    return _flags_without(*_OPTIMISED)


def optimised_env() -> dict[str, str]:
    """The suite's environment for a child that runs user code at full optimisation."""
    return child_env(drop=_OPTIMISED)
