"""The step probe's layouts: ``"host"`` equals ``"unroll"``, ``"auto"`` measures once per shape.

Tolerance: float64, rtol 1e-12 on every field. Each η is the same function (``_point``) in both
layouts, so the only differences are the reassociation of sums inside separately compiled programs
(≈ 1e-16 relative, measured); 1e-12 leaves a 10⁴ margin and still rejects any change of formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerance import assert_close
from zoo import cnn_loss

from landscape import probes
from landscape.engine import StepProbeHook, attach
from landscape.probes import _step_choice, _strategy

pytestmark = pytest.mark.usefixtures("x64")

STEPS = np.array([0.4, -0.1, 0.0, 1.5])  # unsorted, one negative, one zero


def mlp_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["l1"]["w"] + params["l1"]["b"][None, :])
    logits = h @ params["l2"]["w"] + params["l2"]["b"][None, :]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))


def _zoo(name: str):
    rng = np.random.default_rng(0)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape))  # noqa: E731
    if name == "mlp":
        params = {"l1": {"w": normal(5, 8) / 2, "b": 0.1 * normal(8)},
                  "l2": {"w": normal(8, 3) / 3, "b": jnp.zeros(3)}}
        return mlp_loss, params, {"x": normal(16, 5), "y": jnp.asarray(rng.integers(0, 3, 16))}
    params = {"conv": {"kernel": normal(3, 3, 1, 2), "bias": 0.1 * normal(2)},
              "head": {"kernel": normal(8, 2), "bias": 0.1 * normal(2)}}
    return cnn_loss, params, {"x": normal(4, 5, 5, 1), "y": jnp.asarray(rng.integers(0, 2, 4))}


@pytest.fixture(scope="module")
def zoo(x64):
    return {name: _zoo(name) for name in ("mlp", "cnn")}


def _equal(a: probes.StepProbe, b: probes.StepProbe, rtol: float = 1e-12) -> None:
    for name in a._fields:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype == bool:
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:  # NaN where the other is NaN (the floor without floor_factor), close elsewhere
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            assert_close(x[~np.isnan(x)], y[~np.isnan(y)], rtol, name=name)


@pytest.mark.parametrize("name", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
@pytest.mark.parametrize("custom, fused, floor", [(False, False, 10.0), (True, True, 10.0),
                                                  (False, True, 0.0)],
                         ids=["plain", "custom-d fused", "fused no-floor"])
def test_host_equals_unroll(zoo, name, custom, fused, floor):
    """float64: the host loop computes every field of the unrolled probe (the floor included)."""
    loss_fn, params, batch = zoo[name]
    direction = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                             params) if custom else None
    vg = jax.value_and_grad(loss_fn)(params, batch) if fused else None
    kw = dict(direction=direction, value_and_grad=vg, floor_factor=floor)
    host = probes.step_probe(loss_fn, params, batch, STEPS, strategy="host", **kw)
    _equal(host, probes.step_probe(loss_fn, params, batch, STEPS, strategy="unroll", **kw))
    assert host.loss.dtype == jnp.float64
    assert np.isnan(float(host.grad_change_floor)) == (floor == 0)


def test_host_compiles_one_point_program(zoo):
    """K points and the floor share ONE compiled point evaluation, whatever K."""
    from landscape.probes import _step_host

    loss_fn, params, batch = zoo["mlp"]
    before = _step_host._point_jit._cache_size()
    for k in (2, 5):
        probes.step_probe(loss_fn, params, batch, np.linspace(0.1, 1.0, k), strategy="host")
    assert _step_host._point_jit._cache_size() - before <= 1


def test_host_refuses_traces_chunks_and_meshes(zoo):
    loss_fn, params, batch = zoo["mlp"]
    with pytest.raises(ValueError, match="concrete arrays"):
        jax.jit(lambda p: probes.step_probe(loss_fn, p, batch, STEPS, strategy="host").loss)(params)
    with pytest.raises(ValueError, match="cannot run"):
        probes.step_probe_fn(loss_fn, strategy="host")
    with pytest.raises(ValueError, match="chunk_size"):
        probes.step_probe(loss_fn, params, batch, STEPS, strategy="host", chunk_size=2)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("points",))
    with pytest.raises(ValueError, match="points mesh"):
        probes.step_probe(loss_fn, params, batch, STEPS, strategy="host", mesh=mesh)
    with pytest.raises(ValueError, match="concrete layouts"):
        probes.choose_strategy(loss_fn, params, batch, STEPS, candidates=("auto", "host"))
    with pytest.raises(ValueError, match="strategy must be one of"):  # its host loop is "unroll"
        probes.resolve_surface_strategy("host")


def _forced(winner: str, seen: list, fast: float = 1.0):
    """A timer under which ``winner`` runs in ``fast`` seconds and every other layout in 2 s."""
    def timer(strategy, run):
        seen.append(strategy)
        run()
        return fast if strategy == winner else 2.0
    return timer


@pytest.mark.parametrize("winner", ["host", "unroll"])
def test_choice_follows_the_timer(zoo, winner):
    loss_fn, params, batch = zoo["mlp"]
    seen: list = []
    choice = probes.choose_strategy(loss_fn, params, batch, STEPS, candidates=("host", "unroll"),
                                    timer=_forced(winner, seen))
    assert choice.strategy == winner
    assert choice.seconds == {s: 1.0 if s == winner else 2.0 for s in ("host", "unroll")}
    assert choice.compile_seconds == {"host": 0.0, "unroll": 0.0}
    # each in turn: the first call and a warm one; then one more warm round
    assert seen == ["host", "host", "unroll", "unroll", "host", "unroll"]
    probes.clear_strategy_cache()


def test_a_fast_candidate_skips_the_rest(zoo):
    """A first candidate under skip_below seconds wins without compiling the others."""
    loss_fn, params, batch = zoo["mlp"]
    seen: list = []
    choice = probes.choose_strategy(loss_fn, params, batch, STEPS, candidates=("host", "map"),
                                    timer=_forced("host", seen, fast=0.001), skip_below=0.01)
    assert choice.strategy == "host" and seen == ["host", "host"]
    assert choice.seconds == {"host": 0.001}
    probes.clear_strategy_cache()


def test_fast_candidates_are_timed_until_a_second_is_spent(zoo):
    """Calls of 0.125 s are timed in rounds until the fastest has run for 1 s in all (8 warm
    calls); calls of 0.6 s only ``repeats`` (2) times; at most 20 rounds after the first warm
    call."""
    loss_fn, params, batch = zoo["mlp"]
    for warm, calls in ((0.125, 8), (0.6, 2), (0.001, 21)):
        seen: list = []
        probes.choose_strategy(loss_fn, params, batch, STEPS, candidates=("host", "unroll"),
                               timer=_forced("host", seen, fast=warm), skip_below=0)
        assert seen.count("host") == 1 + calls and seen.count("unroll") == 1 + calls, warm
    probes.clear_strategy_cache()


def _compiling(seen: list, compile_seconds: float, warm: float):
    """A timer under which every layout's first call takes ``compile_seconds`` + ``warm`` and
    every later call ``warm`` seconds."""
    def timer(strategy, run):
        first = strategy not in seen
        seen.append(strategy)
        run()
        return compile_seconds + warm if first else warm
    return timer


@pytest.mark.parametrize("warm, timed", [
    (0.1, ["host", "host", "map", "map", "host", "map"]),  # map: 3 s > 20 × 0.1 s: skip unroll
    (0.5, ["host", "host", "map", "map", "unroll", "unroll", "host", "map", "unroll"])])  # 3 < 10
def test_a_compile_the_runs_cannot_repay_skips_the_rest(zoo, warm, timed):
    """A further layout is compiled only when 20 warm calls of the last alternative outlast that
    alternative's compile; the first layout's compile never stops the measurement (it would run
    anyway)."""
    loss_fn, params, batch = zoo["mlp"]
    seen: list = []
    choice = probes.choose_strategy(loss_fn, params, batch, STEPS,
                                    candidates=("host", "map", "unroll"),
                                    timer=_compiling(seen, 3.0, warm), timing_seconds=0)
    assert seen == timed and choice.compile_seconds["host"] == pytest.approx(3.0)
    everything: list = []
    probes.choose_strategy(loss_fn, params, batch, STEPS, candidates=("host", "map", "unroll"),
                           timer=_compiling(everything, 3.0, warm), payback_calls=None,
                           timing_seconds=0)
    assert everything == ["host", "host", "map", "map", "unroll", "unroll", "host", "map",
                          "unroll"]
    probes.clear_strategy_cache()


def _scripted(seen: list, compile_seconds: float, warm: dict[str, float]):
    """A timer under which a layout's first call takes ``compile_seconds`` + ``warm[layout]`` and
    every later call ``warm[layout]`` seconds."""
    def timer(strategy, run):
        first = strategy not in seen
        seen.append(strategy)
        run()
        return warm[strategy] + (compile_seconds if first else 0.0)
    return timer


def test_auto_tries_the_host_loop_then_measures_once_per_shape(zoo, monkeypatch):
    """"auto" runs the host loop alone (one compile) until its warm calls add up to 3 × its
    compile seconds; that call times the other candidates ("map" too: the MLP has no
    convolution) and every later call of the shape runs the winner. A new K starts a new trial,
    and so does any call after clear_strategy_cache; under a trace nothing is timed."""
    loss_fn, params, batch = zoo["mlp"]
    seen, ran = [], []
    run = _step_choice._run
    # host compiles in 2 s and runs in 1 s: the trial ends once 3 × 2 s of warm calls are spent
    monkeypatch.setattr(_step_choice, "_wall_seconds",
                        _scripted(seen, 2.0, {"host": 1.0, "map": 0.8, "unroll": 0.5}))
    monkeypatch.setattr(_step_choice, "_run", lambda s, o, a: ran.append(s) or run(s, o, a))
    probes.clear_strategy_cache()
    calls = [probes.step_probe(loss_fn, params, batch, STEPS * (1 + i / 10)) for i in range(6)]
    assert ran == ["host"] * 6  # a one-off probe compiles one layout, not every candidate
    ran.clear()
    measured = probes.step_probe(loss_fn, params, batch, STEPS)  # the 6th warm call: 6 s ≥ 3 × 2 s
    assert ran == ["host", "map", "map", "unroll", "unroll", "host", "map", "unroll"]
    choice = next(iter(_step_choice._CHOICES.values()))
    assert choice.strategy == "unroll" and choice.seconds == {"host": 1.0, "map": 0.8, "unroll": 0.5}
    assert choice.compile_seconds == pytest.approx({"host": 2.0, "map": 2.0, "unroll": 2.0})
    _equal(measured, probes.step_probe(loss_fn, params, batch, STEPS, strategy="unroll"))
    _equal(calls[0], probes.step_probe(loss_fn, params, batch, STEPS, strategy="host"))
    ran.clear()
    probes.step_probe(loss_fn, params, batch, STEPS * 2)  # new values, same shape: the winner
    assert ran == ["unroll"]
    ran.clear()
    probes.step_probe(loss_fn, params, batch, STEPS[:2])  # new K: a new compiled shape, on trial
    probes.clear_strategy_cache()
    probes.step_probe(loss_fn, params, batch, STEPS)
    assert ran == ["host", "host"]
    # Under a trace nothing is timed: the static rule ("unroll" on CPU).
    before = len(seen)
    jax.jit(lambda p: probes.step_probe(loss_fn, p, batch, STEPS).loss)(params)
    assert len(seen) == before
    probes.clear_strategy_cache()


def test_auto_keeps_a_fast_host_loop_without_compiling_the_others(zoo, monkeypatch):
    """With the real clock, a host loop whose first warm call runs under ``skip_below`` ends the
    trial: "host" is recorded and nothing else was compiled (the bound is raised from 10 ms to
    1 s so that a loaded machine cannot make the tiny MLP's ~1 ms call miss it)."""
    from landscape.probes import _step

    monkeypatch.setattr(_step_choice, "_SKIP_BELOW_SECONDS", 1.0)
    loss_fn, params, batch = zoo["mlp"]
    probes.clear_strategy_cache()
    before = _step._step_probe_jit._cache_size()
    for _ in range(3):
        probes.step_probe(loss_fn, params, batch, STEPS)
    (choice,) = _step_choice._CHOICES.values()
    assert choice.strategy == "host" and set(choice.seconds) == {"host"}
    assert _step._step_probe_jit._cache_size() == before
    probes.clear_strategy_cache()


def test_map_is_a_candidate_only_without_convolutions(zoo):
    """On CPU "map" is timed for a loss with no convolution (a transformer's: it ran 0.97 × a
    plain loop there, against 1.07 for "host") and never for a convnet's (loops slow XLA:CPU's
    convolutions ~10×)."""
    assert _strategy._convolves(*zoo["cnn"]) and not _strategy._convolves(*zoo["mlp"])
    # a convolution nested in a jitted function and a scan is found too
    loss_fn, params, batch = zoo["cnn"]
    nested = lambda p, b: jax.lax.scan(lambda c, _: (c + jax.jit(loss_fn)(p, b), None), 0.0,  # noqa: E731
                                       None, length=2)[0]
    assert _strategy._convolves(nested, params, batch)
    if jax.default_backend() == "cpu":
        assert _strategy._point_candidates(None, False, lambda: False) == ("host", "map", "unroll")
        assert _strategy._point_candidates(None, False, lambda: True) == ("host", "unroll")
    # with a chunk size the static rule, and the loss is not traced to find out
    assert _strategy._point_candidates(2, False, lambda: pytest.fail("traced")) == ("vmap",)


# ----------------------------------------------------------------------------------------------
# the engine's hook: eager for "auto"/"host", records equal to a traced strategy


def _hooks(auto: str, host: str) -> list[StepProbeHook]:
    steps = probes.lr_multiples(0.1, num=3)
    return [StepProbeHook(step_sizes=steps, strategy=auto),
            StepProbeHook(step_sizes=steps, strategy=host, fuse=False, name="unfused"),
            StepProbeHook(step_sizes=steps, strategy=host, direction="update")]


def _attached_records(zoo, hooks) -> list[dict]:
    """Two steps of Adam on the MLP with ``hooks`` attached (the second probes a moved θ and reuses
    the measured choice): each step's results by hook."""
    loss_fn, params, batch = zoo["mlp"]
    tx = optax.adam(0.05)
    opt_state, out = tx.init(params), []
    with attach(loss_fn, hooks, optimizer=tx) as attached:
        for t in range(2):
            loss, grad = jax.value_and_grad(loss_fn)(params, batch)
            out.append(attached.step(t, params, batch, loss=loss, grad=grad, opt_state=opt_state))
            updates, opt_state = tx.update(grad, opt_state, params)
            params = optax.apply_updates(params, updates)
    return out


def test_hook_records_equal_a_traced_strategy(zoo, monkeypatch):
    """float64: "auto" (forced to the host loop) and "host" (unfused; along the update) run the
    hooks eagerly and measure what the jitted "unroll" hooks measure, per-layer norms included."""
    monkeypatch.setattr(_step_choice, "_wall_seconds", _forced("host", []))
    probes.clear_strategy_cache()
    eager_hooks, traced_hooks = _hooks("auto", "host"), _hooks("unroll", "unroll")
    eager, traced = _attached_records(zoo, eager_hooks), _attached_records(zoo, traced_hooks)
    assert [h.jit for h in eager_hooks] == [False] * 3 and all(h.jit for h in traced_hooks)
    for step_a, step_b in zip(eager, traced):
        assert step_a.keys() == step_b.keys() == {"probes", "unfused", "probes_update"}
        for name in step_a:
            (probe_a, norms_a), (probe_b, norms_b) = step_a[name], step_b[name]
            _equal(probes.StepProbe(*probe_a), probes.StepProbe(*probe_b))
            assert_close(jax.tree.leaves(norms_a), jax.tree.leaves(norms_b), 1e-12, name=name)
    probes.clear_strategy_cache()
