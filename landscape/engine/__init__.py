"""The training engine: an explicit state, one compiled step, one hook protocol, a thin loop.

- :mod:`landscape.engine.state` — :class:`TrainState` (params, model state, optimizer state, step,
  key), :func:`init_train_state`, :class:`StepFunctions` (the pure jitted step, split into its
  gradient and update halves so that measurements reuse the step's own gradient).
- :mod:`landscape.engine.hooks` — :class:`Hook` (``due(step)``, a pure ``measure``, a record),
  :class:`StepProbeHook` (Figure 4), :class:`Measurement` (host-side, the pre-hook API).
- :mod:`landscape.engine.sinks` — where records go: JSON lines (the source of truth), TensorBoard.
- :mod:`landscape.engine.rundir` — the run folder: config, run info, checkpoints, resume.
- :mod:`landscape.engine.loop` — :func:`train`, which composes them (data-parallel over every
  device by default, ``devices=``; :mod:`landscape.parallel`).
"""

from landscape.engine.hooks import (Curvature, CurvatureHook, Hook, Measurement, MeasurementHook, ProbeSchedule, RunContext,
                                    Schedule, StepContext, StepInputs, StepProbeHook, probe_record)
from landscape.engine.configured import (BridgeObjective, TrainResult, build_config_model,
                                         config_job, default_hooks, load_run_data, train)
from landscape.engine.fit import FitResult, Job, fit, run_job
from landscape.engine.objective import Objective, Stateful, nnx_loss
from landscape.engine.rundir import RunDir, RunExistsError
from landscape.engine.sinks import JsonlSink, RecordSink, Sinks, TensorBoardSink
from landscape.engine.state import (GradientOutput, StepFunctions, TrainState, build_optimizer,
                                    init_train_state, lr_schedule)

__all__ = [
    "Curvature", "CurvatureHook", "GradientOutput", "Hook", "JsonlSink", "Measurement", "MeasurementHook", "ProbeSchedule",
    "RecordSink", "RunContext", "RunDir", "RunExistsError", "Schedule", "Sinks", "StepContext",
    "StepFunctions", "StepInputs", "StepProbeHook", "TensorBoardSink", "TrainResult", "TrainState",
    "build_config_model", "build_optimizer", "default_hooks", "init_train_state", "load_run_data",
    "lr_schedule", "probe_record", "train",
]
