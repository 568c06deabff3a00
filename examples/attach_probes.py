"""Attach landscape's Figure-4 probes to a hand-written Flax NNX + optax training loop.

The loop below is ordinary NNX code; the lines marked `# probe` are all that landscape adds.
Run:  python examples/attach_probes.py   (about a minute on a laptop CPU)
"""

from pathlib import Path

import jax.numpy as jnp
import optax
from flax import nnx

from landscape import data, plotting, probes  # probe
from landscape.models import VGG
from landscape.records import read_records  # probe
from landscape.train import Prober, ProbeSchedule  # probe

LR, STEPS = 0.1, 60
ds = data.make_synthetic(num_train=1024, input_shape=(16, 16, 3))
model = VGG("A", width=0.125, input_shape=ds.input_shape, norm="batch", rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


Path("runs/attach/probes.jsonl").unlink(missing_ok=True)  # probe: start a fresh record
prober = Prober(model, step_sizes=probes.lr_multiples(LR, 0.5, 4.0, num=8),  # probe
                schedule=ProbeSchedule(every=5), records="runs/attach/probes.jsonl")  # probe

for step in range(STEPS):
    x, y = data.batch_at(ds, step, 128, seed=0)
    result = prober.maybe_probe(step, model, x, y)  # probe: θ_t, this step's batch, BN stats untouched
    if result is not None:  # probe
        print(f"step {step:3d}  loss {float(result.loss0):.3f}  "  # probe
              f"effective beta {float(result.effective_beta):.2f}")  # probe
    train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y))

prober.close()  # probe
summary = plotting.summary_from_probe_rows(read_records("runs/attach/probes.jsonl"))  # probe
plotting.plot_fig4({"batchnorm": summary}, path="runs/attach/fig4")  # probe
print("wrote runs/attach/fig4.png")  # probe
