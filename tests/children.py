"""Child processes that run compute-heavy user code (examples, notebooks, README blocks).

The suite compiles with LLVM optimisation off (conftest.py): right for its tiny models, where
compilation is the time, but a child that runs many steps of a real-sized model (batch 128 of
VGG) runs several times slower that way. :func:`optimised_env` is the environment such a child
gets: the suite's, minus that flag (and with the repository on ``PYTHONPATH``), so the child runs
as a user's process does.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNOPTIMISED = "--xla_backend_optimization_level=0"


def _flags_without(fragment: str) -> str:
    """``XLA_FLAGS`` without the flags that contain ``fragment``."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if fragment not in f)


def child_env(*, drop_flag: str) -> dict[str, str]:
    """The suite's environment for a child process: the repository on ``PYTHONPATH`` and
    ``XLA_FLAGS`` without the flags that contain ``drop_flag``."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = _flags_without(drop_flag)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def optimised_flags() -> str:
    """``XLA_FLAGS`` without the suite's optimisation-off flag."""
    return _flags_without(UNOPTIMISED)


def optimised_env() -> dict[str, str]:
    """The suite's environment for a child that runs user code at full optimisation."""
    return child_env(drop_flag=UNOPTIMISED)
