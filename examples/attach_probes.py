"""Attach landscape's hooks to a hand-written Flax NNX + optax training loop.

The loop below is ordinary NNX code; the lines marked `# probe` are all that landscape adds:
`nnx_loss` turns the model into the engine's loss form once, `attach` runs the Figure-4 hook
(and any other) on θ_t and step t's batch before the update, reusing the step's own gradient.
Run:  python examples/attach_probes.py   (about a minute on a laptop CPU)
"""

import jax.numpy as jnp
import optax
from flax import nnx

from landscape import data, figures, probes  # probe
from landscape.engine import Schedule, StepProbeHook, attach, nnx_loss  # probe
from landscape.models import VGG
from landscape.train import read_run  # probe

LR, STEPS, OUT = 0.1, 60, "runs/attach"
ds = data.make_synthetic(num_train=1024, input_shape=(16, 16, 3))
model = VGG("A", width=0.125, input_shape=ds.input_shape, norm="batch", rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)


def cross_entropy(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


@nnx.jit
def train_step(model, optimizer, batch):
    loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(batch["x"]), batch))(model)
    optimizer.update(model, grads)
    return loss, grads


loss_fn, _ = nnx_loss(model, cross_entropy)  # probe: the model's pure loss, BN in train mode
hooks = attach(loss_fn, [StepProbeHook(step_sizes=probes.lr_multiples(LR, 0.5, 4.0, num=8),  # probe
                                       schedule=Schedule(every=5))], workdir=OUT)  # probe

for step in range(STEPS):
    x, y = data.batch_at(ds, step, 128, seed=0)
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    _, params, state = nnx.split(model, nnx.Param, ...)  # probe: θ_t and the BN statistics
    result = hooks.step(step, nnx.as_pure(params), batch, state=nnx.as_pure(state))  # probe
    if result:  # probe
        probe = result["probes"][0]  # probe
        print(f"step {step:3d}  loss {float(probe.loss0):.3f}  "  # probe
              f"effective beta {float(probe.effective_beta):.2f}")  # probe
    train_step(model, optimizer, batch)

hooks.close()  # probe
summary = figures.summary_from_probe_rows(read_run(OUT)["probes"])  # probe
figures.plot_fig4({"batchnorm": summary}, path=f"{OUT}/fig4")  # probe
print(f"wrote {OUT}/fig4.png")  # probe
