"""Internal covariate shift measured through gradients (Santurkar et al. 2018, Definition 2.1)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from landscape.probes._types import LossFn, PyTree

__all__ = ["ICS", "internal_covariate_shift"]



class ICS(NamedTuple):
    """Internal covariate shift of one layer at one step (Santurkar et al. 2018, Definition 2.1).

    All fields are scalars in the dtype of the gradient: ``l2`` = ‖G − G′‖₂, ``cosine`` =
    ⟨G, G′⟩ / (‖G‖₂‖G′‖₂) (NaN when a gradient is exactly zero), ``grad_norm`` = ‖G‖₂ and
    ``shifted_grad_norm`` = ‖G′‖₂.
    """

    l2: jax.Array
    cosine: jax.Array
    grad_norm: jax.Array
    shifted_grad_norm: jax.Array


def internal_covariate_shift(loss_fn: LossFn, params: PyTree, batch: PyTree, updates: PyTree, *,
                             layer: PyTree, earlier: PyTree, grad: PyTree | None = None) -> ICS:
    r"""Internal covariate shift of one layer as a change of its gradient (Definition 2.1).

    For layer i at step t (Santurkar et al. 2018, Definition 2.1)::

        G  = ∇_{W_i} L(W_1^t, …, W_k^t; x^t, y^t)
        G′ = ∇_{W_i} L(W_1^{t+1}, …, W_{i−1}^{t+1}, W_i^t, …, W_k^t; x^t, y^t)
        ICS = ‖G − G′‖₂,   also  cos∠(G, G′) = ⟨G, G′⟩ / (‖G‖₂ ‖G′‖₂)

    i.e. G′ is the gradient of the same layer on the same batch after *only the earlier layers*
    (indices < i) took their step-t update ``updates`` (from the optimizer, W^{t+1} = W^t + update);
    layer i itself and every later layer keep their step-t values.

    Pure and jit-compatible (``layer``/``earlier`` are static pytrees of Python bools; build them
    with :func:`block_masks` or :func:`param_mask`). For a model with batch-dependent
    normalization, ``loss_fn`` should use the batch's own statistics (the training loss).

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``.
        params: θ_t, a pytree.
        batch: the step-t minibatch (passed to ``loss_fn``).
        updates: the optimizer's step-t update, same structure as ``params``
            (``updates, _ = tx.update(∇L(θ_t), opt_state, params)``).
        layer: pytree of bools like ``params`` selecting W_i (one or more leaves).
        earlier: pytree of bools like ``params`` selecting the parameters of layers 1 … i−1.
        grad: ∇L(θ_t; batch) if already computed (saves one gradient evaluation).

    Returns:
        :class:`ICS` ``(l2, cosine, grad_norm, shifted_grad_norm)``.

    Reference:
        Santurkar, Tsipras, Ilyas, Madry (2018), Definition 2.1 and Fig. 3.

    Example:
        >>> loss_fn = lambda p, b: 0.5 * jnp.sum((p["w2"] * p["w1"] * b - 1.0) ** 2)
        >>> p = {"w1": jnp.array(1.0), "w2": jnp.array(2.0)}
        >>> u = {"w1": jnp.array(0.5), "w2": jnp.array(-1.0)}
        >>> r = internal_covariate_shift(loss_fn, p, jnp.array(1.0), u,
        ...                              layer={"w1": False, "w2": True},
        ...                              earlier={"w1": True, "w2": False})
        >>> float(r.grad_norm), float(r.l2)  # G = (2·1 − 1)·1 = 1, G′ = (2·1.5 − 1)·1.5 = 3
        (1.0, 2.0)
    """
    if grad is None:
        grad = jax.grad(loss_fn)(params, batch)
    shifted = jax.tree.map(
        lambda p, u, m: (p + u).astype(jnp.result_type(p)) if m else p, params, updates, earlier)
    grad_shifted = jax.grad(loss_fn)(shifted, batch)
    pick = [m for m in jax.tree.leaves(layer)]
    if not any(pick):
        raise ValueError("the layer mask selects no parameter")
    g = [x for x, m in zip(jax.tree.leaves(grad), pick) if m]
    g2 = [x for x, m in zip(jax.tree.leaves(grad_shifted), pick) if m]
    dtype = jnp.result_type(*g)
    l2 = optax.tree.norm(optax.tree.sub(g, g2)).astype(dtype)
    n1 = optax.tree.norm(g).astype(dtype)
    n2 = optax.tree.norm(g2).astype(dtype)
    cosine = (optax.tree.vdot(g, g2) / (n1 * n2)).astype(dtype)
    return ICS(l2=l2, cosine=cosine, grad_norm=n1, shifted_grad_norm=n2)


