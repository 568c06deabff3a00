"""Normalization in transformers: ``landscape reproduce transformer-norms``.

(a) **Xiong et al. (2020)** at initialisation ("On Layer Normalization in the Transformer
Architecture", ICML, Theorem 1 and Lemma 2): the gradient of the *last* feed-forward layer's weights
is O(d·√(ln d)) for Post-LN, independent of the depth L, and O(d·√(ln d / L)) for Pre-LN. Measured
here as ‖∂L/∂W‖_F of the last layer's second feed-forward kernel (``blocks/{L−1}/mlp_out/kernel``)
of :class:`landscape.models.TransformerLM` with LayerNorm, at L = 2, 4, 8, 16, over seeds and
training minibatches of ``--dataset text``; the slope of log ‖∂L/∂W‖ against log L is fitted per
seed (Pre-LN: −½ in theory, Post-LN: 0). Two initialisations (:data:`INITS`): Xavier's
N(0, 1/d_model), the setting of the analysis, and the toolkit's GPT-2 N(0, 0.02²).

(b) **Training**: Pre-LN and Post-LN × LayerNorm / RMSNorm / DyT (Zhu et al. 2025) / none, under
AdamW with and without linear warm-up, matched seeds (seed s: same initialisation and data order
in every configuration), with the Figure-4 probe (the config's ``probe_every``, η ∈ [10, 80] × lr
as for ``landscape compare --model transformer``) and λ_max at the same steps
(:class:`~landscape.engine.CurvatureHook`). Aggregated like ``landscape compare``
(``compare_<metric>.png``, ``compare_table.md``); ``transformer_norms.md`` says which of each
matched pair is smoother — the ratio of the median effective β (and of the median λ_max) over training,
per seed, then the mean and 95 % Student-t interval over seeds.

Quick preset: 2-layer, d_model 32, 4-head models, batch 16, 60 steps, 4 step sizes (``host``: a
loop of one compiled gradient, which is what a 60-step run pays for; as fast as a ``lax.map`` of
the points here, 152 vs 155 ms, and much faster on convnets) and 8
Lanczos steps every 20 steps; (a) with 3 seeds × 1 minibatch of 16 at d_model 64; (b) the 8 position × norm
configurations with warm-up (6 steps) and Post-LN LayerNorm without it (the configuration Xiong
et al. say needs it), 1 seed (``seeds=2`` or more for intervals; each run is ≈ 30 s, mostly
compilation); with ``norm="none"`` Pre-LN and Post-LN are the same network, so only ``pre-none``
is trained. The "paper" preset: 6 layers, d_model 128, 3000 steps, all 14
configurations × 3 seeds. Both are far from the papers' scale (translation / ImageNet-size
models): they test the direction of the effects, not their size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ConfigError, TrainConfig
from landscape.experiments.base import (Experiment, clean_options, mean_interval, median,
                                        preset_config)
from landscape.experiments.compare import (TRANSFORMER_COMPARE_NORMS, TRANSFORMER_DEFAULTS,
                                           compare_finalize)

__all__ = ["TRANSFORMER_NORMS_PRESETS", "last_ffn_gradient_norms", "transformer_norms_experiment",
           "transformer_norms_finalize", "xiong_slopes"]

#: Per preset: the config (on top of the transformer compare defaults), the grid of (b) and the
#: settings of (a).
TRANSFORMER_NORMS_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"config": {**TRANSFORMER_DEFAULTS["quick"], "steps": 60, "batch_size": 16,
                         "probe_every": 20, "eval_every": 60, "checkpoint_every": 60,
                         "probe_strategy": "host",
                         "model_options": {"layers": 2, "d_model": 32, "heads": 4}},
              "warmup_steps": 6, "seeds": 1, "curvature_iters": 8,
              "configs": [(p, n, True) for p in ("pre", "post") for n in TRANSFORMER_COMPARE_NORMS
                          if (p, n) != ("post", "none")]
              + [("post", "layer", False)],
              "xiong": {"depths": (2, 4, 8, 16), "seeds": 3, "batches": 1, "d_model": 64,
                        "heads": 4, "batch_size": 16, "inits": ("xavier", "gpt2")}},
    "paper": {"config": {**TRANSFORMER_DEFAULTS["paper"], "steps": 3000, "probe_every": 100,
                         "eval_every": 500, "checkpoint_every": 1000,
                         "model_options": {"layers": 6, "d_model": 128, "heads": 4}},
              "warmup_steps": 300, "seeds": 3, "curvature_iters": 20,
              "configs": [(p, n, w) for p in ("pre", "post") for n in TRANSFORMER_COMPARE_NORMS
                          for w in (True, False) if (p, n) != ("post", "none")],
              "xiong": {"depths": (2, 4, 8, 16, 32), "seeds": 5, "batches": 4, "d_model": 128,
                        "heads": 4, "batch_size": 32, "inits": ("xavier", "gpt2")}},
}
#: The fitted log-log slope of ‖∂L/∂W_last‖ against depth that Xiong et al.'s bounds predict.
XIONG_THEORY = {"pre": -0.5, "post": 0.0}
#: Initialisations of (a): name → (std of every kernel and embedding, description). ``xavier``
#: (1/√d_model, the setting of Xiong et al.'s analysis): every residual branch adds a variance
#: comparable to the embedding's, so ‖x_L‖² ∝ L from the first layers; ``gpt2`` (0.02, the
#: toolkit's default): the branches add ≈ 0.16 × the embedding's variance per layer at d_model
#: 64, so the 1/√L regime starts only after ≈ 6 layers (fitted slope ≈ −0.3 over L = 2…16).
INITS = {"xavier": (None, "N(0, 1/d_model) (Xavier, Xiong et al.)"),
         "gpt2": (0.02, "N(0, 0.02²) (GPT-2, the toolkit's default)")}


def config_label(position: str, norm: str, warmup: bool) -> str:
    """``"pre-layer/warmup"``-style name of one (b) configuration."""
    return f"{position}-{norm}/{'warmup' if warmup else 'no-warmup'}"


# ------------------------------------------------------------------------------ (a) Xiong


def last_ffn_gradient_norms(data: Any, *, depths: Sequence[int], positions: Sequence[str],
                            seeds: int, batches: int, batch_size: int, d_model: int, heads: int,
                            norm: str = "layer", init_std: float | None = None
                            ) -> dict[str, np.ndarray]:
    """‖∂L/∂W‖_F of the last layer's second feed-forward kernel at initialisation.

    For each position p, depth L, seed s < ``seeds`` and training minibatch b < ``batches``
    (:func:`landscape.data.batch_at` at step b, seed 0: the same batches everywhere): the
    next-token loss of a fresh :class:`~landscape.models.TransformerLM` (``norm``, d_model,
    heads; init seed s; every kernel and embedding N(0, ``init_std``²), default 1/√d_model —
    Xavier's variance for the d × d maps, the setting of Xiong et al.'s analysis) and the
    Frobenius norm of its gradient with respect to ``blocks/{L−1}/mlp_out/kernel`` — W^{2,L} of
    Xiong et al. (2020), Theorem 1. One jitted gradient per architecture (graphdef), shared by
    its seeds and initialisations: on the quick preset fully optimised 38.4 s against 39.8 s op by
    op, and at depths 1 and 2 compiled for compile speed 5.5 s against 10.4 s (2-core CPU).

    Returns:
        position → (len(depths), seeds, batches) float64 array.
    """
    import jax
    import jax.numpy as jnp

    from landscape import bridge, probes
    from landscape.data import batch_at
    from landscape.models import build_model

    inputs = [batch_at(data, b, batch_size, seed=0) for b in range(batches)]
    gradients: dict[Any, Any] = {}  # graphdef → the compiled gradient of its loss
    out = {}
    for position in positions:
        norms = np.zeros((len(depths), seeds, batches))
        for i, depth in enumerate(depths):
            target = f"blocks/{depth - 1}/mlp_out/kernel"
            for s in range(seeds):
                model = build_model("transformer", norm=norm, input_shape=data.input_shape,
                                    num_classes=data.num_classes, seed=s, layers=depth,
                                    d_model=d_model, heads=heads, norm_position=position,
                                    init_std=d_model ** -0.5 if init_std is None else init_std)
                graphdef, params, state = bridge.split(model)
                if graphdef not in gradients:
                    gradients[graphdef] = jax.jit(jax.grad(bridge.make_loss_fn(model)))
                grad = gradients[graphdef]
                for b, (x, y) in enumerate(inputs):
                    g = grad(params, bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state))
                    leaf = {probes.path_str(p): v
                            for p, v in jax.tree_util.tree_leaves_with_path(g)}
                    norms[i, s, b] = float(jnp.linalg.norm(leaf[target]))
        out[position] = norms
    return out


def xiong_slopes(depths: Sequence[int], norms: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per position: the mean over seeds and batches of ‖∂L/∂W‖ per depth, the least-squares slope
    of its log against log L (``slope``), and the slope fitted per seed (its batches averaged)
    with the mean and 95 % interval over seeds (``slope_over_seeds``).

    Example:
        >>> d = [2, 4, 8, 16]
        >>> n = {"pre": np.array([[[1 / math.sqrt(L)]] for L in d])}
        >>> round(xiong_slopes(d, n)["pre"]["slope"], 6)
        -0.5
    """
    x = np.log(np.asarray(depths, np.float64))
    out = {}
    for position, a in norms.items():
        mean = a.mean(axis=(1, 2))
        per_seed = [float(np.polyfit(x, np.log(a[:, s, :].mean(axis=1)), 1)[0])
                    for s in range(a.shape[1])]
        out[position] = {"depths": [int(d) for d in depths], "mean": mean.tolist(),
                         "std": a.reshape(len(depths), -1).std(axis=1, ddof=1).tolist()
                         if a[0].size > 1 else [0.0] * len(depths),
                         "slope": float(np.polyfit(x, np.log(mean), 1)[0]),
                         "slope_over_seeds": mean_interval(per_seed),
                         "theory_slope": XIONG_THEORY.get(position, math.nan)}
    return out


