"""The curvature operators behind the curvature probes: v ↦ Cv, masked, preconditioned, flat.

Matrix-free measurements of the curvature of ``loss_fn(params, batch) -> scalar`` at θ are built on
one operator product v ↦ Cv, where C is

- the Hessian H = ∇²L(θ) (``curvature="hessian"``), applied as forward-over-reverse
  ``jax.jvp(jax.grad(L), (θ,), (v,))[1]`` (:func:`hvp`), or
- the generalised Gauss–Newton matrix G = Jᵀ H_out J (``curvature=GaussNewton(output_fn,
  output_loss)``), with J the Jacobian of the outputs z = output_fn(θ, batch) and H_out the Hessian
  of output_loss(z, batch) in z (:func:`gnvp`). G is positive semi-definite when the output loss
  is convex in z (cross-entropy on logits, squared error).

``mask`` (a pytree of Python bools shaped like ``params``, e.g. from
:func:`landscape.probes.param_mask` / :func:`landscape.probes.block_masks`) restricts C to the
selected leaves, C_SS: v is zeroed outside the mask before and after each product, so the
probes measure the diagonal block of the selected parameters (per-layer / per-block curvature).

``preconditioner`` (a pytree of strictly positive diagonal entries P shaped like ``params``, e.g.
from :func:`landscape.probes.adam_preconditioner`) replaces C by the symmetric P^{-1/2} C P^{-1/2},
which has the spectrum of P⁻¹C and the trace tr(P⁻¹C) = Σ_i C_ii / P_i: the optimizer-aware
("preconditioned") sharpness of Cohen et al. (2022). It is one wrapper of the operator product,
v ↦ P^{-1/2} C (P^{-1/2} v) (two elementwise products, no extra operator product), so every
strategy, ``mask`` and ``mesh`` path gets it; S = P^{-1/2} travels with the batch. P's structure
and shapes must match ``params`` (ValueError naming the leaf); a zero, negative or non-finite entry
raises when P is concrete, and under ``jax.jit`` (where values cannot be checked) makes every
result NaN.

The Lanczos and trace probes see C as a flat matrix-vector product (:func:`_flat`): vectors are
flattened with ``ravel_pytree`` at that boundary only, in the params' float dtype (at least
float32).

BatchNorm: which normalisation mode the curvature refers to (batch statistics or running averages)
is the ``loss_fn``'s business (:func:`landscape.bridge.make_loss_fn`'s ``mode``). The two modes are
different functions with different Hessians (Ghorbani et al. 2019 find the outliers come back with
running averages): save the mode with every result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from landscape.probes._precision import _result_dtype
from landscape.probes._precondition import inverse_sqrt
from landscape.probes._strategy import _compiled
from landscape.probes._types import LossFn, PyTree

__all__ = ["GaussNewton", "gnvp", "hvp"]


class GaussNewton(NamedTuple):
    """The generalised Gauss–Newton operator G = Jᵀ H_out J, passed as ``curvature=``.

    Attributes:
      output_fn: ``output_fn(params, batch) -> outputs`` (any pytree, e.g. logits (B, C)).
      output_loss: ``output_loss(outputs, batch) -> scalar`` with
        ``loss_fn(params, batch) == output_loss(output_fn(params, batch), batch)``.

    Both must be hashable (module-level functions or the same objects each call): they key the
    compiled functions.
    """

    output_fn: Callable[[PyTree, PyTree], PyTree]
    output_loss: Callable[[PyTree, PyTree], jax.Array]


# ----------------------------------------------------------------------------------------------
# operator products


def _hvp_impl(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (v,))[1]


def _gnvp_impl(gauss_newton: GaussNewton, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    output_fn, output_loss = gauss_newton
    outputs, jvp_fn = jax.linearize(lambda p: output_fn(p, batch), params)
    jv = jvp_fn(v)
    hjv = jax.jvp(lambda z: jax.grad(output_loss)(z, batch), (outputs,), (jv,))[1]
    return jax.linear_transpose(jvp_fn, params)(hjv)[0]


_hvp_jit = _compiled(_hvp_impl, 1)
_gnvp_jit = _compiled(_gnvp_impl, 1)


def hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product Hv = ∇²L(θ)·v, forward-over-reverse.

    Hv = ``jax.jvp(jax.grad(L), (θ,), (v,))[1]``: one forward and one reverse pass with tangents,
    about 2–3× the cost of a gradient. Jitted internally, keyed on ``loss_fn``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: pytree θ.
      batch: pytree passed to ``loss_fn``.
      v: pytree like ``params`` (same dtypes).

    Returns:
      Hv, a pytree like ``params``.

    Reference:
      Pearlmutter (1994), "Fast exact multiplication by the Hessian".

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p ** 2)
        >>> hvp(loss_fn, jnp.ones(2), jnp.array([1.0, 3.0]), jnp.array([1.0, 1.0])).tolist()
        [1.0, 3.0]
    """
    return _hvp_jit(loss_fn, params, batch, v)


