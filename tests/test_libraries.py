"""What an Equinox or a Flax Linen user writes to train through fit: a few lines each, checked
against the same model's hand-computed gradient (float64, rtol 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerance import assert_close

from landscape import probes
from landscape.engine import Schedule, Stateful, StepProbeHook, fit
from landscape.train import read_run

pytestmark = pytest.mark.usefixtures("x64")

ETAS = [0.05, 0.1]
RNG = np.random.default_rng(0)
DATA = {"x": RNG.normal(size=(64, 5)), "y": RNG.integers(0, 3, 64)}


def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _check(loss_fn, params, tmp_path, state=None):
    """fit's first probe record equals step_probe on θ₀ and batch 0 of the documented order."""
    from landscape.data import batch_indices

    fit(loss_fn, params, optax.sgd(0.1), DATA, batch_size=16, steps=2, workdir=tmp_path,
        progress=False, hooks=[StepProbeHook(step_sizes=ETAS, schedule=Schedule(10))])
    idx = batch_indices(64, 0, 16, seed=0)
    batch = {k: v[idx] for k, v in DATA.items()}
    pure = loss_fn if state is None else (lambda p, b: loss_fn.fn(p, state, b, train=True, key=None)[0])
    ref = probes.step_probe(pure, params, batch, np.asarray(ETAS))
    rec = read_run(tmp_path)["probes"][0]
    assert_close(rec["loss"], ref.loss, rtol=1e-10, name="loss")
    assert_close(rec["grad_change"], ref.grad_change, rtol=1e-10, name="grad_change")


@pytest.mark.slow
def test_equinox(tmp_path):
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(5, 3, width_size=8, depth=2, key=jax.random.key(0))
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, model)
    params, static = eqx.partition(model, eqx.is_array)

    def loss_fn(p, b):
        return ce(jax.vmap(eqx.combine(p, static))(b["x"]), b["y"])

    _check(loss_fn, params, tmp_path)


@pytest.mark.slow
def test_flax_linen_with_batchnorm(tmp_path):
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Dense(8, param_dtype=jnp.float64)(x)
            x = nn.BatchNorm(use_running_average=not train, param_dtype=jnp.float64)(x)
            return nn.Dense(3, param_dtype=jnp.float64)(jnp.tanh(x))

    net = Net()
    variables = net.init(jax.random.key(0), DATA["x"][:2], train=False)

    def fn(params, state, batch, *, train, key):
        if train:
            logits, updates = net.apply({"params": params, **state}, batch["x"], train=True,
                                        mutable=["batch_stats"])
            return ce(logits, batch["y"]), dict(updates), {}
        return ce(net.apply({"params": params, **state}, batch["x"], train=False), batch["y"]), state, {}

    state = {"batch_stats": variables["batch_stats"]}
    _check(Stateful(fn, state), variables["params"], tmp_path, state=state)