def _xiong_markdown(xiong: Mapping[str, Mapping[str, Any]]) -> list[str]:
    positions = list(xiong)
    depths = xiong[positions[0]]["depths"]
    lines = ["| layers L | " + " | ".join(f"{p.capitalize()}-LN ‖∂L/∂W‖ (mean ± std)"
                                         for p in positions) + " |",
             "|---" * (len(positions) + 1) + "|"]
    for i, d in enumerate(depths):
        cells = [f"{xiong[p]['mean'][i]:.4g} ± {xiong[p]['std'][i]:.2g}" for p in positions]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    for key, name in (("slope", "fitted slope (of the means)"), ("theory_slope", "theory")):
        lines.append(f"| {name} | " + " | ".join(f"{xiong[p][key]:.3g}" for p in positions) + " |")
    lines.append("| slope per seed: mean [95 % CI] | " + " | ".join(
        _interval(xiong[p]["slope_over_seeds"]) for p in positions) + " |")
    return lines


def _interval(m: Mapping[str, Any]) -> str:
    lo, hi = m["ci95"]
    return f"{m['mean']:.3g} [{lo:.3g}, {hi:.3g}] (n = {m['n']})"


# ------------------------------------------------------------------------- (b) smoothness


def _pair_ratios(models: Mapping[str, Mapping[str, Any]], grid: Mapping[str, Mapping[int, str]],
                 a: str, b: str) -> dict[str, Any]:
    """Per matched seed, configuration b's median effective β (and median λ_max) over a's; then
    the mean and 95 % interval over seeds. > 1: a is smoother."""
    out = {}
    for field in ("effective_beta", "lambda_max"):
        ratios = []
        for seed, label in grid[a].items():
            if seed in grid[b] and field in models[label]:
                num, den = median(models[grid[b][seed]][field]), median(models[label][field])
                ratios.append(num / den if den > 0 else math.nan)
        out[field] = mean_interval(ratios)
    return out


