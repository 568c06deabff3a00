"""Zhang et al. (NeurIPS 2024), "Why Transformers Need Adam": blockwise Hessian spectra at init.

Their claim: the Hessian spectra of a transformer's parameter blocks (embedding, Q/K, V/O, MLP,
norms) differ strongly from block to block ("block heterogeneity"), those of a CNN's layers little;
they measure it at initialisation by the Jensen–Shannon distance between the blocks' SLQ densities
and summarise a network by the mean over the pairs, JS⁰ (their Fig. 3–4, Table 1).

``blockwise_experiment`` measures both networks AT INITIALISATION, so it trains nothing: the
:class:`~landscape.experiments.base.Experiment` has no runs, and its ``finalize`` builds the two
models, measures them (:func:`landscape.probes.blockwise_spectra`,
:func:`landscape.probes.js_distance_matrix`) and writes ``summary.json`` and ``blockwise.png``.
``landscape reproduce blockwise`` runs it through :func:`landscape.reproduce.run_experiment` like
any experiment; ``landscape plot`` recomputes it (same seed, same numbers).

- transformer: :class:`landscape.models.TransformerLM` (pre-LN LayerNorm, tied embeddings as in
  GPT-2, no dropout) on one fixed batch of uniformly random int tokens (next-token targets; there is
  no text dataset), blocks by ``named_blocks(params, "transformer")``;
- CNN: the narrow ``vgg5`` without normalization on :func:`landscape.data.make_synthetic` images,
  one block per layer (``"per_layer"``: each conv's kernel and bias, the head).

Quick preset: a 1-layer transformer (d_model 32, 4 heads, context 16, vocabulary 20, 8 sequences;
6 blocks) and vgg5 at width 0.25 on 16×16×3 images (32 images; 5 blocks), 20 Lanczos steps × 2
runs per block, σ² = 1e-5, float32. Measured on a shared 2-core CPU: ≈ 110 s of CPU time, 80–170 s
wall depending on the machine's load; each block compiles its own masked Lanczos step (4–11 s
each), ≈ 90 % of the time. Result (seed 0): heterogeneity 0.618 for the transformer, 0.119 for
the CNN, with SLQ noise floors (:attr:`~landscape.probes.JSDistances.self_distances`, averaged)
of 0.274 and 0.039: the spread blocks' densities (embedding, V/O, MLP) are built from 40 Ritz
values under a narrow kernel, so a second estimate of the same block is already far. "paper":
Zhang et al.'s Lanczos settings (100 steps × 10 runs) on a 4-layer transformer and vgg11, much
heavier (not run here). Both are far from the paper's models and data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from landscape import bridge, data, models, probes
from landscape.choices import DTYPES, check_choice, check_number
from landscape.config import ConfigError
from landscape.experiments.base import Experiment

__all__ = ["BLOCKWISE_PRESETS", "blockwise_experiment", "blockwise_finalize", "blockwise_record",
           "measure_blockwise"]

#: Per preset: the two models, their batches and the SLQ settings.
BLOCKWISE_PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(layers=1, d_model=32, heads=4, context=16, vocab=20, sequences=8, cnn="vgg5",
                  width=0.25, image_size=16, images=32, num_iters=20, num_runs=2, top_k=3,
                  grid_size=2000, sigma2=1e-5, seed=0, dtype="float32"),
    "paper": dict(layers=4, d_model=128, heads=4, context=64, vocab=256, sequences=32, cnn="vgg11",
                  width=0.5, image_size=32, images=128, num_iters=100, num_runs=10, top_k=5,
                  grid_size=10000, sigma2=1e-5, seed=0, dtype="float32"),
}
_INTEGERS = ("layers", "d_model", "heads", "context", "vocab", "sequences", "image_size", "images",
             "num_iters", "num_runs", "top_k", "grid_size")
#: Training-run flags of the CLI that mean something here: ``model`` is the CNN, ``batch_size``
#: both batches (sequences and images), ``dataset`` must be ``synthetic``.
_ALIASES = {"model": "cnn", "batch_size": ("sequences", "images")}


def _settings(preset: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's settings with ``options`` (``None`` ignored), validated; ConfigError naming
    the field otherwise."""
    check_choice("preset", preset, tuple(BLOCKWISE_PRESETS), ConfigError)
    settings = dict(BLOCKWISE_PRESETS[preset])
    for field, value in options.items():
        if value is None:
            continue
        if field == "dataset":
            check_choice("dataset", value, ("synthetic",), ConfigError)
            continue
        targets = _ALIASES.get(field, field)
        for target in (targets,) if isinstance(targets, str) else targets:
            if target not in settings:
                raise ConfigError(
                    f"{field} is not accepted by blockwise: it measures both networks at "
                    f"initialisation (no training); accepted: {', '.join(sorted(settings))}, "
                    "model, batch_size, dataset")
            settings[target] = value
    for field in _INTEGERS:
        settings[field] = int(check_number(field, settings[field], minimum=1, integer=True,
                                           error=ConfigError))
    settings["seed"] = int(check_number("seed", settings["seed"], minimum=0, integer=True,
                                        error=ConfigError))
    if settings["d_model"] % settings["heads"]:
        raise ConfigError(f"heads={settings['heads']} must divide d_model={settings['d_model']}")
    cnn = settings["cnn"]
    if not (isinstance(cnn, str) and models.is_model_name(cnn)) or cnn in ("transformer", "dln"):
        raise ConfigError(f"cnn={cnn!r} is not accepted; expected a CNN of landscape.models "
                          "(vgg5, vgg11, vgg13, vgg16, resnetN)")
    check_number("width", settings["width"], minimum=0, strict=True, error=ConfigError)
    check_number("sigma2", settings["sigma2"], minimum=0, strict=True, error=ConfigError)
    check_choice("dtype", settings["dtype"], DTYPES, ConfigError)
    if settings["top_k"] > settings["num_iters"]:
        raise ConfigError(f"top_k={settings['top_k']} must be <= num_iters={settings['num_iters']}")
    return settings


