"""Shared fixtures and the suite's strict JAX settings.

- Rank promotion raises: ``(B, C) + (C,)``-style implicit broadcasting must be written out
  (``x[None, :]``) — the equinox convention; it catches shape bugs that broadcasting would hide.
- Work is handed to the two pytest-xdist workers by scope (``--dist loadscope``, see
  pyproject.toml): a whole file (its module fixtures are built once), or a test class — the
  suite's only classes are in tests/test_readme_commands.py, one per README command (a process of
  its own), so the commands spread over both workers. The longest files run first, so a long one
  left to the end cannot keep one worker busy while the other idles.
- A persistent compilation cache (``.jax_cache/`` in the repository, git-ignored; set in the
  environment too, so child processes share it): identical
  programs built by different tests (the same tiny model through a new ``make_loss_fn``) compile
  once per machine instead of once per test. Programs that compile in 0.1 s or more are kept
  (with optimisation off, below, most of the suite's programs take 0.1–0.5 s: the fast tier took
  221 s cold at 0.1 against 232 s at 0.5).
- Compiled for compile speed (``tests/children.FAST_COMPILE``: LLVM optimisation off and the
  loop emitters instead of XLA:CPU's fusion emitters, each unless ``XLA_FLAGS`` already names
  it): on the suite's tiny models compilation is most of a test's time and the optimised machine
  code buys nothing (``landscape reproduce spectrum`` on its tiny setting: 39.6 s → 16.9 s on 2
  cores; the numbers are in children.py). Set here, before JAX starts a backend, they reach the
  child processes (README commands, notebook kernels, the 4-device checks) through the
  environment. The HLO passes are unchanged; results differ from an optimised build only by
  rounding (no fused multiply-add: float32 records agree to ~1e-6 relative), which is inside
  every tolerance here, and each comparison runs both sides the same way. Unoptimised code runs
  slower, so user code that runs real-sized models for many steps (the README's probe example,
  examples/attach_probes.py) runs in a child process with LLVM's optimisation on
  (``tests/children.runtime_env``).
"""

import os
from pathlib import Path

from children import FAST_COMPILE, flag_name  # no JAX there

_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(
    [*_flags, *(f for f in FAST_COMPILE if flag_name(f) not in map(flag_name, _flags))])
# the cache settings, in the environment too: every child process (README commands, notebook
# kernels, the 4-device checks) shares them
_CACHE = {"jax_compilation_cache_dir": str(Path(__file__).resolve().parents[1] / ".jax_cache"),
          "jax_persistent_cache_min_compile_time_secs": 0.1,
          "jax_persistent_cache_min_entry_size_bytes": 0}
for _name, _value in _CACHE.items():
    os.environ[_name.upper()] = str(_value)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
for _name, _value in _CACHE.items():
    jax.config.update(_name, _value)


@pytest.fixture(scope="module")
def x64():
    """float64 for one module (``pytestmark = pytest.mark.usefixtures("x64")``); restored after."""
    with jax.enable_x64(True):
        yield


#: Files that take half a minute or more on 2 cores (child processes, notebooks, end-to-end
#: runs), longest first.
_LONGEST_FIRST = ("test_readme_commands.py", "test_parallel.py", "test_examples.py",
                  "test_reliability.py", "test_notebooks.py", "test_readme.py", "test_figures.py",
                  "test_curvature.py", "test_cli.py", "test_analyze.py", "test_exp_landscapes.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep order