def _verdict(m: Mapping[str, Any], a: str, b: str) -> str:
    lo, hi = m["ci95"]
    if not math.isfinite(m["mean"]):
        return "n/a"
    if m["n"] < 2:
        smoother = a if m["mean"] > 1 else b
        return f"{smoother} (one seed: no interval)"
    if lo > 1:
        return f"{a}, by ×{m['mean']:.2g}"
    if hi < 1:
        return f"{b}, by ×{1 / m['mean']:.2g}"
    return "no clear difference (interval contains 1)"


def smoothness_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """The matched pairs (a, b) compared, those whose both labels are in ``labels``: Pre- vs
    Post-LN per norm (but none: without a normalization the two are one network) and warm-up,
    warm-up vs none per position and norm, and LayerNorm vs each other norm per position and
    warm-up.

    Example:
        >>> smoothness_pairs(["pre-layer/warmup", "post-layer/warmup", "pre-rms/warmup"])
        [('pre-layer/warmup', 'post-layer/warmup'), ('pre-layer/warmup', 'pre-rms/warmup')]
    """
    present, pairs = set(labels), []
    for label in labels:
        position, rest = label.split("-", 1)
        norm, warm = rest.split("/")
        candidates = ([config_label("post", norm, warm == "warmup")]
                      if position == "pre" and norm != "none" else [])
        candidates += [config_label(position, norm, False)] if warm == "warmup" else []
        candidates += ([config_label(position, n, warm == "warmup") for n in
                        TRANSFORMER_COMPARE_NORMS if n != "layer"] if norm == "layer" else [])
        pairs += [(label, other) for other in candidates if other in present]
    return pairs


