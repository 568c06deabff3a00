"""The one-shot step probe and its layout, measured: :func:`step_probe`, :func:`make_step_probe`,
:func:`choose_strategy`.

**Why measure.** No layout of the K + 1 gradients wins on every model (benchmarks/
bench_architectures.py, this project's 2-core CPUs, ratio = probe ÷ a Python loop of the same
jitted gradients): the unrolled program runs 0.8× on a narrow VGG-11 but 1.2–1.4× on a narrow
ResNet-20, a VGG-5 and a small transformer, where a loop of one compiled gradient is the better
program. ``"host"`` (:mod:`landscape.probes._step_host`) *is* that loop, so a choice between it
and the one-program layout never loses to the loop by more than the timing noise.

**The rule.** ``strategy="auto"`` on concrete arrays looks up the choice for the call's compiled
shape — the key is (``loss_fn``, backend, the pytree structure, shapes and dtypes of ``params``,
``batch``, ``direction`` or None and ``value_and_grad`` or None, K, whether there is a floor,
``floor_eps``, ``chunk_size``, ``mesh``). On a miss the shape is *on trial*: ``"auto"`` runs the
host loop (one compile: a one-off probe never pays for the layouts it will not use) and times each
call. The trial ends when a warm call runs in under :data:`_SKIP_BELOW_SECONDS` (10 ms: a tiny
model, where another layout could save milliseconds and its compile would cost seconds; "host" is
kept) or when the warm calls add up to :data:`_TRIAL_COMPILES` (3) × the host loop's compile
seconds (the shape is probed often enough that compiling another layout can pay). That call
measures the other candidates (:func:`_measure`): each in turn is called once (compile + run) and
once more (run), then once more each, round-robin with the host loop (a burst of load on a shared
machine should not decide alone); the one with the fastest warm call is recorded. The rest are
skipped once an alternative to the host loop compiled for longer than :data:`_PAYBACK_CALLS` (20)
of its warm calls (a further layout, compiling at least as long, could not repay its compile
within 20 probes). Candidates
(:func:`landscape.probes._strategy._point_candidates`): ``("host", "map", "unroll")`` on CPU,
``"map"`` dropped when the loss contains a convolution (XLA:CPU runs convolutions inside loops
~10× slower), ``("vmap", "host")`` on GPU/TPU; with a ``chunk_size`` or a points ``mesh`` only
the static rule (nothing to measure). Under a trace (inside your ``jax.jit``,
:func:`landscape.probes.step_probe_fn`) nothing can be timed and ``"auto"`` is the static rule:
``"unroll"`` on CPU, ``"vmap"`` elsewhere and with a chunk size
(:func:`landscape.probes._strategy._static_point_strategy`). :func:`clear_strategy_cache` forgets
every choice and trial; :func:`choose_strategy` measures at once (other candidates, an injected
timer) and records its choice for later ``"auto"`` calls of the same shape.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from landscape.choices import check_int, check_number
from landscape.probes._checks import _is_traced
from landscape.probes._precision import _check_floor_eps, _result_dtype
from landscape.probes._step import (DEFAULT_FLOOR_FACTOR, StepProbe, _step_probe_jit,
                                    step_probe_fn)
from landscape.probes._step_host import host_step_probe
from landscape.probes._strategy import (_convolves, _point_candidates,
                                        _resolve_point_strategy, _static_point_strategy)
from landscape.probes._types import LossFn, PyTree

__all__ = ["StrategyChoice", "choose_strategy", "clear_strategy_cache", "make_step_probe",
           "step_probe"]


class StrategyChoice(NamedTuple):
    """Result of :func:`choose_strategy`.

    Attributes:
      strategy: the candidate whose second call was fastest (ties: the earlier candidate).
      seconds: ``{candidate: run seconds}``, the fastest warm call of each timed candidate.
      compile_seconds: ``{candidate: first call − second call}``, ≈ its trace and compile time.
    """

    strategy: str
    seconds: dict[str, float]
    compile_seconds: dict[str, float]


class _Options(NamedTuple):
    """The static arguments of one probe: what a compiled layout is specialised on."""

    loss_fn: LossFn
    chunk_size: int | None
    floor_factor: float
    floor_eps: float | None
    mesh: Mesh | None


def _options(loss_fn: LossFn, chunk_size: int | None, floor_factor: float,
             floor_eps: float | None, mesh: Mesh | None) -> _Options:
    floor_factor = float(check_number("floor_factor", floor_factor, minimum=0))
    return _Options(loss_fn, chunk_size, floor_factor, _check_floor_eps(floor_eps), mesh)


#: The measured choices, keyed by :func:`_choice_key`; :func:`clear_strategy_cache` empties it.
_CHOICES: dict[tuple, StrategyChoice] = {}


def clear_strategy_cache() -> None:
    """Forget every measured choice (and every trial under way): the next ``strategy="auto"``
    call of each shape starts its trial again."""
    _CHOICES.clear()
    _TRIALS.clear()


def _signature(tree: PyTree) -> tuple:
    """The pytree structure and every leaf's shape and dtype (what a compiled program is keyed on)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _choice_key(options: _Options, args: tuple) -> tuple:
    params, batch, step_sizes, direction, value_and_grad = args
    return (options.loss_fn, jax.default_backend(), _signature(params), _signature(batch),
            _signature(direction), _signature(value_and_grad), jnp.shape(step_sizes),
            options.floor_factor > 0, options.floor_eps, options.chunk_size, options.mesh)


