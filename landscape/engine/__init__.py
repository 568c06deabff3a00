"""The training engine: ``fit`` at the centre, hooks on its loop, one adapter for configs.

- :mod:`landscape.engine.fit` — :func:`fit` ``(loss_fn, params, optimizer, data, *, steps, workdir,
  hooks)`` for any JAX model, and :func:`run_job`, the loop every run goes through.
- :mod:`landscape.engine.objective` — the loss forms ``fit`` takes: a plain ``loss_fn(params,
  batch)``, :class:`Stateful` (BatchNorm statistics, dropout keys), :func:`nnx_loss` (a Flax NNX
  model in one line).
- :mod:`landscape.engine.batches` — where minibatches come from (``data(step)``, arrays, datasets).
- :mod:`landscape.engine.hooks` — :class:`Hook` (``due(step)``, a pure ``measure``, a record),
  :class:`StepProbeHook` (Figure 4), :class:`CurvatureHook` (λ_max), :class:`Measurement`.
- :mod:`landscape.engine.attach` — :func:`attach`: the same hooks in your own loop.
- :mod:`landscape.engine.state` — :class:`TrainState`, :class:`StepFunctions` (the jitted step, split
  into its gradient and update halves so that measurements reuse the step's own gradient).
- :mod:`landscape.engine.sinks`, :mod:`landscape.engine.rundir` — records, config, checkpoints, resume.
- :mod:`landscape.engine.configured` — :func:`train` ``(config, workdir)``: a
  :class:`~landscape.config.TrainConfig` run as one adapter over the same loop.
"""

from landscape.engine.attach import Attached, attach
from landscape.engine.configured import (BridgeObjective, TrainResult, build_config_model,
                                         config_job, default_hooks, load_run_data, train)
from landscape.engine.fit import FitResult, Job, fit, run_job
from landscape.engine.hooks import (CriticalSharpnessHook, Curvature, CurvatureHook, Hook, Measurement, MeasurementHook,
                                    RunContext, Schedule, StepContext, StepInputs, StepProbeHook,
                                    hook_key, probe_record)
from landscape.engine.objective import Objective, Stateful, nnx_loss
from landscape.engine.rundir import RunDir, RunExistsError
from landscape.engine.sinks import JsonlSink, RecordSink, Sinks, TensorBoardSink
from landscape.engine.state import (GradientOutput, StepFunctions, StepMetrics, TrainState,
                                    build_optimizer, init_train_state, lr_schedule)

__all__ = [
    "Attached", "BridgeObjective", "CriticalSharpnessHook", "Curvature", "CurvatureHook", "FitResult", "GradientOutput",
    "Hook", "Job", "JsonlSink", "Measurement", "MeasurementHook", "Objective", "RecordSink",
    "RunContext", "RunDir", "RunExistsError", "Schedule", "Sinks", "Stateful", "StepContext",
    "StepFunctions", "StepInputs", "StepMetrics", "StepProbeHook", "TensorBoardSink",
    "TrainResult", "TrainState", "attach", "build_config_model", "build_optimizer", "config_job",
    "default_hooks", "fit", "hook_key", "init_train_state", "load_run_data", "lr_schedule",
    "nnx_loss", "probe_record", "run_job", "train",
]