def _smoothness(models, grid) -> tuple[list[dict[str, Any]], str]:
    rows, lines = [], ["| a | b | median β(b) / β(a): mean [95 % CI] | smoother (β) "
                       "| median λ_max(b) / λ_max(a) | smoother (λ_max) |",
                       "|---|---|---|---|---|---|"]
    for a, b in smoothness_pairs(list(grid)):
        r = _pair_ratios(models, grid, a, b)
        row = {"a": a, "b": b, **r, "smoother_beta": _verdict(r["effective_beta"], a, b),
               "smoother_lambda_max": _verdict(r["lambda_max"], a, b)}
        rows.append(row)
        lines.append(f"| {a} | {b} | {_interval(r['effective_beta'])} | {row['smoother_beta']} | "
                     f"{_interval(r['lambda_max'])} | {row['smoother_lambda_max']} |")
    return rows, "\n".join(lines)


def transformer_norms_finalize(out: Path, runs: dict[str, dict[str, Any]], *,
                               grid: Mapping[str, Mapping[int, str]], xiong: Mapping[str, Any],
                               title: str) -> dict[str, Any]:
    """(b) aggregated like ``landscape compare`` (``compare_*.png``, ``compare_table.md``) and the
    matched-pair smoothness table; (a) measured here (at initialisation, no training needed):
    ``xiong.png``; both tables in ``transformer_norms.md``."""
    summary = compare_finalize(out, runs, grid=grid, title=title)
    rows, smooth_md = _smoothness(summary["models"], grid)
    config = TrainConfig.from_dict(next(iter(runs.values()))["config"])
    xiong_summary, xiong_md = _xiong(out, config, xiong)
    text = (xiong_md + f"\n\n## (b) {title}\n\nRatio > 1: a is smoother (smaller median "
            "effective β / λ_max over training), per matched seed, then mean and 95 % Student-t "
            "interval over seeds.\n\n" + smooth_md + "\n")
    (out / "transformer_norms.md").write_text(text, encoding="utf-8")
    summary["xiong"] = xiong_summary
    summary["smoothness"] = rows
    summary["comparison"] = _comparison(xiong_summary, rows)
    return summary