def _run(strategy: str, options: _Options, args: tuple) -> StepProbe:
    """The probe in one resolved layout."""
    params, batch, step_sizes, direction, value_and_grad = args
    if strategy == "host":
        if options.mesh is not None:
            raise ValueError("strategy='host' evaluates the points one after the other on every "
                             "device; a points mesh needs 'unroll', 'vmap' or 'map'.")
        return host_step_probe(options.loss_fn, options.floor_factor, options.floor_eps, *args)
    # Casting here keeps one jit cache entry whatever dtype the caller's step sizes have.
    step_sizes = jnp.asarray(step_sizes, dtype=_result_dtype(params))
    return _step_probe_jit(options.loss_fn, strategy, options.chunk_size, options.floor_factor,
                           options.mesh, options.floor_eps, params, batch, step_sizes, direction,
                           value_and_grad)


def _wall_seconds(strategy: str, run: Callable[[], Any]) -> float:
    """The default timer: wall-clock seconds of ``run()`` until its result is ready."""
    start = time.perf_counter()
    jax.block_until_ready(run())
    return time.perf_counter() - start


#: Seconds: once a candidate's warm call takes less, the remaining ones are neither compiled nor
#: timed — another layout could save a few ms per call, and compiling it costs ≥ 0.3 s even for a
#: tiny model (seconds to minutes for a real one).
_SKIP_BELOW_SECONDS = 0.01


#: Calls: once an alternative's compile seconds (any candidate after the first) exceed this many
#: of its warm calls, the remaining candidates are skipped (a further layout could not repay its
#: compile within this many probes).
_PAYBACK_CALLS = 20


#: Warm calls timed per candidate (the minimum is kept): one more round, round-robin, halves the
#: chance that a burst of load on a shared machine decides the choice.
_REPEATS = 2

#: Seconds: after those rounds, more (round-robin, at most :data:`_MAX_ROUNDS` in all) until the
#: fastest candidate's warm calls add up to this long — a 90 ms probe is timed about 11 times, as
#: two samples of it differ by ±10 % here (the quick transformer: host 89 ms against map 97 ms in
#: two calls each, 90 against 82 ms in medians of 15).
_TIMING_SECONDS = 1.0
_MAX_ROUNDS = 20


class _Timings:
    """What has been timed of one shape: each layout's first result and first-call seconds, its
    warm call seconds, and its compile seconds (first call − first warm call)."""

    def __init__(self) -> None:
        self.results: dict[str, StepProbe] = {}
        self.first_seconds: dict[str, float] = {}
        self.warm: dict[str, list[float]] = {}
        self.compile_seconds: dict[str, float] = {}

    def add_warm(self, strategy: str, seconds: float) -> None:
        if strategy not in self.warm:
            self.compile_seconds[strategy] = max(self.first_seconds[strategy] - seconds, 0.0)
        self.warm.setdefault(strategy, []).append(seconds)


