"""A :func:`~landscape.engine.fit` run rebuilt from its folder: the recorded ``setup`` factory,
called again, gives the loss, the parameters' structure, the optimizer and the data.

``config.json`` of a ``fit`` run holds ``{"engine": "fit", "setup": {"factory": "module:function",
"kwargs": {...}}, "seed", "batch_size", ...}``; :func:`rebuild` imports the factory, calls it with
its arguments and returns a :class:`SetupRun` — what ``landscape analyze`` needs to probe every
checkpoint on the run's own minibatches (``data(t)``, the step key ``fold_in(key(seed), t)``).
A run without a recorded setup can be rebuilt by passing the factory (or its four results) again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax

from landscape.config import ConfigError
from landscape.engine.batches import as_batch_fn
from landscape.engine.objective import Objective, as_objective
from landscape.engine.rundir import restore_checkpoint
from landscape.factories import load_callable

__all__ = ["SetupRun", "is_fit_run", "rebuild"]


def is_fit_run(identity: Any) -> bool:
    """True for the ``config.json`` of a :func:`~landscape.engine.fit` run."""
    return isinstance(identity, dict) and identity.get("engine") == "fit"


class SetupRun(NamedTuple):
    """A fit run's pieces, rebuilt: the loss, θ₀ (the factory's initialisation), the optimizer,
    ``batch(t)``, the run's seed and whether it ran in float64."""

    objective: Objective
    params: Any
    optimizer: Any
    batch: Callable[[int], Any]
    seed: int
    x64: bool
    run_dir: Path

    def arithmetic(self) -> contextlib.AbstractContextManager:
        return jax.enable_x64(True) if self.x64 else contextlib.nullcontext()

    def probe_batch(self, index: int, state: Any) -> Any:
        """The probes' batch for minibatch ``index`` at model state ``state``."""
        key = jax.random.fold_in(jax.random.key(self.seed), index)
        return self.objective.probe_batch(self.batch(index), state, key)

    def restore(self, step: int | None = None) -> tuple[Any, Any]:
        """``(params, state)`` of checkpoint ``step`` (None: the latest)."""
        target = {"params": self.params, "state": self.objective.state,
                  "opt_state": self.optimizer.init(self.params)}
        restored = restore_checkpoint(self.run_dir, target, step)
        return restored["params"], restored["state"]


def rebuild(run_dir: str | Path, setup: str | Callable[..., Sequence[Any]] | Sequence[Any] | None = None
            ) -> SetupRun:
    """The :class:`SetupRun` of a fit run folder.

    ``setup`` overrides the recorded factory: a ``"module:function"`` name or function (called with
    the recorded ``kwargs``), or its result ``(loss_fn, params, optimizer, data)`` itself.
    """
    run_dir = Path(run_dir).absolute()
    identity = json.loads((run_dir / "config.json").read_text())
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    recorded = identity.get("setup") or {}
    kwargs = recorded.get("kwargs", {})
    if setup is None:
        if not recorded:
            raise ConfigError(f"{run_dir} was trained by fit without setup=: pass the setup again "
                              "(analyze(..., setup=...)) or train with fit(..., setup='module:function')")
        setup = recorded["factory"]
    with (jax.enable_x64(True) if info.get("x64") else contextlib.nullcontext()):
        if isinstance(setup, str):
            setup = load_callable(setup, "setup")
        pieces = setup(**kwargs) if callable(setup) else setup
        if not isinstance(pieces, Sequence) or len(pieces) != 4:
            raise ConfigError("setup must return (loss_fn, params, optimizer, data)")
        loss_fn, params, optimizer, data = pieces
        batch = as_batch_fn(data, batch_size=identity.get("batch_size"), seed=identity.get("seed", 0))
    return SetupRun(as_objective(loss_fn), params, optimizer, batch, int(identity.get("seed", 0)),
                    bool(info.get("x64")), run_dir)