def _transformer_problem(s: Mapping[str, Any]):
    """``(loss_fn, params, batch, description)`` of the transformer on its random-token batch."""
    model = models.build_model("transformer", norm="layer", input_shape=(s["context"],),
                               num_classes=s["vocab"], layers=s["layers"], d_model=s["d_model"],
                               heads=s["heads"], tie_embeddings=True, seed=s["seed"])
    tokens = np.random.default_rng(s["seed"]).integers(0, s["vocab"],
                                                       (s["sequences"], s["context"] + 1))
    x, y = jnp.asarray(tokens[:, :-1], jnp.int32), jnp.asarray(tokens[:, 1:], jnp.int32)
    text = (f"TransformerLM ({s['layers']} layer(s), d_model {s['d_model']}, {s['heads']} heads, "
            f"pre-LN, tied embeddings) on {s['sequences']} random sequences of {s['context']} "
            f"tokens (vocabulary {s['vocab']})")
    return (*_problem(model, x, y, s["dtype"]), text)


def _cnn_problem(s: Mapping[str, Any]):
    """``(loss_fn, params, batch, description)`` of the CNN on synthetic images."""
    shape = (s["image_size"], s["image_size"], 3)
    model = models.build_model(s["cnn"], norm="none", width=s["width"], input_shape=shape,
                               num_classes=10, seed=s["seed"])
    ds = data.make_synthetic(num_train=s["images"], num_test=1, input_shape=shape, num_classes=10,
                             seed=s["seed"])
    text = (f"{s['cnn']} (width {s['width']:g}, no normalization) on {s['images']} synthetic "
            f"{shape[0]}×{shape[1]}×3 images, 10 classes")
    return (*_problem(model, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), s["dtype"]), text)


def _problem(model, x, y, dtype: str):
    if dtype == "float64":
        bridge.cast(model, jnp.float64)
        x = x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
    _, params, state = bridge.split(model)
    return bridge.make_loss_fn(model), params, bridge.make_batch(x, y, state)


def blockwise_record(spectra: probes.BlockwiseSpectra, js: probes.JSDistances) -> dict[str, Any]:
    """One network's result as plain NumPy / Python (what :func:`landscape.figures.plot_blockwise`
    draws): ``blocks``, ``parameter_counts``, ``grid``, ``densities``, ``top_eigenvalues``,
    ``js_distances``, ``heterogeneity``, ``self_distances`` and their mean ``noise_floor``."""
    return {"blocks": list(spectra.names), "parameter_counts": list(spectra.sizes),
            "grid": np.asarray(spectra.grid, float),
            "densities": np.asarray(spectra.densities, float),
            "top_eigenvalues": np.asarray(spectra.top_eigenvalues, float),
            "js_distances": np.asarray(js.distances, float),
            "heterogeneity": float(js.heterogeneity),
            "self_distances": np.asarray(js.self_distances, float),
            "noise_floor": float(np.mean(np.asarray(js.self_distances, float)))}


def measure_blockwise(loss_fn, params, batch, rule, *, key: jax.Array, num_iters: int,
                      num_runs: int, top_k: int, grid_size: int, sigma2: float) -> dict[str, Any]:
    """:func:`blockwise_record` of ``named_blocks(params, rule)`` (``loss_fn`` deterministic)."""
    blocks = probes.named_blocks(params, rule)
    spectra = probes.blockwise_spectra(loss_fn, params, batch, blocks, key=key, num_iters=num_iters,
                                       num_runs=num_runs, top_k=top_k, grid_size=grid_size,
                                       sigma2=sigma2)
    return blockwise_record(spectra, probes.js_distance_matrix(spectra))