def _measure(candidates: Sequence[str], run: Callable[[str], StepProbe],
             timer: Callable[[str, Callable[[], Any]], float], skip_below: float,
             repeats: int, payback_calls: int | None = _PAYBACK_CALLS,
             timed: _Timings | None = None, timing_seconds: float = _TIMING_SECONDS
             ) -> tuple[StrategyChoice, StepProbe]:
    """Each candidate in turn called once (compile + run) and once more (run), until one runs in
    under ``skip_below`` seconds or one compiled for longer than ``payback_calls`` of its warm
    calls; then ``repeats`` − 1 more warm rounds over the timed ones, round-robin, and more
    until the fastest one's warm calls add up to ``timing_seconds`` (:data:`_MAX_ROUNDS` at
    most). The payback rule looks only at the alternatives: not at the first layout (it runs
    whatever the choice, so its compile is spent) nor at those already in ``timed`` (the host
    loop's trial, :func:`_measured`). The choice (fastest warm call of each) and the winner's
    first result."""
    timed = timed or _Timings()
    fresh: list[str] = []  # the alternatives timed here

    def first(strategy: str) -> StepProbe:
        timed.results[strategy] = run(strategy)
        return timed.results[strategy]

    def enough() -> bool:
        if not timed.warm:
            return False
        fastest = min(min(t) for t in timed.warm.values())
        unpaid = payback_calls is not None and any(
            timed.compile_seconds[s] > payback_calls * min(timed.warm[s]) for s in fresh)
        return fastest < skip_below or unpaid

    for strategy in candidates:
        if strategy in timed.warm:
            continue
        if enough():
            break
        timed.first_seconds[strategy] = timer(strategy, functools.partial(first, strategy))
        timed.add_warm(strategy, timer(strategy, functools.partial(run, strategy)))
        if len(timed.warm) > 1:
            fresh.append(strategy)

    def timed_enough(rounds: int) -> bool:
        fastest = min(timed.warm.values(), key=min)
        return rounds >= repeats - 1 and (sum(fastest) >= timing_seconds or rounds >= _MAX_ROUNDS)

    rounds = 0
    while len(timed.warm) > 1 and not timed_enough(rounds):
        for strategy, times in timed.warm.items():
            times.append(timer(strategy, functools.partial(run, strategy)))
        rounds += 1
    seconds = {strategy: min(times) for strategy, times in timed.warm.items()}
    best = min(seconds, key=seconds.__getitem__)
    return StrategyChoice(best, seconds, dict(timed.compile_seconds)), timed.results[best]


#: ``"auto"`` runs the host loop (timed) until its warm calls add up to this many times its own
#: compile seconds, and only then times the other candidates: a one-off probe pays one compile,
#: not every layout's, and the one-program layouts (K + 1 gradients each) are compiled only for a
#: shape probed often enough to make that worth it (VGG-11 w0.25 on this project's CPU: host
#: compile 6.9 s, warm 2.8 s → the 9th call measures; the quick transformer, 4.6 s and 80 ms: the
#: 175th).
_TRIAL_COMPILES = 3.0

#: The host loop's timings per shape while ``"auto"`` has it on trial (key: :func:`_choice_key`).
_TRIALS: dict[tuple, _Timings] = {}


