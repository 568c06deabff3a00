"""The run folder: configuration, run info, checkpoints, resume — all of the loop's file I/O.

``workdir`` holds ``config.json`` (the run's identity: a :class:`~landscape.config.TrainConfig`, or
what :func:`landscape.engine.fit` was given), ``run.json`` (what the
run measured about itself: ``final_step``, ``diverged_at_step``, ``seconds``, ``devices`` and the
model's ``input_shape``/``num_classes`` so that :func:`restore_model` needs no dataset), the record
files, and ``checkpoints/`` (Orbax: ``params``, ``state``, ``opt_state`` and the hooks' carries).

In a multi-process run every process checkpoints (Orbax writes each array once) and only the
writer (process 0) writes ``config.json``, ``run.json`` and the records.

Policy: a folder holding a run with a different configuration is refused; a folder with the same
configuration resumes from its latest checkpoint, and records past that checkpoint are dropped
(they are recomputed, so nothing is duplicated); a folder whose records go past step 0 but whose
checkpoints are gone is refused rather than wiped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from landscape.config import ConfigError
from landscape.records import truncate_records, write_json_atomic

__all__ = ["RunDir", "RunExistsError", "RESERVED_NAMES", "restore", "restore_checkpoint"]

#: Record streams the loop writes itself; hooks may not use these names.
RESERVED_NAMES = frozenset({"train", "eval", "run", "config"})


class RunExistsError(RuntimeError):
    """``workdir`` holds a run with a different configuration (or an unreadable one)."""


def _read_json(path: Path, workdir: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise RunExistsError(f"{path} is unreadable; refusing to reuse {workdir}") from None


class RunDir:
    """One run's folder. :meth:`check` reads only; nothing is written before :meth:`create`."""

    def __init__(self, workdir: str | os.PathLike, identity: dict[str, Any], *,
                 keep_checkpoints: int = 2, writer: bool = True):
        self.path = Path(workdir).absolute()
        self.identity = identity  # what config.json holds
        self.keep_checkpoints = keep_checkpoints
        self.writer = writer  # False in every process but the first of a multi-process run
        self.info: dict[str, Any] = {}
        self._manager = None

    # ---------------------------------------------------------------- before anything is written
    def check(self) -> None:
        """Refuse a path that is a file or holds another configuration."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output path {self.path} exists and is not a folder")
        cfg_path = self.path / "config.json"
        if cfg_path.exists():
            previous = _read_json(cfg_path, self.path)
            if previous != json.loads(json.dumps(self.identity)):
                raise RunExistsError(
                    f"{self.path} holds a run with a different configuration; choose another "
                    "output folder or delete it")
        info_path = self.path / "run.json"
        self.info = _read_json(info_path, self.path) if info_path.exists() else {}

    # ------------------------------------------------------------------------------- writing
    def create(self, **model_info: Any) -> None:
        """Create the folder, write ``config.json`` and the model's shapes into ``run.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.writer:
            write_json_atomic(self.path / "config.json", self.identity)
        self.info.update(model_info)

    def manager(self):
        """The Orbax checkpoint manager of ``checkpoints/`` (created on first use)."""
        if self._manager is None:
            import orbax.checkpoint as ocp

            self._manager = ocp.CheckpointManager(
                self.path / "checkpoints",
                options=ocp.CheckpointManagerOptions(max_to_keep=self.keep_checkpoints,
                                                     create=True))
        return self._manager

    def restore_latest(self, target: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(start, pieces)``: the latest checkpoint restored into ``target``'s structure, or
        ``(0, target)`` when there is none. Refuses to restart a run whose records exist but
        whose checkpoints are gone."""
        latest = self.manager().latest_step()
        if latest is None:
            if self.info.get("final_step", 0) > 0:  # never wipe finished records
                raise RunExistsError(
                    f"{self.path} has records up to step {self.info['final_step']} but no checkpoint "
                    "to resume from; pass --overwrite (or delete the folder) to start over")
            return 0, target
        return int(latest), restore(self.manager(), int(latest), target, self.path / "checkpoints")

    def truncate(self, start: int, names: Iterable[str]) -> None:
        """Drop record rows that the resumed run recomputes (steps ≥ ``start``; evaluation rows are
        keyed by completed steps, so the one at ``start`` stays)."""
        if not self.writer:
            return
        for name in names:
            truncate_records(self.path / f"{name}.jsonl", before_step=start)
        truncate_records(self.path / "eval.jsonl", before_step=start + 1)
        if self.info.get("diverged_at_step") is not None and self.info["diverged_at_step"] >= start:
            self.info["diverged_at_step"] = None

    def save(self, done: int, pieces: dict[str, Any], **info: Any) -> None:
        """Checkpoint after ``done`` steps, then record it in ``run.json`` (which only ever names
        a checkpoint that is complete on disk)."""
        import orbax.checkpoint as ocp

        self.manager().save(done, args=ocp.args.StandardSave(pieces))
        self.manager().wait_until_finished()
        self.write_info(final_step=done, **info)

    def write_info(self, **info: Any) -> None:
        self.info.update(info)
        if self.writer:
            write_json_atomic(self.path / "run.json", self.info)

    def close(self) -> None:
        """Complete a checkpoint in flight (also after an interruption) and release the manager."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None


def restore(manager, step: int, target: dict[str, Any], where: Path) -> dict[str, Any]:
    """Restore checkpoint ``step`` into ``target``'s structure; a one-line ConfigError on mismatch."""
    import orbax.checkpoint as ocp

    try:
        return manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax raises many types for structure mismatches
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"checkpoint {where / str(step)} does not match the model: {detail}") from None


def restore_checkpoint(workdir: str | os.PathLike, target: dict[str, Any],
                       step: int | None = None) -> dict[str, Any]:
    """Checkpoint ``step`` (None: the latest) of a run folder, restored into ``target``'s
    structure (``params``, ``state``, ``opt_state``); the hooks' carries, when saved, are
    restored by their own saved structure. ConfigError when there is none or it does not fit."""
    import jax
    import orbax.checkpoint as ocp

    folder = Path(workdir).absolute() / "checkpoints"
    with ocp.CheckpointManager(folder, item_handlers=ocp.StandardCheckpointHandler()) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"{Path(workdir).absolute()} has no checkpoint yet")
        tree = getattr(manager.item_metadata(step), "tree", None) or {}
        target = dict(target)
        if "hooks" in tree:
            target["hooks"] = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
                                           tree["hooks"])
        return restore(manager, step, target, folder)