def _xiong(out: Path, config: TrainConfig, xiong: Mapping[str, Any]
           ) -> tuple[dict[str, Any], str]:
    """(a) for every initialisation in ``xiong["inits"]``: the slopes (summary part), ``xiong.png``
    and the markdown section."""
    from landscape.data import load_dataset
    from landscape.figures import plot_xiong_depth

    settings = {k: v for k, v in xiong.items() if k != "inits"}
    data = load_dataset(config.dataset, config.data_dir, seed=config.seed)
    result, sections = {}, []
    for init in xiong["inits"]:
        std = INITS[init][0]
        norms = last_ffn_gradient_norms(data, positions=("pre", "post"), **settings,
                                        init_std=None if std is None else float(std))
        result[init] = xiong_slopes(xiong["depths"], norms)
        for position, r in result[init].items():
            r["per_depth_seed_batch"] = norms[position].tolist()
        sections.append(f"### init: {INITS[init][1]}\n\n"
                        + "\n".join(_xiong_markdown(result[init])))
    title = (f"Xiong et al. (2020) at initialisation: LayerNorm, d_model {xiong['d_model']}, "
             f"{xiong['seeds']} seeds × {xiong['batches']} minibatches of {xiong['batch_size']}")
    plot_xiong_depth(result, {init: name for init, (_, name) in INITS.items()}, title=title,
                     path=out / "xiong")
    md = (f"# Normalization in transformers\n\n## (a) {title}\n\n‖∂L/∂W‖_F of the last "
          "layer's second feed-forward kernel; theory: Pre-LN ∝ 1/√L (slope −½), Post-LN "
          "independent of L (slope 0).\n\n" + "\n\n".join(sections))
    return result, md