def gnvp(gauss_newton: GaussNewton, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    """Generalised Gauss–Newton vector product Gv = Jᵀ H_out J v.

    J v by ``jax.linearize`` of ``output_fn`` (one forward pass), H_out (Jv) by a Hessian-vector
    product of ``output_loss`` in the outputs, Jᵀ(·) by transposing the linearisation.

    Args:
      gauss_newton: :class:`GaussNewton` ``(output_fn, output_loss)``.
      params: pytree θ.
      batch: pytree passed to both functions.
      v: pytree like ``params``.

    Returns:
      Gv, a pytree like ``params``.

    Reference:
      Schraudolph (2002), "Fast curvature matrix-vector products for second-order gradient
      descent", Sec. 3; Martens (2020), "New insights and perspectives on the natural gradient
      method", Sec. 8.

    Example::

        gn = GaussNewton(lambda p, b: b["x"] @ p, lambda z, b: 0.5 * jnp.sum((z - b["y"]) ** 2))
        gnvp(gn, params, batch, v)     # = XᵀX v for this least-squares loss
    """
    return _gnvp_jit(_check_curvature(gauss_newton), params, batch, v)


def _check_curvature(curvature):
    if isinstance(curvature, GaussNewton):
        return curvature
    if isinstance(curvature, str):
        if curvature == "hessian":
            return curvature
        if curvature == "gauss_newton":
            raise ValueError(
                "curvature='gauss_newton' needs the model outputs: pass "
                "curvature=GaussNewton(output_fn, output_loss) with output_fn(params, batch) -> "
                "outputs and output_loss(outputs, batch) -> scalar."
            )
    elif isinstance(curvature, tuple) and len(curvature) == 2 and all(map(callable, curvature)):
        return GaussNewton(*curvature)
    raise ValueError(
        f"curvature must be 'hessian' or GaussNewton(output_fn, output_loss); got {curvature!r}."
    )


class _Preconditioned(NamedTuple):
    """Static tag of the operator v ↦ S C (S v) with S = P^{-1/2} diagonal (C: ``curvature``).

    S is an array, so it cannot key a compiled function with the tag: it travels in the dynamic
    ``batch`` slot that every Lanczos/trace path already threads, as ``(batch, S)``
    (:func:`_with_preconditioner`); :func:`_tree_operator` unpacks it.
    """

    curvature: str | GaussNewton


def _with_preconditioner(curvature, params, batch, preconditioner):
    """``(curvature, batch)`` for the probes' plumbing: unchanged without a preconditioner, else the
    tag :class:`_Preconditioned` and ``(batch, P^{-1/2})`` (P checked, see ``inverse_sqrt``)."""
    if preconditioner is None:
        return curvature, batch
    scale = inverse_sqrt(params, preconditioner, _result_dtype(params))
    return _Preconditioned(curvature), (batch, scale)


def _tree_operator(loss_fn, curvature, params, batch) -> Callable[[PyTree], PyTree]:
    if isinstance(curvature, _Preconditioned):
        batch, scale = batch
        product = _tree_operator(loss_fn, curvature.curvature, params, batch)

        def rescale(tree):
            return jax.tree.map(lambda s, x: (s * x).astype(x.dtype), scale, tree)

        return lambda v: rescale(product(rescale(v)))
    if curvature == "hessian":
        return lambda v: _hvp_impl(loss_fn, params, batch, v)
    return lambda v: _gnvp_impl(curvature, params, batch, v)


# ----------------------------------------------------------------------------------------------
# flat views (the Lanczos boundary) and masks


def _mask_leaves(params: PyTree, mask: PyTree) -> tuple[bool, ...] | None:
    """The mask as a hashable tuple of Python bools in params' leaf order (None: no mask)."""
    if mask is None:
        return None
    treedef = jax.tree.structure(params)
    try:
        leaves = treedef.flatten_up_to(mask)
    except (ValueError, TypeError) as err:
        raise ValueError(f"mask must have the pytree structure of params ({treedef}): {err}") from None
    out = []
    for leaf in leaves:
        if not isinstance(leaf, (bool, np.bool_)):
            raise ValueError(
                f"mask leaves must be Python bools (see probes.param_mask); got {leaf!r}."
            )
        out.append(bool(leaf))
    if not any(out):
        raise ValueError("mask selects no parameter.")
    return tuple(out)


class _FlatView(NamedTuple):
    size: int  # n, the length of the flat vector
    active: int  # number of entries inside the mask
    dtype: Any  # compute dtype
    to_tree: Callable
    to_flat: Callable
    project: Callable  # zero outside the mask


class _Flat(NamedTuple):
    view: _FlatView
    matvec: Callable  # flat → flat, masked before and after


def _flat_view(mask_leaves, params) -> _FlatView:
    dtype = _result_dtype(params)
    leaves = jax.tree.leaves(params)
    flat_params, unravel = ravel_pytree(params)
    pdtype = flat_params.dtype
    size = int(flat_params.shape[0])
    if mask_leaves is None:
        mask = None
        active = size
    else:
        if len(mask_leaves) != len(leaves):
            raise ValueError(f"mask has {len(mask_leaves)} leaves; params have {len(leaves)}.")
        mask = np.concatenate(
            [np.full(math.prod(jnp.shape(l)), m, dtype=bool) for l, m in zip(leaves, mask_leaves)]
        )
        active = int(mask.sum())

    def to_tree(x):
        return unravel(x.astype(pdtype))

    def to_flat(tree):
        return ravel_pytree(tree)[0].astype(dtype)

    def project(x):
        return x if mask is None else jnp.where(mask, x, jnp.zeros((), x.dtype))

    return _FlatView(size, active, dtype, to_tree, to_flat, project)


def _flat(loss_fn, curvature, mask_leaves, params, batch) -> _Flat:
    view = _flat_view(mask_leaves, params)
    tree_op = _tree_operator(loss_fn, curvature, params, batch)

    def matvec(x):
        return view.project(view.to_flat(tree_op(view.to_tree(view.project(x)))))

    return _Flat(view, matvec)


def _flat_matvec_impl(loss_fn, curvature, mask_leaves, params, batch, x):
    return _flat(loss_fn, curvature, mask_leaves, params, batch).matvec(x)


_flat_matvec = _compiled(_flat_matvec_impl, 3)


def _prepare(curvature, params: PyTree, batch: PyTree, mask: PyTree, preconditioner: PyTree):
    """``(curvature, mask_leaves, batch)`` as the compiled operator takes them: the curvature
    checked, the mask as a tuple of bools, and a preconditioner folded into the tag and batch."""
    curvature = _check_curvature(curvature)
    mask_leaves = _mask_leaves(params, mask)
    curvature, batch = _with_preconditioner(curvature, params, batch, preconditioner)
    return curvature, mask_leaves, batch
