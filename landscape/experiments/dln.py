"""Figure 4 on the deep linear network (Santurkar et al. 2018, Sec. 3.2): 25 layers of 10×10.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from landscape.config import ConfigError
from landscape.experiments.fig4 import fig4_finalize
from landscape.experiments.base import (Experiment, describe, layered_preset)

__all__ = ["DLN_PRESETS", "dln_experiment"]



#: DLN settings. "paper": lr 1e-6, 10 000 full-batch GD steps, a probe at every step,
#: η ∈ [1/100, 30] × lr. "quick": the same lr and η range, 2 000 steps, a probe every 20 steps.
#: Both read the paper's ‖W_k…W_1 x − Ax‖² as a *sum* over the 1 000 samples (a study in
#: benchmarks/dln_readings.py: with a mean loss lr 1e-6 is ~1000× below vanilla's blow-up and BN
#: ends rougher than vanilla; with the sum it is 2–3× below, as for the paper's VGG). Both run in
#: float64: the vanilla net's probe points reach losses of 1e49 early on (float32 overflows), and
#: the net is cheap.
DLN_PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="dln", model="dln", lr=1e-6, steps=2000, batch_size=1000,
                  probe_every=20, num_step_sizes=8, step_size_lo=0.01, step_size_hi=30.0,
                  eval_every=500, checkpoint_every=1000, model_options={"loss_reduction": "sum"},
                  dtype="float64"),
    "paper": dict(dataset="dln", model="dln", lr=1e-6, steps=10000, batch_size=1000,
                  probe_every=1, num_step_sizes=8, step_size_lo=0.01, step_size_hi=30.0,
                  eval_every=1000, checkpoint_every=1000, model_options={"loss_reduction": "sum"},
                  dtype="float64"),
}


def dln_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Santurkar et al. deep-linear-network landscape (Sec. 3.2, App. A.1): BN vs vanilla.

    The 25-layer 10×10 linear network ``‖W₂₅⋯W₁x − Ax‖²`` on 1 000 Gaussian samples, full-batch
    gradient descent, with BatchNorm after each layer but the last ("batchnorm") and without
    ("vanilla"); Figure-4 probes over η ∈ [1/100, 30] × lr. ``dataset``/``model`` are fixed to
    "dln" (other values raise :class:`ConfigError`); ``width`` and ``batch_size`` have no effect.
    Writes ``dln.png`` (:func:`landscape.figures.plot_fig4`). Quick preset
    (:data:`DLN_PRESETS`): the paper's lr 1e-6 for 2 000 steps, probes every 20 steps — about
    2.5 min (150 s; the BatchNorm run takes 5× the vanilla one) on the shared 2-core CPU.
    """
    for key in ("dataset", "model"):
        if overrides.get(key) not in (None, "dln"):
            raise ConfigError(f"{key}={overrides[key]!r} is not accepted by the dln experiment "
                              "(it is always the deep linear network)")
    base = layered_preset(preset, DLN_PRESETS, overrides)
    runs = {"batchnorm": base.replace(norm="batch", tag="batchnorm"),
            "vanilla": base.replace(norm="none", tag="vanilla")}
    title = (f"{describe(base)}, {base.steps} steps, "
             f"η ∈ [{base.step_size_lo:g}, {base.step_size_hi:g}]×lr")

    def finalize(out: Path, r: dict[str, dict[str, Any]]) -> dict[str, Any]:
        summary = fig4_finalize(out, r, title=title, figure_name="dln")
        summary["figures"] = ["dln"]
        return summary

    return Experiment("dln", runs, finalize, options={"preset": preset, **overrides})

