"""The one place where a Flax NNX model becomes pure functions.

Probes take ``loss_fn(params, batch) -> scalar``. For an NNX model, :func:`split` gives
``(graphdef, params, state)`` — ``params`` the ``nnx.Param`` leaves (differentiated), ``state``
everything else (running statistics) — and :func:`make_loss_fn` builds the loss for one explicit
normalization mode:

- ``mode="batch_stats"`` (default; the paper's loss, Santurkar et al. Sec. 3.2): batch-normalized
  layers use the statistics of ``batch`` itself. Running statistics are updated on a throw-away copy
  of the model (``nnx.merge(..., copy=True)``), never on the caller's model or ``state``.
- ``mode="running_average"``: the layers use the stored running statistics (eval behaviour).

Any NNX model whose ``__call__(x, *, use_running_average=None)`` forwards that flag to its
normalization layers works (``landscape.models`` also accept ``rng`` and ``taps``).

A *batch* is a dict ``{"x": inputs, "y": targets, "state": model state, "rng": key or None}``
(:func:`make_batch`). Carrying the model state inside the batch keeps ``loss_fn`` a fixed function,
so jitted probes compile once per run and see current running statistics at every step.

Example:
    >>> model = build_model("mlp", input_shape=(8, 8, 1), width=0.1)
    >>> graphdef, params, state = split(model)
    >>> loss_fn = make_loss_fn(model)
    >>> loss = loss_fn(params, make_batch(jnp.zeros((4, 8, 8, 1)), jnp.zeros(4, jnp.int32), state))
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from landscape import parallel
from landscape.choices import BN_MODES

__all__ = [
    "BN_MODES",
    "cast",
    "check_mode",
    "evaluate",
    "make_batch",
    "make_block_output_fn",
    "make_loss_fn",
    "make_train_objective",
    "merge",
    "predict",
    "split",
    "loss_value",
]

Array = jax.Array
BNMode = Literal["batch_stats", "running_average"]


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, state)``: the ``nnx.Param`` leaves and everything else, as pure pytrees."""
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.as_pure(params), nnx.as_pure(state)


def cast(model: nnx.Module, dtype: Any) -> nnx.Module:
    """Cast every floating-point array of ``model`` (parameters and statistics) to ``dtype``, in
    place; returns ``model``. float64 needs JAX's x64 mode (``jax.enable_x64``)."""
    state = nnx.state(model)
    nnx.update(model, jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, state))
    return model


def merge(graphdef: nnx.GraphDef, params: nnx.State, state: nnx.State) -> nnx.Module:
    """A fresh model from pure pieces (a copy: mutating it never touches ``params`` or ``state``)."""
    return nnx.merge(graphdef, params, state, copy=True)


def make_batch(x: Any, y: Any, state: nnx.State, rng: Array | None = None) -> dict[str, Any]:
    """The batch pytree the bridge's losses take (see the module docstring)."""
    return {"x": x, "y": y, "state": state, "rng": rng}


def check_mode(mode: str) -> bool:
    """True for ``"running_average"``, False for ``"batch_stats"``; ValueError otherwise."""
    if mode not in BN_MODES:
        raise ValueError(f"unknown normalization mode {mode!r}; expected one of {', '.join(BN_MODES)}")
    return mode == "running_average"


#: Loss kinds :func:`loss_value` accepts; a model names its own as ``model.loss_kind``.
LOSS_KINDS = ("cross_entropy", "mse", "mse_sum", "mse_onehot")


def loss_value(kind: str, out: Array, y: Array) -> tuple[Array, Array]:
    """Loss and accuracy for ``kind`` in :data:`LOSS_KINDS`.

    Cross-entropy: ``mean_i −log softmax(out_i)[y_i]`` with integer labels. MSE (the deep linear
    network's objective): ``mean_i ‖out_i − y_i‖²`` (squared error summed over outputs), or with
    ``"mse_sum"`` the total ``Σ_i ‖out_i − y_i‖²`` = ‖W X − A X‖²_F over the batch (the paper's
    printed objective, see :class:`landscape.models.DeepLinear`); accuracy is NaN for both, and
    for cross-entropy when any output is non-finite (a diverged network). ``"mse_onehot"``: a
    classifier trained by squared error on one-hot targets, ``mean_i ½‖out_i − e_{y_i}‖²`` with
    integer labels y (Cohen et al. 2021's objective, their ``SquaredLoss`` / n); accuracy by argmax.
    """
    if kind == "cross_entropy":
        loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        acc = jnp.mean(jnp.argmax(out, axis=-1) == y)
        # argmax of NaN logits is 0, which would report chance-level accuracy for a diverged net
        acc = jnp.where(jnp.all(jnp.isfinite(out)), acc, jnp.nan)
        return loss, acc
    if kind == "mse_onehot":
        target = jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)
        loss = 0.5 * jnp.mean(jnp.sum(jnp.square(out - target), axis=-1))
        acc = jnp.mean(jnp.argmax(out, axis=-1) == y)
        return loss, jnp.where(jnp.all(jnp.isfinite(out)), acc, jnp.nan)
    if kind in ("mse", "mse_sum"):
        per_example = jnp.sum(jnp.square(out - y), axis=-1)
        loss = jnp.sum(per_example) if kind == "mse_sum" else jnp.mean(per_example)
        return loss, jnp.full((), jnp.nan, loss.dtype)
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSS_KINDS)}")