def _measured(options: _Options, args: tuple) -> StepProbe:
    """``"auto"`` on concrete arrays: the shape's recorded choice; else the host loop on trial,
    timed; once the trial is over, the other candidates timed too and the fastest recorded."""
    key = _choice_key(options, args)
    if key in _CHOICES:
        return _run(_CHOICES[key].strategy, options, args)
    if options.chunk_size is not None or options.mesh is not None:  # nothing to measure
        return _run(_static_point_strategy(options.chunk_size), options, args)
    trial = _TRIALS.setdefault(key, _Timings())
    out: list[StepProbe] = []
    seconds = _wall_seconds("host", lambda: out.append(_run("host", options, args)) or out[0])
    if "host" not in trial.first_seconds:
        trial.first_seconds["host"] = seconds
        return out[0]
    trial.add_warm("host", seconds)
    # the trial ends on a warm call under skip_below (a tiny model: "host" is kept, nothing else is
    # compiled or traced) or once the warm calls add up to _TRIAL_COMPILES × the host compile
    warm = trial.warm["host"]
    fast = min(warm) < _SKIP_BELOW_SECONDS
    if not fast and sum(warm) < _TRIAL_COMPILES * trial.compile_seconds["host"]:
        return out[0]
    trial.results["host"] = out[0]
    del _TRIALS[key]
    candidates = ("host",) if fast else _point_candidates(
        None, False, functools.partial(_convolves, options.loss_fn, *args[:2]))
    _CHOICES[key], best = _measure(candidates, lambda s: _run(s, options, args), _wall_seconds,
                                   _SKIP_BELOW_SECONDS, _REPEATS, timed=trial)
    return best


def choose_strategy(loss_fn: LossFn, params: PyTree, batch: PyTree, step_sizes: jax.Array, *,
                    candidates: Sequence[str] | None = None, direction: PyTree = None,
                    value_and_grad: tuple[jax.Array, PyTree] | None = None,
                    chunk_size: int | None = None,
                    floor_factor: float = DEFAULT_FLOOR_FACTOR, floor_eps: float | None = None,
                    mesh: Mesh | None = None,
                    timer: Callable[[str, Callable[[], Any]], float] | None = None,
                    skip_below: float = _SKIP_BELOW_SECONDS, repeats: int = _REPEATS,
                    payback_calls: int | None = _PAYBACK_CALLS,
                    timing_seconds: float = _TIMING_SECONDS) -> StrategyChoice:
    """Times :func:`step_probe` in each candidate layout and keeps the fastest for this shape.

    For each candidate s in turn: t₁(s) = the first call (trace, compile and run), t₂(s) = the
    fastest of ``repeats`` warm calls (run only; the second call, then round-robin), until some
    t₂ < ``skip_below``; the choice is argmin_s t₂(s) over the timed candidates, recorded for every later ``strategy="auto"`` call of the same compiled shape (the
    key: module docstring). Measure on the arguments you will probe with: the winner depends on
    the model, the batch and the backend.

    Args:
      loss_fn, params, batch, step_sizes, direction, value_and_grad, chunk_size, floor_factor,
        floor_eps, mesh: as in :func:`step_probe` (concrete arrays).
      candidates: layouts to time, each one of ``"unroll"``, ``"vmap"``, ``"map"``, ``"host"``;
        default ``("host", "unroll")`` on CPU, ``("vmap", "host")`` on GPU/TPU.
      timer: ``timer(strategy, run) -> seconds``: calls ``run()`` once and returns how long it
        took; default wall-clock time until the result is ready.
      skip_below: seconds; once a candidate's second call is faster, the rest are skipped (0:
        time every candidate).
      repeats: warm calls timed per candidate (≥ 1; more rounds only when two or more are timed).
      timing_seconds: after ``repeats``, more warm rounds (20 in all at most) until the fastest
        candidate's warm calls add up to this many seconds, so that fast probes are timed often
        enough for their noise not to decide (0: exactly ``repeats``).
      payback_calls: once a candidate after the first compiled for longer than this many of its
        warm calls, the rest are skipped (they could not repay their compile in that many
        probes); None: time every candidate.

    Returns:
      :class:`StrategyChoice` ``(strategy, seconds, compile_seconds)``.

    Raises:
      ValueError: a candidate that is not a concrete layout (``"auto"``, unknown, ``"host"``
        with a mesh or ``"unroll"``/``"host"`` with a chunk size), or traced arguments.

    Example::

        choice = choose_strategy(loss_fn, params, batch, lr_multiples(0.1))
        choice.strategy, choice.seconds          # "host", {"host": 0.81, "unroll": 1.02}
        step_probe(loss_fn, params, batch, lr_multiples(0.1))   # "auto" reuses the choice
    """
    options = _options(loss_fn, chunk_size, floor_factor, floor_eps, mesh)
    args = (params, batch, step_sizes, direction, value_and_grad)
    if candidates is None:
        candidates = _point_candidates(chunk_size, mesh is not None,
                                       functools.partial(_convolves, loss_fn, params, batch))
    candidates = tuple(candidates)
    if not candidates or "auto" in candidates:
        raise ValueError(f"candidates must be concrete layouts, not {candidates!r}.")
    for strategy in candidates:
        _resolve_point_strategy(strategy, chunk_size)
    if _is_traced(*args):
        raise ValueError("choose_strategy times compiled calls and needs concrete arrays.")
    choice, _ = _measure(candidates, lambda s: _run(s, options, args), timer or _wall_seconds,
                         skip_below, check_int("repeats", repeats),
                         None if payback_calls is None else check_int("payback_calls",
                                                                      payback_calls),
                         timing_seconds=float(check_number("timing_seconds", timing_seconds,
                                                           minimum=0)))
    _CHOICES[_choice_key(options, args)] = choice
    return choice


