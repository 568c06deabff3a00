"""The engine's hooks in your own training loop: :func:`attach` → one call per step.

A researcher who keeps a hand-written loop gets the same hooks, schedules, carries, records and
sinks as :func:`landscape.engine.fit`, with one line before the optimizer update::

    hooks = attach(loss_fn, [StepProbeHook(step_sizes=etas, schedule=Schedule(10))], workdir="runs/mine")
    for step in range(steps):
        batch = next_batch(step)
        loss, grad = value_and_grad(loss_fn)(params, batch)
        hooks.step(step, params, batch, loss=loss, grad=grad)    # θ_t, batch t, before update t
        params, opt_state = update(params, grad, opt_state)
    hooks.close()

``loss_fn`` takes the forms of :func:`~landscape.engine.fit` (a plain loss, a
:class:`~landscape.engine.Stateful` one with ``state=`` at each call, or :func:`nnx_loss`'s).
Passing the step's ``loss`` and ``grad`` lets the Figure-4 probe reuse them (K + 1 gradients per
probed step, as in the engine); without them the hook computes them once. Each due hook's record
goes to ``workdir/{name}.jsonl`` when the step returns; a given ``loss`` goes to ``train.jsonl``
and a non-finite one is warned about once, with its step. The first call at step s drops records
from step s on (a loop restarted from a checkpoint at s repeats them), as :func:`fit` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from landscape import parallel
from landscape.config import ConfigError
from landscape.engine.hooks import Hook, RunContext, StepInputs, hook_key
from landscape.engine.objective import Objective, as_objective, check_params
from landscape.engine.rundir import RESERVED_NAMES
from landscape.engine.sinks import JsonlSink, Sinks, TensorBoardSink
from landscape.records import truncate_records

__all__ = ["Attached", "attach"]


class Attached:
    """Hooks attached to a hand-written loop (see :func:`attach`); call :meth:`step` every step."""

    def __init__(self, objective: Objective, hooks: Sequence[Hook], workdir: str | Path | None, *,
                 seed: int = 0, optimizer: Any = None, learning_rate: Any = None,
                 tensorboard: bool = False):
        names = [h.name for h in hooks]
        if len(set(names)) != len(names) or RESERVED_NAMES & set(names):
            raise ConfigError(f"hook names must be unique and not in {sorted(RESERVED_NAMES)}: {names}")
        self.objective, self.hooks, self.seed = objective, list(hooks), int(seed)
        self.path = None if workdir is None else Path(workdir).absolute()
        lr = learning_rate if callable(learning_rate) or learning_rate is None else (
            lambda step, v=float(learning_rate): v)
        context = RunContext(objective, optimizer, lr=lr)
        for hook in self.hooks:
            hook.setup(context)
        self._measure = {h.name: (jax.jit(h.measure) if h.jit else h.measure) for h in self.hooks}
        self._value_and_grad = jax.jit(jax.value_and_grad(objective.loss_fn("batch_stats")))
        self._probe_batch = jax.jit(objective.probe_batch)
        self.carries: dict[str, Any] | None = None  # the hooks' carries, made at the first due step
        self.diverged_at_step: int | None = None
        self._sinks = None
        self._tensorboard = tensorboard

    def _open(self, step: int) -> None:
        if self.path is None:
            self._sinks = Sinks()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for name in ["train"] + [h.name for h in self.hooks]:
            truncate_records(self.path / f"{name}.jsonl", before_step=step)
        sinks = [JsonlSink(self.path)]
        if self._tensorboard:
            sinks.append(TensorBoardSink(self.path / "tensorboard"))
        self._sinks = Sinks(*sinks)

    def step(self, step: int, params: Any, batch: Any, *, loss: Any = None, grad: Any = None,
             state: Any = None, opt_state: Any = None, key: jax.Array | None = None
             ) -> dict[str, Any]:
        """Run the hooks due at ``step`` on θ_t = ``params`` and ``batch``; returns
        ``{hook name: result}`` for the due hooks (host arrays), writing their records.

        ``loss``/``grad`` are L(θ_t) and ∇L(θ_t) on ``batch`` when the loop has them (both, or
        neither); ``state`` the model state of a :class:`Stateful` loss (default: its initial
        state); ``key`` its step key (default ``fold_in(key(seed), step)``); ``opt_state`` is
        handed to hooks that read it.
        """
        if self._sinks is None:
            check_params(params)
            self._open(step)
        if (loss is None) != (grad is None):
            raise ConfigError("pass both loss and grad of the step (or neither)")
        if loss is not None:
            self._record_loss(step, loss)
        due = [h for h in self.hooks if h.due(step)]
        if not due:
            return {}
        state = self.objective.state if state is None else state
        key = jax.random.fold_in(jax.random.key(self.seed), step) if key is None else key
        probe_batch = self._probe_batch(batch, state, key)
        if loss is None:
            loss, grad = self._value_and_grad(params, probe_batch)
        if self.carries is None:
            self.carries = {h.name: h.init(params, key=hook_key(self.seed, h.name)) for h in self.hooks}
        inputs = StepInputs(np.int32(step), params, state, opt_state, probe_batch, loss, grad)
        results = {}
        for hook in due:
            result, self.carries[hook.name] = self._measure[hook.name](self.carries[hook.name], inputs)
            results[hook.name] = parallel.fetch(result)
            self._sinks.write(hook.name, hook.record(step, results[hook.name]))
        return results

    def _record_loss(self, step: int, loss: Any) -> None:
        value = float(parallel.fetch(loss))
        self._sinks.write("train", {"step": int(step), "loss": value})
        if not np.isfinite(value) and self.diverged_at_step is None:
            self.diverged_at_step = int(step)
            warnings.warn(f"loss is {value} at step {step} (diverged)", RuntimeWarning, stacklevel=3)

    def close(self) -> None:
        """Flush and close the record files."""
        if self._sinks is not None:
            self._sinks.close()
            self._sinks = None

    def __enter__(self) -> "Attached":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def attach(loss_fn: Callable | Objective, hooks: Sequence[Hook], *, workdir: str | Path | None = None,
           seed: int = 0, optimizer: Any = None, learning_rate: Any = None,
           tensorboard: bool = False) -> Attached:
    """Hooks for a hand-written loop: ``attached.step(t, params, batch, loss=, grad=)`` each step.

    Args:
        loss_fn: the loop's loss in one of :func:`~landscape.engine.fit`'s forms.
        hooks: the engine's hooks (``StepProbeHook``, ``CurvatureHook``, your own).
        workdir: where records go (``{hook name}.jsonl``, ``train.jsonl``); None keeps none.
        seed: the root of the hooks' keys (and of a Stateful loss's step key).
        optimizer: the loop's optax transformation, for hooks that read it (``direction="update"``).
        learning_rate: the loop's learning rate (a float or a schedule), for hooks that read it.
        tensorboard: also write the records for TensorBoard.

    Example:
        >>> with attach(loss_fn, [StepProbeHook(step_sizes=[0.05, 0.1])], workdir="runs/loop") as hooks:
        ...     for t in range(100):
        ...         loss, grad = jax.value_and_grad(loss_fn)(params, data(t))
        ...         hooks.step(t, params, data(t), loss=loss, grad=grad)
        ...         params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grad)
    """
    return Attached(as_objective(loss_fn), hooks, workdir, seed=seed, optimizer=optimizer,
                    learning_rate=learning_rate, tensorboard=tensorboard)
