"""Diagonal preconditioners for the curvature probes: build P from an optax state, check it.

An adaptive method steps θ ← θ − η P⁻¹ m with a diagonal P > 0 (its ``preconditioner``); its
stability is governed by the *preconditioned* sharpness λ_max(P⁻¹H) (Cohen et al. 2022), which
:func:`landscape.probes.hessian_eigs` measures with ``preconditioner=P`` as the top eigenvalue of
the symmetric P^{-1/2} H P^{-1/2} (the same spectrum). This module gives

- :func:`adam_preconditioner` — P from an optax Adam / AdamW / NAdam / RMSProp state, and
- ``inverse_sqrt`` (private) — the checks on a user's P and the scale S = P^{-1/2} that the curvature
  probes wrap around their operator product (:mod:`landscape.probes._operators`).

**Adam** (``kind="adam"``), as Cohen et al. (2022) write Adam's preconditioner and as their code
(google/init2winit ``hessian/precondition.py``) computes it from an optax state::

    P = √(v̂ + eps_root) + ε,    v̂ = ν / (1 − β₂^t),

with ν the state's second moment and t = the state's ``count``. optax's ``count`` is the number
of updates applied so far and ν is ν_t after the t-th one, so this P is exactly the denominator
of the last update optax made (``scale_by_adam``: m̂ / (√(v̂ + eps_root) + eps), the same
``optax.tree.bias_correction``): with the defaults ``eps_root = 0``, P = √v̂ + ε (ε outside
the root, like optax's ``eps``; ``eps_root`` is optax's term inside it). With ``b1`` given, the
first-moment bias correction is folded in too, P = (1 − β₁^t)(√(v̂ + eps_root) + ε), so that
Adam's step reads θ ← θ − η P⁻¹ m with the *uncorrected* m (the preconditioned-momentum form
whose stability threshold is (2 + 2β₁)/((1 − β₁)η) = 38/η at β₁ = 0.9); the factor → 1 after
a few hundred steps (β₁^t < 1e-4 for t ≥ 88 at β₁ = 0.9).

**RMSProp** (``kind="rmsprop"``): P = √(ν + eps_root) + ε (Cohen et al.'s RMSProp: √ν + ε), with
ν / (1 − b2^t) instead of ν when the state counts steps (``scale_by_rms(bias_correction=True)``:
pass its ``decay`` as ``b2``). optax's ``rmsprop`` defaults to ``eps_in_sqrt=True``, i.e. a
denominator √(ν + eps): to get the P it actually used, pass ``eps=0.0, eps_root=<its eps>``.

AdamW's decoupled weight decay (θ ← θ − ηλθ) is not preconditioned and is not part of P.

Reference: Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl, Gilmer
(2022), "Adaptive Gradient Methods at the Edge of Stability", arXiv 2207.14484: their definition
of Adam's and RMSProp's preconditioner P_t (background section, where the methods are written as
preconditioned gradient descent / momentum; the equation number could not be checked against the
paper when this was written), their preconditioned sharpness λ₁(P⁻¹H), and their code,
google/init2winit ``hessian/precondition.py`` (this exact formula); Kingma & Ba (2015),
Algorithm 1 (the bias corrections).

Example::

    opt = optax.adam(1e-3)
    state = opt.init(params)
    ...                                           # some updates
    P = probes.adam_preconditioner(state)         # √(ν/(1 − β₂^t)) + ε, like params
    probes.hessian_eigs(loss_fn, params, batch, 1, key=key, num_iters=20, preconditioner=P)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from landscape.probes._checks import _is_traced
from landscape.probes._types import PyTree

__all__ = ["PRECONDITIONER_KINDS", "adam_preconditioner"]

#: Accepted values of :func:`adam_preconditioner`'s ``kind``.
PRECONDITIONER_KINDS = ("adam", "rmsprop")


@functools.cache
def _state_types(kind: str) -> tuple[type, ...]:
    """The optax state types of ``kind``. optax does not export the state of
    ``scale_by_rms(bias_correction=True)`` (``ScaleByRmsWithCountState``): its type is read off a
    state built through the public API, on first use (not at import, which would start JAX's
    backend before a user can configure it)."""
    if kind == "adam":
        return (optax.ScaleByAdamState,)
    with_count = type(optax.scale_by_rms(bias_correction=True).init(jnp.zeros(())))
    return (optax.ScaleByRmsState, with_count)


_INJECT_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
_SUPPORTED = ("optax.ScaleByAdamState (kind='adam': adam, adamw, nadam, nadamw, scale_by_adam), "
              "optax.ScaleByRmsState / ScaleByRmsWithCountState (kind='rmsprop': rmsprop, "
              "scale_by_rms)")


def _find_states(tree, wanted, hyperparams=None):
    """Yield ``(state, hyperparams)`` for every ``wanted`` node in ``tree``, depth first, with the
    hyperparameter dict of the nearest enclosing ``inject_hyperparams`` state (or None)."""
    if isinstance(tree, wanted):
        yield tree, hyperparams
        return
    if isinstance(tree, _INJECT_STATES):
        hyperparams = tree.hyperparams
    children = jax.tree.leaves(tree, is_leaf=lambda x: x is not tree)
    if len(children) == 1 and children[0] is tree:  # a leaf
        return
    for child in children:
        yield from _find_states(child, wanted, hyperparams)


def _check_recorded(hyperparams, given: dict) -> None:
    """Refuse hyperparameters that disagree with those recorded by ``inject_hyperparams``."""
    for name, value in given.items():
        recorded = (hyperparams or {}).get(name)
        if recorded is None or _is_traced(recorded):
            continue
        if not math.isclose(float(recorded), value, rel_tol=1e-6, abs_tol=1e-12):
            raise ValueError(f"{name}={value!r} but the optimizer state records {name}="
                             f"{float(recorded)!r} (inject_hyperparams); pass {name}={float(recorded)!r}.")


def _the_state(opt_state: PyTree, kind: str, b1: float | None):
    """``(state, hyperparams)``: the one state of ``kind`` in ``opt_state`` (else a ValueError)."""
    if kind not in PRECONDITIONER_KINDS:
        raise ValueError(f"kind must be one of {PRECONDITIONER_KINDS}; got {kind!r}.")
    found = list(_find_states(opt_state, _state_types(kind)))
    if not found:
        raise ValueError(f"no {kind} state in opt_state ({type(opt_state).__name__}); supported: "
                         f"{_SUPPORTED}.")
    if len(found) > 1:
        raise ValueError(f"opt_state holds {len(found)} {kind} states (e.g. multi_transform); pass "
                         "the one whose preconditioner you want.")
    if b1 is not None and kind != "adam":
        raise ValueError("b1 folds Adam's first-moment bias correction into P: kind='adam' only.")
    return found[0]


def adam_preconditioner(opt_state: PyTree, *, b2: float = 0.999, eps: float = 1e-8,
                        eps_root: float = 0.0, b1: float | None = None,
                        kind: str = "adam") -> PyTree:
    """The diagonal preconditioner P of Adam (AdamW, NAdam) or RMSProp, from its optax state.

        Adam:     P = √(v̂ + eps_root) + ε,   v̂ = ν / (1 − β₂^t)   [× (1 − β₁^t) with ``b1``]
        RMSProp:  P = √(ν + eps_root) + ε    (ν / (1 − b2^t) when the state counts steps)

    with ν the state's second moment and t its ``count``: exactly the denominator of the last
    update optax made (details, RMSProp's ``eps_in_sqrt``, AdamW: the module docstring).

    Args:
      opt_state: an optax state holding exactly one state of ``kind`` anywhere inside
        (``optax.chain``, ``inject_hyperparams``, ``adamw``'s chain, ``MultiSteps``…), or that
        state itself. Its ν must be shaped like the params (not ``optax.masked``'s partial ν).
      b2, eps, eps_root: the optimizer's β₂ (RMSProp with bias correction: its ``decay``), ε and
        optax ``eps_root``: they are not stored in the state, so they must match the optimizer's;
        when an enclosing ``inject_hyperparams`` state records them, a mismatch raises.
      b1: optional β₁, to fold (1 − β₁^t) into P (Adam only).
      kind: ``"adam"`` (``ScaleByAdamState``) or ``"rmsprop"`` (``ScaleByRmsState``,
        ``ScaleByRmsWithCountState``).

    Returns:
      P, a pytree like ν (so like params), in ν's dtype.

    Raises:
      ValueError: no state of ``kind`` (the message lists the supported ones) or several, a bad
        ``kind``, hyperparameters that disagree with recorded ones, or ``count == 0`` under a bias
        correction (no update yet: v̂ = 0/0; under ``jax.jit`` not checked, and NaN).

    Reference:
      Cohen et al. (2022), arXiv 2207.14484 (the module docstring); Kingma & Ba (2015), Alg. 1.

    Example::

        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> opt = optax.adamw(0.1)
        >>> state = opt.init(params)
        >>> _, state = opt.update({"w": jnp.array([3.0, 4.0])}, state, params)
        >>> adam_preconditioner(state, eps=0.0)["w"].tolist()   # t = 1: √(g²) = |g|
        [3.0, 4.0]
    """
    state, hyperparams = _the_state(opt_state, kind, b1)
    # (not getattr(state, "count"): every NamedTuple has a tuple.count method)
    nu, count = state.nu, (state.count if "count" in state._fields else None)
    if kind == "adam":
        _check_recorded(hyperparams, {"b2": b2, "eps": eps, "eps_root": eps_root,
                                      **({} if b1 is None else {"b1": b1})})
    elif count is not None:
        _check_recorded(hyperparams, {"decay": b2})
    if count is not None:
        if not _is_traced(count) and int(count) == 0:
            raise ValueError("the optimizer state's count is 0: no update has been applied yet, "
                             "so ν = 0 and the bias-corrected v̂ = 0/0 is undefined.")
        nu = optax.tree.bias_correction(nu, b2, count)
    precond = jax.tree.map(lambda v: jnp.sqrt(v + eps_root) + eps, nu)
    if b1 is not None:
        factor = 1 - b1 ** jnp.asarray(count)
        precond = jax.tree.map(lambda p: p * factor.astype(p.dtype), precond)
    return precond


# ----------------------------------------------------------------------------------------------
# checking a preconditioner, and its inverse square root


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in
            jax.tree_util.tree_flatten_with_path(tree)[0]]


def _check_structure(params, preconditioner) -> list:
    """The preconditioner's leaves in params' order, or a ValueError naming the first leaf that
    does not match (missing, extra, or of another shape)."""
    treedef = jax.tree.structure(params)
    if jax.tree.structure(preconditioner) != treedef:
        names, given = _leaf_names(params), _leaf_names(preconditioner)
        missing = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        where = (f"leaf {missing[0]} of params is missing" if missing else
                 f"leaf {extra[0]} is not in params" if extra else
                 f"the containers differ ({jax.tree.structure(preconditioner)} vs {treedef})")
        raise ValueError(f"preconditioner must have the pytree structure of params: {where}.")
    leaves = jax.tree.leaves(preconditioner)
    for name, p, q in zip(_leaf_names(params), jax.tree.leaves(params), leaves):
        if jnp.shape(q) != jnp.shape(p):
            raise ValueError(f"preconditioner leaf {name} has shape {jnp.shape(q)}; the parameter "
                             f"has shape {jnp.shape(p)}.")
    return leaves


@jax.jit
def _entries_ok(leaves):
    return jnp.stack([jnp.all(jnp.isfinite(q) & (q > 0)) for q in leaves])


def _check_values(params, leaves) -> None:
    """Eager check that every entry is finite and > 0 (one dispatch, one bool per leaf back)."""
    ok = np.asarray(_entries_ok([jnp.asarray(q) for q in leaves]))
    if ok.all():
        return
    i = int(np.flatnonzero(~ok)[0])
    name, q = _leaf_names(params)[i], np.asarray(leaves[i])
    a = q.reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(a) & (a > 0)))
    index = np.unravel_index(bad[0], q.shape) if q.ndim else ()
    count = "1 entry that is" if bad.size == 1 else f"{bad.size} entries that are"
    raise ValueError(f"preconditioner leaf {name} has {count} not finite and > 0 (first at "
                     f"index {tuple(map(int, index))}: {float(a[bad[0]])!r}); P must be "
                     "strictly positive and finite.")


@functools.partial(jax.jit, static_argnums=1)
def _inverse_sqrt_impl(leaves, dtype):
    def one(q):
        q = q.astype(dtype)
        return jnp.where(jnp.isfinite(q) & (q > 0), 1 / jnp.sqrt(q), jnp.nan)

    return [one(q) for q in leaves]


def inverse_sqrt(params: PyTree, preconditioner: PyTree, dtype) -> PyTree:
    """S = P^{-1/2} leafwise in ``dtype``, shaped like ``params``, after checking P.

    The structure and shapes are always checked (ValueError naming the leaf). The values — every
    entry finite and > 0 — are checked when P is concrete; under ``jax.jit`` they cannot be, and an
    entry that is zero, negative or not finite gives a NaN scale, so every result is NaN.
    """
    leaves = _check_structure(params, preconditioner)
    if not _is_traced(leaves):
        _check_values(params, leaves)
    scale = _inverse_sqrt_impl([jnp.asarray(q) for q in leaves], jnp.dtype(dtype))
    return jax.tree.unflatten(jax.tree.structure(params), scale)