# ----------------------------------------------------------------------------------------------
# the public probe and its builder


def step_probe(loss_fn: LossFn, params: PyTree, batch: PyTree, step_sizes: jax.Array, *,
               direction: PyTree = None, strategy: str = "auto", chunk_size: int | None = None,
               floor_factor: float = DEFAULT_FLOOR_FACTOR, floor_eps: float | None = None,
               value_and_grad: tuple[jax.Array, PyTree] | None = None,
               mesh: Mesh | None = None) -> StepProbe:
    """Loss and gradient along θ − η·d for K step sizes (Santurkar et al. 2018, Fig. 4).

    With g = ∇L(θ) and d = ``direction`` (default g), for each η_k:

        loss_k        = L(θ − η_k d)
        grad_change_k = ‖∇L(θ − η_k d) − g‖₂
        floor         = ‖∇L(θ ⊕ δ) − g‖₂,  δ_i = ±ε·|θ_i|   (rounding floor, same arithmetic)
        effective_β   = max_k grad_change_k / (|η_k| ‖d‖₂)   over k with grad_change_k > c·floor

    (c = ``floor_factor``; which η enter, dtypes, layouts and jitting: :mod:`landscape.probes._step`;
    the measured ``"auto"``: this module's docstring.)

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, hashable; for BatchNorm nets, the
        batch-statistics loss (train mode) with no side effects on running averages (Fig. 4).
      params: pytree θ.
      batch: pytree passed unchanged to ``loss_fn`` (the same minibatch as the step).
      step_sizes: (K,) absolute step sizes η, K ≥ 1, any order (results keep it), may contain 0.
        Negative η move along +d. See :func:`lr_multiples` for the paper's range.
      direction: pytree like ``params``; default g. Gradient changes are still measured against g.
      strategy: how the K evaluations are laid out: ``"unroll"``, ``"vmap"``, ``"map"``, ``"host"``
        (a Python loop of one compiled point; concrete arrays only) or ``"auto"`` (on concrete
        arrays the host loop until the shape has been probed for 3 × its compile time, then the
        fastest of its candidates, measured once per compiled shape and cached,
        :func:`choose_strategy`; under a trace the static rule; module docstring).
      chunk_size: for ``"vmap"``/``"map"``: at most this many points at once (not with
        ``"unroll"`` or ``"host"``).
      floor_factor: c above; 0 skips the floor (no extra gradient, ``grad_change_floor`` NaN).
      floor_eps: ε above, never below the dtype's own eps; default one ulp of the params' dtype.
        ``arithmetic_eps(dtype)`` measures the noise of coarser matmuls (TF32, bfloat16 passes).
      value_and_grad: ``(L(θ), g)`` already computed on this ``batch`` with this ``loss_fn`` (a
        training step's own gradient): the probe then costs K (+1 for the floor) gradients.
      mesh: spread the K points over this mesh's devices (the *points* layout).

    Returns:
      A :class:`StepProbe` with fields ``step_sizes`` (K,), ``loss0`` (), ``grad_norm`` (),
      ``loss`` (K,), ``grad_change`` (K,), ``effective_beta`` (), ``grad_change_floor`` (),
      ``beta_included`` (K,).

    Raises:
      ValueError: unknown ``strategy``, bad ``chunk_size``, ``step_sizes`` not 1-D with K ≥ 1,
        ``direction`` not shaped like ``params``, or ``"host"`` under a trace or with a ``mesh``.

    Reference:
      Santurkar, Tsipras, Ilyas, Madry (2018), Sec. 3.2, Fig. 4, App. A.2.2.

    Example::

        >>> loss_fn = lambda p, b: 0.5 * jnp.sum(b * p["w"] ** 2)   # β = max(b) = 3
        >>> r = step_probe(loss_fn, {"w": jnp.ones(2)}, jnp.array([1.0, 3.0]),
        ...                jnp.array([0.1, 0.2]))
        >>> float(r.effective_beta)   # ‖A g‖ / ‖g‖ = ‖(1, 9)‖ / ‖(1, 3)‖
        2.863...
    """
    resolved = _resolve_point_strategy(strategy, chunk_size)
    options = _options(loss_fn, chunk_size, floor_factor, floor_eps, mesh)
    args = (params, batch, step_sizes, direction, value_and_grad)
    if strategy == "auto" and not _is_traced(*args):
        return _measured(options, args)
    return _run(resolved, options, args)


