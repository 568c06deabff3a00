"""Probe your own Flax NNX model: a small CNN with nnx.BatchNorm, nothing from landscape.models.

The only contract: ``__call__(x, *, use_running_average=None)`` forwards the flag to the
normalization layers. The bridge then gives the pure ``loss_fn(params, batch)`` the probes take, in
an explicit BatchNorm mode, without touching the model's running statistics.
Run:  python examples/custom_model.py   (under a minute on a laptop CPU)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from landscape import data, lr_multiples, make_batch, make_loss_fn, split, step_probe


class SmallCNN(nnx.Module):
    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
        self.head = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x, *, use_running_average=None):
        x = nnx.relu(self.bn1(self.conv1(x), use_running_average=use_running_average))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = nnx.relu(self.bn2(self.conv2(x), use_running_average=use_running_average))
        return self.head(x.mean(axis=(1, 2)))


ds = data.make_synthetic(num_train=256, input_shape=(16, 16, 1))
x, y = data.batch_at(ds, step=0, batch_size=64, seed=0)
model = SmallCNN(rngs=nnx.Rngs(0))
_, params, state = split(model)
batch = make_batch(jnp.asarray(x), jnp.asarray(y), state)
before = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))

for mode in ("batch_stats", "running_average"):
    r = step_probe(make_loss_fn(model, mode=mode), params, batch, lr_multiples(0.1, num=4))
    print(f"{mode:>15}: L(θ) {float(r.loss0):.3f}  L(θ−ηg) {np.round(np.asarray(r.loss), 3)}  "
          f"‖g‖ {float(r.grad_norm):.3f}  effective β {float(r.effective_beta):.2f}")

after = nnx.state(model, nnx.BatchStat)
unchanged = all(np.array_equal(a, np.asarray(b))
                for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
print("running statistics unchanged by probing:", unchanged)