def _forward(graphdef, params, batch, use_running_average, *, taps=None):
    # Only ``use_running_average`` is required of a model's __call__; ``rng`` and ``taps`` are
    # passed when used, so any NNX module that forwards ``use_running_average`` to its
    # normalization layers works with the bridge (see examples/custom_model.py).
    model = merge(graphdef, params, batch["state"])
    kwargs: dict[str, Any] = {"use_running_average": use_running_average}
    if batch.get("rng") is not None:
        kwargs["rng"] = batch["rng"]
    if taps is not None:
        kwargs["taps"] = taps
    return model, model(batch["x"], **kwargs)


def _graphdef_and_kind(model: nnx.Module | nnx.GraphDef, loss: str | None) -> tuple[nnx.GraphDef, str]:
    if isinstance(model, nnx.Module):
        return nnx.graphdef(model), loss or getattr(model, "loss_kind", "cross_entropy")
    return model, loss or "cross_entropy"


def make_loss_fn(model: nnx.Module | nnx.GraphDef, *, mode: BNMode = "batch_stats",
                 loss: str | None = None):
    """``loss_fn(params, batch) -> scalar`` for ``model`` (a module, or its graphdef).

    ``mode`` fixes the normalization behaviour (see the module docstring); ``loss`` defaults to the
    model's ``loss_kind`` ("cross_entropy" when only a graphdef is given). The returned function is
    pure: it never changes running statistics.
    """
    use_running_average = check_mode(mode)
    graphdef, kind = _graphdef_and_kind(model, loss)

    def loss_fn(params, batch):
        _, out = _forward(graphdef, params, batch, use_running_average)
        return loss_value(kind, out, batch["y"])[0]

    return loss_fn


def make_train_objective(model: nnx.Module | nnx.GraphDef, *, loss: str | None = None):
    """``objective(params, batch) -> (loss, (new_state, accuracy))``: the training loss.

    The model runs in train mode (batch statistics; the noise key ``batch["rng"]`` when given) on a
    copy; ``new_state`` is the copy's state afterwards — the running statistics advanced by this
    batch, which a training step keeps and a probe discards. Differentiate with
    ``jax.value_and_grad(objective, has_aux=True)``. Its value equals
    ``make_loss_fn(model, mode="batch_stats")(params, batch)``.
    """
    graphdef, kind = _graphdef_and_kind(model, loss)

    def objective(params, batch):
        model, out = _forward(graphdef, params, batch, False)
        value, acc = loss_value(kind, out, batch["y"])
        return value, (nnx.as_pure(nnx.state(model, nnx.Not(nnx.Param))), acc)

    return objective


def predict(graphdef: nnx.GraphDef, params: nnx.State, state: nnx.State, x: Array,
            *, mode: BNMode = "running_average") -> Array:
    """Model outputs for ``x`` (eval mode by default: running statistics, no noise)."""
    model = merge(graphdef, params, state)
    return model(x, use_running_average=check_mode(mode))


def evaluate(model: nnx.Module | nnx.GraphDef, params: nnx.State, state: nnx.State, x, y, *,
             batch_size: int = 1000, mode: BNMode = "running_average",
             loss: str | None = None) -> tuple[float, float]:
    """Loss and accuracy over ``(x, y)`` in chunks of ``batch_size`` (eval mode by default): the
    mean over all examples, or the total for a summed loss (``"mse_sum"``)."""
    graphdef, kind = _graphdef_and_kind(model, loss)
    fn = _eval_fn(graphdef, check_mode(mode), kind)
    n = len(x)
    summed = kind == "mse_sum"
    total_loss, total_acc = 0.0, 0.0
    for i in range(0, n, batch_size):
        xb, yb = jnp.asarray(x[i:i + batch_size]), jnp.asarray(y[i:i + batch_size])
        l, a = parallel.fetch(fn(params, state, xb, yb))
        total_loss += float(l) * (1 if summed else len(xb))
        total_acc += float(a) * len(xb)
    return total_loss / (1 if summed else n), total_acc / n


@functools.lru_cache(maxsize=32)
def make_block_output_fn(graphdef: nnx.GraphDef, block: str):
    """Jitted ``fn(params, state, x, rng) -> activation``: block ``block``'s normalization output
    (the input to its nonlinearity) in train mode, on a throw-away copy of the model (its running
    statistics update is dropped). Needs a model whose ``__call__`` accepts ``collect=`` (the
    models of :mod:`landscape.models`). Cached per (graphdef, block): compiled once per run."""
    @jax.jit
    def fn(params, state, x, rng):
        model = merge(graphdef, params, state)
        collect: dict[str, Any] = {}
        model(x, use_running_average=False, rng=rng, collect=collect)
        return collect[block]

    return fn


@functools.lru_cache(maxsize=32)
def _eval_fn(graphdef: nnx.GraphDef, use_running_average: bool, kind: str):
    @jax.jit
    def fn(params, state, x, y):
        out = merge(graphdef, params, state)(x, use_running_average=use_running_average)
        return loss_value(kind, out, y)

    return fn
