"""Analyse a checkpoint of YOUR model: plain Flax NNX + optax + Orbax, then landscape's probes.

A small CNN with nnx.BatchNorm (nothing from landscape.models) is trained a few SGD steps in a
hand-written loop, saved with plain Orbax, restored into the abstract state of
``nnx.eval_shape(lambda: SmallCNN(...))``, and measured from Python: the Figure-4 step probe
(Santurkar et al. 2018) and a filter-normalized 2-D loss slice (Li et al. 2018), both in an
explicit BatchNorm mode. (For a run folder written by ``landscape.train.train`` the command
``landscape analyze RUN_DIR`` does all of this per checkpoint.)
Run:  python examples/analyze_checkpoint.py   (well under a minute on a laptop CPU)
"""

import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from landscape import data, lr_multiples, make_batch, make_loss_fn, split, step_probe
from landscape.probes import loss_surface, random_direction


class SmallCNN(nnx.Module):
    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.head = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x, *, use_running_average=None):
        x = nnx.relu(self.bn1(self.conv1(x), use_running_average=use_running_average))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = nnx.relu(self.bn2(self.conv2(x), use_running_average=use_running_average))
        return self.head(x.mean(axis=(1, 2)))


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value


# 1. your training loop (train mode: BatchNorm uses batch statistics and updates running ones)
ds = data.make_synthetic(num_train=256, input_shape=(16, 16, 1))
model = SmallCNN(rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
for step in range(10):
    x, y = data.batch_at(ds, step=step, batch_size=64, seed=0)
    train_loss = train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
print(f"trained 10 steps, last minibatch loss {float(train_loss):.3f}")

# 2. save with plain Orbax, restore into the abstract state of a fresh model
ckpt = Path(tempfile.mkdtemp()) / "step10"
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(ckpt, nnx.state(model))
checkpointer.wait_until_finished()
abstract = nnx.eval_shape(lambda: SmallCNN(rngs=nnx.Rngs(0)))
graphdef, abstract_state = nnx.split(abstract)
restored = nnx.merge(graphdef, checkpointer.restore(ckpt, abstract_state))
same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(nnx.state(model)),
                                                jax.tree.leaves(nnx.state(restored))))
print("restored equals trained:", same)

# 3. analyse the restored model: the loss as a pure function, in an explicit BatchNorm mode
_, params, state = split(restored)
x, y = data.batch_at(ds, step=10, batch_size=64, seed=0)
batch = make_batch(jnp.asarray(x), jnp.asarray(y), state)
loss_fn = make_loss_fn(restored, mode="batch_stats")  # the paper's loss: the batch's statistics
eval_loss = jax.jit(make_loss_fn(restored, mode="running_average"))  # eval behaviour
print(f"L(θ): batch_stats {float(loss_fn(params, batch)):.3f}, "
      f"running_average {float(eval_loss(params, batch)):.3f}")
r = step_probe(loss_fn, params, batch, lr_multiples(0.1, num=4))
print(f"step probe (batch_stats), η = {np.asarray(r.step_sizes)}: L(θ−ηg) "
      f"{np.round(np.asarray(r.loss), 3)}, ‖g‖ {float(r.grad_norm):.3f}, "
      f"effective β {float(r.effective_beta):.2f}")

k1, k2 = jax.random.split(jax.random.key(0))
directions = (random_direction(k1, params), random_direction(k2, params))  # filter-normalized
axis = jnp.linspace(-1.0, 1.0, 5)
s = loss_surface(loss_fn, params, batch, directions, (axis, axis))
print("2-D slice (batch_stats), rows a = -1 … 1:\n", np.round(np.asarray(s.loss), 3))
print("surface centre equals loss:", bool(np.isclose(s.loss[2, 2], loss_fn(params, batch),
                                                     rtol=1e-5)))
