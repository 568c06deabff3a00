"""Check the two proposed patches (engine/configured.py: forward the context; analyze.py: keep
integer inputs) in-process, without editing those files."""
import sys
import numpy as np
import jax.numpy as jnp
from landscape import bridge, cli, data as data_lib
import landscape.analyze as A
import landscape.engine as E
import landscape.engine.configured as C
import landscape.train as T
from landscape.config import ConfigError

orig = C.load_run_data


def load_run_data(config):  # = the proposed configured.load_run_data
    if config.dataset != "text":
        return orig(config)
    ds = data_lib.load_dataset(config.dataset, config.data_dir, download=config.download,
                               seed=config.seed, context=config.model_options.get("context"))
    return ds, (ds.x_test, ds.y_test), ds.input_shape, ds.num_classes


def batch(self, index, state):  # = the proposed analyze._Context.batch
    x, y = data_lib.batch_at(self.train_data, index, self.batch_size, seed=self.config.seed)
    x = np.asarray(x)
    x = x.astype(self.config.dtype) if np.issubdtype(x.dtype, np.floating) else x
    return bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)


C.load_run_data = E.load_run_data = T.load_run_data = load_run_data
A._Context.batch = batch
out = sys.argv[1]
rc = cli.main(["compare", "--model", "transformer", "--context", "32", "--norms", "layer,dyt",
               "--seeds", "1", "--steps", "20", "--out", out, "--no-progress"])
print("compare rc", rc)
rc = cli.main(["analyze", f"{out}/layer/seed0", "--surface", "1d", "--grid", "5",
               "--num-batches", "2", "--no-progress"])
print("analyze rc", rc)
