"""Layouts: how a probe lays out its repeated evaluations, and how its pieces are compiled.

Two kinds of repetition, two sets of names.

**Points** (``strategy`` of :func:`landscape.probes.step_probe` and
:func:`landscape.probes.loss_surface`, :data:`STRATEGIES`): K independent evaluations of the loss
(and gradient) at K points, stacked. ``"unroll"`` writes the K calls out in one traced function
(fastest on CPU for convnets), ``"vmap"`` vectorises over the points (fastest on accelerators, K×
the memory of one evaluation), ``"map"`` is a ``jax.lax.map`` (one at a time, lowest memory;
convolutions inside XLA:CPU loops run ~10× slower). A ``chunk_size`` bounds how many points are
evaluated at once (vmapped chunks inside a ``lax.map``). The step probe also has ``"host"``
(:mod:`landscape.probes._step_host`): a Python loop over the points of ONE compiled point
evaluation — a plain loop of jitted gradients by construction, compiling one gradient program
instead of K; concrete arrays only. Its ``"auto"`` measures (:mod:`landscape.probes._step_choice`):
on concrete arrays it runs the host loop until the shape has been probed for a while, then times
the candidates :func:`_point_candidates` once per compiled shape and keeps the fastest; under a
trace it takes the static rule :func:`_static_point_strategy`. The
surface grid (:data:`_SURFACE_STRATEGIES`, no ``"host"``: its ``"unroll"`` with one point per
chunk already is a host loop) maps ``"auto"`` by backend.

**Iterations** (``strategy`` of the curvature probes, :data:`CURVATURE_STRATEGIES`): a dependent
sequence of operator products (Lanczos steps, trace samples). ``"scan"`` puts the whole loop in
one jit (``lax.fori_loop``/``lax.map``): right on GPU/TPU and required under an outer
``jax.jit``. ``"host"`` runs a Python loop calling ONE compiled step, so the operator product is
compiled outside any loop (XLA:CPU runs convolutions inside ``while`` loops about 10× slower,
STACK.md "Loops on XLA:CPU"). ``"auto"`` = ``"host"`` on CPU when the arguments are concrete,
``"scan"`` otherwise.

Compiled pieces are module-level jits keyed on their leading, static configuration arguments
(``loss_fn``, the curvature, the mask, sizes): :func:`_compiled` makes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from landscape.choices import PROBE_STRATEGIES, check_int
from landscape.probes._checks import _is_traced

#: Accepted values of the ``strategy`` argument of :func:`step_probe` / :func:`make_step_probe`.
STRATEGIES = PROBE_STRATEGIES
#: Accepted values of :func:`loss_surface`'s ``strategy`` (its host loop is ``"unroll"``, 1 point per chunk).
_SURFACE_STRATEGIES = tuple(s for s in STRATEGIES if s != "host")
#: Accepted values of the ``strategy`` argument of the Lanczos and trace probes.
CURVATURE_STRATEGIES = ("auto", "scan", "host")


def _compiled(fn: Callable, static: int = 0, **options) -> Callable:
    """``jax.jit(fn)`` with its first ``static`` positional arguments static (``options`` are
    passed on, e.g. ``donate_argnums``)."""
    return jax.jit(fn, static_argnums=tuple(range(static)), **options)


# ----------------------------------------------------------------------------------------------
# points


def _check_strategy(strategy: str, accepted: tuple[str, ...]) -> None:
    if strategy not in accepted:
        raise ValueError(
            f"strategy must be one of {', '.join(repr(s) for s in accepted)}; got {strategy!r}."
        )


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)


def _resolve_point_strategy(strategy: str, chunk_size: int | None) -> str:
    """Validates the step probe's ``strategy``/``chunk_size`` and maps ``"auto"`` to the static
    rule :func:`_static_point_strategy` (the layout under a trace; concrete calls measure)."""
    _check_strategy(strategy, STRATEGIES)
    _check_chunk_size(chunk_size)
    if chunk_size is not None and strategy in ("unroll", "host"):
        raise ValueError(
            "chunk_size applies to strategy 'vmap' or 'map' (it bounds how many points are "
            f"evaluated at once); {strategy!r} always evaluates all K points, one program each "
            "('host') or written out in one ('unroll')."
        )
    return _static_point_strategy(chunk_size) if strategy == "auto" else strategy


def _static_point_strategy(chunk_size: int | None) -> str:
    """``"auto"`` without measuring (under ``jax.jit``): ``"vmap"`` on GPU/TPU or whenever a chunk
    size is given (it asks for bounded memory, which only the mapped layouts give), ``"unroll"`` on
    CPU, the better of the two traceable layouts there (benchmarks/bench_architectures.py, ÷ a
    plain loop of the same gradients: unroll 0.76–0.86 on narrow VGG-11, VGG-5 and ResNet-20 in
    one run, 1.2–1.4 in others, 1.4–1.8 on the quick transformer; map 4–14 on those convnets,
    1.0–1.3 on the transformer: its worst case is far worse)."""
    if chunk_size is not None or jax.default_backend() != "cpu":
        return "vmap"
    return "unroll"


def _point_candidates(chunk_size: int | None, points_mesh: bool,
                      convolves: Callable[[], bool]) -> tuple[str, ...]:
    """The layouts ``"auto"`` times on concrete arrays: on CPU ``("host", "map", "unroll")``, or
    ``("host", "unroll")`` when ``convolves()`` (the loss contains a convolution,
    :func:`_convolves`, asked only here: XLA:CPU runs a convolution inside a loop about 10×
    slower, STACK.md, so ``"map"`` would only waste its timing runs); ``("vmap", "host")`` on
    GPU/TPU; only the static rule with a chunk size or a points mesh (the host loop evaluates one
    point at a time on every device)."""
    if chunk_size is not None or points_mesh:
        return (_static_point_strategy(chunk_size),)
    if jax.default_backend() != "cpu":
        return ("vmap", "host")
    return ("host", "unroll") if convolves() else ("host", "map", "unroll")


def _convolves(loss_fn: Callable, params: Any, batch: Any) -> bool:
    """Whether ``loss_fn(params, batch)`` contains a convolution (traced once, not run)."""
    return "conv_general_dilated" in _primitive_names(jax.make_jaxpr(loss_fn)(params, batch).jaxpr)


def _primitive_names(jaxpr: Any) -> set[str]:
    """The primitives of ``jaxpr`` and of every jaxpr nested in its equations' parameters."""
    names: set[str] = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(inner, "eqns"):
                    names |= _primitive_names(inner)
    return names


