"""Child processes that run user code (examples, README blocks) and their XLA flags.

The suite compiles for compile speed (:data:`FAST_COMPILE`, set by conftest.py): right for its
tiny models, where compilation is the time. A child that runs a real-sized model for many steps
(a batch of 128 through VGG) runs slower without LLVM's optimisation, so :func:`runtime_env`
gives such a child the suite's environment with that flag dropped (and the repository on
``PYTHONPATH``); the loop emitters stay, measured as fast or faster there too.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: XLA:CPU flags the suite compiles with (conftest.py adds each one ``XLA_FLAGS`` does not name):
#: LLVM optimisation off, and the loop emitters instead of the MLIR fusion emitters. Measured on
#: 2 cores, cold: ``landscape reproduce spectrum`` tiny 39.6 s with neither, 26.2 s with the first,
#: 16.9 s with both; tests/test_engine.py + test_curvature.py 57.0 → 43.0 s (70 → 44 s CPU) from
#: the second. Where run time counts (:func:`runtime_env`), CPU seconds cold with neither / both /
#: the loop emitters alone: the README's VGG-11 probe example 46.0 / 35.9 / 32.0,
#: examples/attach_probes.py (60 steps, 12 probes) 37.5 / 101.2 / 33.9, examples/custom_model.py
#: 13.6 / 4.7 / 11.2 (so it keeps both).
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


def runtime_env() -> dict[str, str]:
    """The suite's environment for a child whose run time is more than compilation: LLVM
    optimisation back on, the loop emitters kept (numbers in :data:`FAST_COMPILE`'s comment)."""
    return child_env(drop=(flag_name(FAST_COMPILE[0]),))