def make_step_probe(
    loss_fn: LossFn, *, strategy: str = "auto", chunk_size: int | None = None,
    floor_factor: float = DEFAULT_FLOOR_FACTOR, mesh: Mesh | None = None,
    floor_eps: float | None = None,
) -> Callable[..., StepProbe]:
    """Builds a compiled ``probe(params, batch, step_sizes, direction=None, value_and_grad=None)
    -> StepProbe``.

    The computation and arguments of :func:`step_probe`, with ``loss_fn``, ``strategy``,
    ``chunk_size``, ``floor_factor``, ``mesh`` and ``floor_eps`` fixed. ``"unroll"``, ``"vmap"``
    and ``"map"`` give ``jax.jit`` of :func:`step_probe_fn`; ``"host"`` a Python loop of compiled
    pieces (concrete arrays only); ``"auto"`` a probe that measures like :func:`step_probe` when
    called on concrete arrays and traces the static rule inside your ``jax.jit``. Build it once
    and call it every step: it traces again only when shapes, dtypes or the pytree structure of
    its arguments change (e.g. a new K, or ``direction`` switching between ``None`` and a pytree),
    never when only values change.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      strategy: one of :data:`STRATEGIES`; see :func:`step_probe`.
      chunk_size, floor_factor, mesh, floor_eps: see :func:`step_probe`.

    Returns:
      The probe function.

    Reference:
      Santurkar et al. (2018), Fig. 4, App. A.2.2.

    Example::

        probe = make_step_probe(loss_fn)
        for step in range(num_steps):
            r = probe(params, batch, lr_multiples(0.1))
    """
    options = _options(loss_fn, chunk_size, floor_factor, floor_eps, mesh)
    if strategy == "host":
        _resolve_point_strategy(strategy, chunk_size)
        traced = None
    else:
        traced = jax.jit(step_probe_fn(loss_fn, strategy=strategy, chunk_size=chunk_size,
                                       floor_factor=floor_factor, mesh=mesh, floor_eps=floor_eps))
        if strategy != "auto":
            return traced

    def probe(params: PyTree, batch: PyTree, step_sizes: jax.Array, direction: PyTree = None,
              value_and_grad: tuple[jax.Array, PyTree] | None = None) -> StepProbe:
        args = (params, batch, step_sizes, direction, value_and_grad)
        if strategy == "host":
            return _run("host", options, args)
        return traced(*args) if _is_traced(*args) else _measured(options, args)

    name = getattr(loss_fn, "__name__", "loss_fn")
    probe.__name__ = probe.__qualname__ = f"step_probe[{name}]"
    probe.__doc__ = (f"step_probe of {name} (strategy {strategy!r}): probe(params, batch, "
                     "step_sizes, direction=None, value_and_grad=None) -> StepProbe.")
    return probe