def map_with_strategy(at: Callable[[jax.Array], Any], points: jax.Array, strategy: str,
                      chunk_size: int | None = None) -> Any:
    """``at`` over the rows of ``points``, stacked, laid out by a resolved ``strategy``:
    ``"unroll"`` (one call per row, written out), ``"vmap"``, or ``"map"`` (``lax.map``; with
    ``chunk_size``, vmapped chunks of that many rows — also how ``"vmap"`` with a chunk runs)."""
    if strategy == "unroll":
        return jax.tree.map(lambda *rows: jnp.stack(rows),
                            *[at(points[k]) for k in range(points.shape[0])])
    if strategy == "vmap" and chunk_size is None:
        return jax.vmap(at)(points)
    return jax.lax.map(at, points, batch_size=chunk_size)


# ----------------------------------------------------------------------------------------------
# iterations


def _resolve_loop_strategy(strategy: str, *trees) -> str:
    """Validates a curvature probe's ``strategy`` and maps ``"auto"`` to ``"host"`` (CPU, concrete
    ``trees``) or ``"scan"``; ``"host"`` under a trace is a ValueError."""
    _check_strategy(strategy, CURVATURE_STRATEGIES)
    traced = _is_traced(*trees)
    if strategy == "host" and traced:
        raise ValueError(
            "strategy='host' runs a Python loop of compiled steps and needs concrete arrays; under "
            "jax.jit/vmap use strategy='scan' (or 'auto')."
        )
    if strategy == "auto":
        return "host" if (jax.default_backend() == "cpu" and not traced) else "scan"
    return strategy