def _comparison(xiong: Mapping[str, Mapping[str, Mapping[str, Any]]],
                rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The flat numbers the CLI prints: the fitted slopes per initialisation, whether Xiong's
    ordering holds, and the smoother member of each Pre/Post pair (by the median effective β)."""
    out: dict[str, Any] = {}
    for init, slopes in xiong.items():
        pre, post = slopes["pre"]["slope"], slopes["post"]["slope"]
        claim = "holds" if pre < min(post, 0.0) else "does not hold"
        out.update({f"xiong_slope_pre_ln_{init}": pre, f"xiong_slope_post_ln_{init}": post,
                    f"xiong_claim_{init}": f"{claim}: Pre-LN falls with depth, Post-LN does not"
                    if claim == "holds" else claim})
    for row in rows:
        if row["a"].startswith("pre-") and row["b"].startswith("post-"):
            out[f"smoother_{row['a'].split('-', 1)[1]}_pre_vs_post"] = row["smoother_beta"]
    return out


def _configs(preset: Mapping[str, Any], configs: Sequence[Sequence[Any]] | None,
             norms: Sequence[str] | None, overrides: Mapping[str, Any]
             ) -> list[tuple[str, str, bool]]:
    if configs is not None and norms is not None:
        raise ConfigError("give configs or norms, not both")
    chosen = [(str(p), str(n), bool(w)) for p, n, w in (preset["configs"] if configs is None
                                                        else configs)]
    if norms is not None:
        wanted = set(norms)
        unknown = sorted(wanted - set(TRANSFORMER_COMPARE_NORMS))
        if unknown or not wanted:
            raise ConfigError(f"norms: {', '.join(unknown) or 'none given'}; expected some of "
                              f"{','.join(TRANSFORMER_COMPARE_NORMS)}")
        chosen = [c for c in chosen if c[1] in wanted]
    options = overrides.get("model_options") or {}
    if "norm_position" in options:
        raise ConfigError("reproduce transformer-norms trains Pre-LN and Post-LN itself; "
                          "--norm-position does not apply")
    if overrides.get("model", "transformer") != "transformer" or overrides.get(
            "dataset", "text") != "text":
        raise ConfigError("reproduce transformer-norms trains the transformer on --dataset text")
    for p, n, _ in chosen:
        if p not in ("pre", "post") or n not in TRANSFORMER_COMPARE_NORMS:
            raise ConfigError(f"configs: ({p!r}, {n!r}) must be pre/post × "
                              f"{'/'.join(TRANSFORMER_COMPARE_NORMS)}")
    return chosen


def transformer_norms_experiment(preset: str = "quick", *, seeds: int | None = None,
                                 configs: Sequence[Sequence[Any]] | None = None,
                                 norms: Sequence[str] | None = None,
                                 xiong: Mapping[str, Any] | None = None,
                                 **overrides: Any) -> Experiment:
    """Xiong et al. (2020) at initialisation and the (b) training grid (see the module).

    Args:
        preset: ``"quick"`` or ``"paper"`` (:data:`TRANSFORMER_NORMS_PRESETS`).
        seeds: matched seeds per configuration (base seed, base seed + 1, …).
        configs: (position, norm, warm-up) triples to train (default: the preset's).
        norms: keep only the preset's configurations of these normalizations (the CLI's
            ``--norms``; not with ``configs``).
        xiong: overrides of the preset's (a) settings (``depths``, ``seeds``, ``batches``,
            ``d_model``, ``heads``, ``batch_size``).
        **overrides: :class:`~landscape.config.TrainConfig` fields (``model_options`` replace
            the preset's: layers, d_model, heads, qk_norm …).

    Example:
        >>> summary = run_experiment(transformer_norms_experiment(seeds=2), "runs/tn")
        >>> summary["comparison"]["xiong_slope_pre_ln_xavier"]
    """
    if preset not in TRANSFORMER_NORMS_PRESETS:
        raise ConfigError(f"preset={preset!r} is not accepted; expected one of "
                          f"{', '.join(TRANSFORMER_NORMS_PRESETS)}")
    p, overrides = TRANSFORMER_NORMS_PRESETS[preset], clean_options(overrides)
    chosen = _configs(p, configs, norms, overrides)
    seeds = int(p["seeds"] if seeds is None else seeds)
    if seeds < 1:
        raise ConfigError(f"seeds={seeds} must be >= 1")
    base = preset_config(preset, **{**p["config"], "model": "transformer", **overrides})
    warmup = min(int(p["warmup_steps"]), base.steps // 2)
    runs, grid = {}, {}
    for position, norm, warm in chosen:
        name = config_label(position, norm, warm)
        for s in range(base.seed, base.seed + seeds):
            label = f"{name}/seed{s}"
            runs[label] = base.replace(norm=norm, seed=s, tag=label,
                                       warmup_steps=warmup if warm else 0,
                                       model_options={**base.model_options,
                                                      "norm_position": position})
            grid.setdefault(name, {})[s] = label
    xiong_settings = {**p["xiong"], **dict(xiong or {})}
    iters = p["curvature_iters"]

    def hooks(label: str, cfg: TrainConfig):
        from landscape.engine import CurvatureHook

        return [CurvatureHook(every=cfg.probe_every, at=cfg.probe_at, num_iters=iters)]

    shown = ", ".join(f"{k}={v}" for k, v in sorted(base.model_options.items()))
    title = (f"transformer ({shown}) on {base.dataset}, AdamW lr {base.lr:g}, warm-up {warmup} "
             f"steps or none, batch {base.batch_size}, {base.steps} steps, {seeds} "
             f"seed{'s' if seeds > 1 else ''}")
    options = {"preset": preset, "seeds": seeds, "configs": [list(c) for c in chosen],
               "xiong": xiong_settings, **overrides}
    return Experiment("transformer-norms", runs,
                      lambda out, r: transformer_norms_finalize(out, r, grid=grid,
                                                                xiong=xiong_settings, title=title),
                      hooks=hooks, options=options)
