"""A small Flax NNX transformer language model, trained through `fit` with AdamW and warm-up.

Character-level next-token prediction on text that ships with Python itself (the docstrings of a
few standard-library modules, so it runs offline). The Figure-4 hook probes the loss along the
gradient every 10 steps and the curvature hook measures λ_max every 20; the run folder records
`setup` below, so `landscape analyze` rebuilds the model from it:

    python examples/transformer_lm.py --out runs/lm          (about a minute on a laptop CPU)
    landscape analyze runs/lm --surface 1d
"""

from __future__ import annotations

import argparse
import importlib

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from landscape.engine import CurvatureHook, Schedule, StepProbeHook, fit, nnx_loss

MODULES = ("json", "textwrap", "argparse", "collections", "functools", "pathlib", "inspect")


def corpus() -> tuple[np.ndarray, int]:
    """``(tokens, vocab)``: the modules' docstrings as int32 character ids."""
    text = "\n".join(importlib.import_module(m).__doc__ or "" for m in MODULES)
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    return np.array([lookup[c] for c in text], dtype=np.int32), len(chars)


class Block(nnx.Module):
    """Pre-LN: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs):
        self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, rngs=rngs)
        self.up, self.down = nnx.Linear(d, 4 * d, rngs=rngs), nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.ln2(x))))


class LM(nnx.Module):
    def __init__(self, vocab: int, *, layers: int, d: int, heads: int, context: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        self.pos = nnx.Param(0.02 * nnx.initializers.normal(1.0)(rngs.params(), (context, d)))
        self.blocks = nnx.List([Block(d, heads, rngs=rngs) for _ in range(layers)])
        self.ln_f, self.head = nnx.LayerNorm(d, rngs=rngs), nnx.Linear(d, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens) + self.pos[None, : tokens.shape[1]]
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


def next_token_loss(logits, tokens):
    """Mean cross-entropy of token t+1 given tokens ≤ t, and the accuracy as a metric."""
    targets = tokens[:, 1:]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == targets)}


def lr_schedule(lr: float, warmup: int, steps: int) -> optax.Schedule:
    """Linear warm-up from 0 over ``warmup`` steps (at most half the run), then cosine decay."""
    return optax.warmup_cosine_decay_schedule(0.0, lr, min(warmup, steps // 2), steps)


def setup(*, layers: int = 2, d_model: int = 32, heads: int = 4, context: int = 32,
          batch: int = 16, lr: float = 3e-3, warmup: int = 20, weight_decay: float = 0.01,
          steps: int = 100, seed: int = 0):
    """``(loss_fn, params, optimizer, data)`` of the run; `landscape analyze` calls it again."""
    tokens, vocab = corpus()
    model = LM(vocab, layers=layers, d=d_model, heads=heads, context=context, rngs=nnx.Rngs(seed))
    loss_fn, params = nnx_loss(model, next_token_loss, inputs=lambda b: b[:, :-1])
    optimizer = optax.adamw(lr_schedule(lr, warmup, steps), weight_decay=weight_decay)

    def data(step: int) -> np.ndarray:  # B random windows of context + 1 tokens, a function of step
        starts = np.random.default_rng([seed, step]).integers(0, len(tokens) - context - 1, batch)
        return np.stack([tokens[s : s + context + 1] for s in starts])

    return loss_fn, params, optimizer, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/lm")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    kwargs = dict(layers=args.layers, steps=args.steps)
    hooks = [StepProbeHook(step_sizes=np.geomspace(0.01, 0.5, 8), schedule=Schedule(every=10)),
             CurvatureHook(every=20, num_iters=10)]
    result = fit(*setup(**kwargs), steps=args.steps, workdir=args.out, hooks=hooks,
                 checkpoint_every=max(1, args.steps // 2), learning_rate=lr_schedule(3e-3, 20, args.steps),
                 setup=setup, setup_kwargs=kwargs, tag="pre-LN LM")
    from landscape.train import read_run

    run = read_run(result.workdir)
    print(f"final loss {run['train'][-1]['loss']:.3f}, accuracy {run['train'][-1]['accuracy']:.3f}")
    for probe, curv in zip(run["probes"][::2], run["curvature"]):
        print(f"step {probe['step']:4d}: effective β {probe['effective_beta']:.3g}, "
              f"λ_max {curv['lambda_max']:.3g}")
    print(f"wrote {result.workdir}; next: landscape analyze {args.out} --surface 1d")


if __name__ == "__main__":
    main()