def _entry(record: Mapping[str, Any], description: str) -> dict[str, Any]:
    """The summary entry of one network (no grid or densities: they are in the figure)."""
    return {"description": description, "blocks": record["blocks"],
            "parameter_counts": record["parameter_counts"],
            "num_parameters": int(sum(record["parameter_counts"])),
            "top_eigenvalues": record["top_eigenvalues"].tolist(),
            "js_distances": record["js_distances"].tolist(),
            "heterogeneity": record["heterogeneity"],
            "self_distances": record["self_distances"].tolist(),
            "noise_floor": record["noise_floor"]}


def blockwise_finalize(out: Path, runs: Mapping[str, Any], *, settings: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """Measure both networks at initialisation: ``blockwise.png`` and the summary (no ``runs``)."""
    from landscape.figures import plot_blockwise

    del runs  # nothing is trained: both networks are measured at initialisation
    s = dict(settings)
    slq = {k: s[k] for k in ("num_iters", "num_runs", "top_k", "grid_size", "sigma2")}
    with jax.enable_x64(True) if s["dtype"] == "float64" else contextlib.nullcontext():
        records, text = {}, {}
        for name, build, rule in (("transformer", _transformer_problem, "transformer"),
                                  ("cnn", _cnn_problem, "per_layer")):
            loss_fn, params, batch, text[name] = build(s)
            records[name] = measure_blockwise(loss_fn, params, batch, rule,
                                              key=jax.random.key(s["seed"]), **slq)
    plot_blockwise(records, path=Path(out) / "blockwise")
    het = {name: r["heterogeneity"] for name, r in records.items()}
    floor = {name: r["noise_floor"] for name, r in records.items()}
    ratio = het["transformer"] / het["cnn"] if het["cnn"] > 0 else math.nan
    comparison = {"heterogeneity_transformer": het["transformer"], "heterogeneity_cnn": het["cnn"],
                  "heterogeneity_ratio": ratio, "noise_floor_transformer": floor["transformer"],
                  "noise_floor_cnn": floor["cnn"]}
    return {"models": {name: _entry(r, text[name]) for name, r in records.items()},
            "comparison": comparison, "config": {"settings": s}, "note": _note(het, floor, s)}


def _note(het: Mapping[str, float], floor: Mapping[str, float], s: Mapping[str, Any]) -> str:
    claim = "holds" if het["transformer"] > het["cnn"] else "does not hold"
    return (f"Block heterogeneity (mean Jensen–Shannon distance, base 2, over pairs of blocks): "
            f"transformer {het['transformer']:.3f}, CNN {het['cnn']:.3f}; Zhang et al.'s claim "
            f"'transformers are more heterogeneous than CNNs at initialisation' {claim} here. "
            f"SLQ noise floor (mean JS distance between two halves of a block's runs): transformer "
            f"{floor['transformer']:.3f}, CNN {floor['cnn']:.3f} — pairwise distances near it are "
            f"noise. One minibatch, {s['num_runs']} SLQ runs × {s['num_iters']} Lanczos steps per "
            f"block, {s['dtype']}, tiny networks on random tokens / synthetic images: a "
            "small-scale check of the measurement, not the paper's models (BERT, GPT-2, ViT, "
            "ResNet, VGG16) and data. JS distances here are in base 2 (at most 1); Zhang et al.'s "
            "exact normalisation of JS⁰ is not reproduced, so compare these numbers with each "
            "other, not with their Table 1.")


def blockwise_experiment(preset: str = "quick", **overrides: Any) -> Experiment:
    """Zhang et al. (2024): block heterogeneity of a transformer and of a CNN at initialisation.

    Args:
        preset: ``"quick"`` or ``"paper"`` (:data:`BLOCKWISE_PRESETS`).
        **overrides: any key of :data:`BLOCKWISE_PRESETS` (transformer ``layers``, ``d_model``,
            ``heads``, ``context``, ``vocab``, ``sequences``; CNN ``cnn``, ``width``,
            ``image_size``, ``images``; SLQ ``num_iters``, ``num_runs``, ``top_k``,
            ``grid_size``, ``sigma2`` (the kernel variance: wider lowers the noise floor and the
            resolution); ``seed``, ``dtype``), or the CLI's ``model`` (the CNN), ``batch_size``
            (both batches) and ``dataset`` (only ``"synthetic"``). Training flags (``steps``,
            ``lr``, …) are a ConfigError: nothing is trained.

    Returns:
        An :class:`~landscape.experiments.base.Experiment` with no runs whose ``finalize`` measures.

    Reference:
        Zhang, Chen, Ding, Li, Sun, Luo (2024), "Why Transformers Need Adam: A Hessian
        Perspective", NeurIPS, Fig. 3–4 and Table 1.

    Example:
        >>> run_experiment(blockwise_experiment(num_iters=10), "runs/blockwise")["comparison"]
        {'heterogeneity_transformer': 0.6..., 'heterogeneity_cnn': 0.1..., ...}
    """
    settings = _settings(preset, overrides)
    options = {"preset": preset, **{k: v for k, v in overrides.items() if v is not None}}
    return Experiment("blockwise", {},
                      lambda out, runs: blockwise_finalize(out, runs, settings=settings),
                      options=options)
