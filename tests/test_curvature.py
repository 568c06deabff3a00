"""Tests for landscape.probes curvature probes against dense float64 answers.

Exact answers: a quadratic ½θᵀAθ with a chosen spectrum (closed form), and a tiny MLP and a tiny
BN-free CNN whose dense Hessian (``jax.hessian`` on the ravelled parameters) is diagonalised by
``numpy.linalg.eigh``.

Tolerances (one helper, ``assert_close``):
- Lanczos with m equal to the operator's dimension spans the whole space, so its Ritz values are
  the eigenvalues up to rounding: ≈ eps·‖A‖·√n ≈ 1e-14·‖A‖ in float64; RTOL_EIG = 1e-8 (the brief's
  bound) leaves a 10⁵× margin, while a wrong tridiagonal (e.g. a missing reorthogonalisation or an
  off-by-one β) is an O(1e-2…1) error.
- With m < n on the quadratic the top Ritz values converge geometrically (gap ratios ≥ 0.5 of the
  spread): 1e-8 is reached well before m = 30 (checked against exact values, not assumed).
- Hutchinson: the estimate is within 3 of its own stderr (a fixed key, deterministic); Hutch++ with
  num_samples ≥ 3·dim is exact up to rounding (the sketch spans the whole space).
- float32 results: 1e-4 relative (eps32 ≈ 1.2e-7 amplified by ≲ 100 in the orthogonalisation).
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from tolerance import assert_close
from zoo import cnn_loss

from landscape import parallel, probes
from landscape.probes import _density, _gradient_curvature, _lanczos, _operators, _trace

pytestmark = pytest.mark.usefixtures("x64")

RTOL_EIG = 1e-8
KEY = 0


def key(i=KEY):
    return jax.random.key(i)


# ------------------------------------------------------------------------------------------------
# problems (compiled functions are shared: the same loss functions, k, num_iters and strategies
# recur across tests so that each configuration compiles once per module)


class Quadratic:
    """L(θ) = ½θᵀAθ on {"w": (5, 6), "b": (10,)} (n = 40) with a chosen spectrum; batch = A."""

    def __init__(self, spectrum, seed=0):
        rng = np.random.default_rng(seed)
        n = len(spectrum)
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        order = np.argsort(spectrum)[::-1]
        self.spectrum = np.asarray(spectrum, dtype=np.float64)[order]
        self.vectors = q[:, order]
        self.A = q @ np.diag(spectrum) @ q.T
        self.A = 0.5 * (self.A + self.A.T)
        self.batch = jnp.asarray(self.A)
        self.params = {"w": jnp.asarray(rng.standard_normal((5, 6))),
                       "b": jnp.asarray(rng.standard_normal(10))}

    @staticmethod
    def loss_fn(params, batch):
        theta = ravel_pytree(params)[0]
        return 0.5 * theta @ (batch @ theta)


def _bulk_spectrum():
    rng = np.random.default_rng(1)
    return np.concatenate([[100.0, 50.0, 30.0], rng.uniform(0.0, 1.0, 36), [-20.0]])


def rows(tree) -> np.ndarray:
    """(k, n) matrix of a pytree whose leaves have a leading axis k, in ravel_pytree order."""
    leaves = jax.tree.leaves(tree)
    return np.concatenate([np.asarray(l).reshape(l.shape[0], -1) for l in leaves], axis=1)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(l).reshape(-1) for l in jax.tree.leaves(tree)])


def like(params, fn):
    """A deterministic pytree like ``params``: leaf i gets fn(arange(size) + 7i)."""
    leaves, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(treedef, [jnp.asarray(fn(np.arange(l.size) + 7.0 * i)).reshape(l.shape)
                                        for i, l in enumerate(leaves)])


@pytest.fixture(scope="module")
def quad():
    return Quadratic(_bulk_spectrum())


def _mlp_init(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "dense1": {"kernel": jnp.asarray(rng.standard_normal((3, 4))), "bias": jnp.asarray(0.1 * rng.standard_normal(4))},
        "dense2": {"kernel": jnp.asarray(rng.standard_normal((4, 2))), "bias": jnp.asarray(0.1 * rng.standard_normal(2))},
    }
    batch = {"x": jnp.asarray(rng.standard_normal((6, 3))), "y": jnp.asarray(rng.integers(0, 2, 6))}
    return params, batch


MLP_TRACES: list = []


def mlp_logits(params, batch):
    h = jnp.tanh(batch["x"] @ params["dense1"]["kernel"] + params["dense1"]["bias"][None, :])
    return h @ params["dense2"]["kernel"] + params["dense2"]["bias"][None, :]


def cross_entropy(logits, batch):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))


def mlp_loss(params, batch):
    MLP_TRACES.append(1)  # Python side effect: runs only while tracing (see the recompile test)
    return cross_entropy(mlp_logits(params, batch), batch)


MLP_GN = probes.GaussNewton(mlp_logits, cross_entropy)


def _cnn_init(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 1, 2))), "bias": jnp.asarray(0.1 * rng.standard_normal(2))},
        "head": {"kernel": jnp.asarray(rng.standard_normal((8, 2))), "bias": jnp.asarray(0.1 * rng.standard_normal(2))},
    }
    batch = {"x": jnp.asarray(rng.standard_normal((4, 5, 5, 1))), "y": jnp.asarray(rng.integers(0, 2, 4))}
    return params, batch


def dense_hessian(loss_fn, params, batch):
    flat_p, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda x: loss_fn(unravel(x), batch)))(flat_p))


@pytest.fixture(scope="module")
def mlp():
    params, batch = _mlp_init()
    H = dense_hessian(mlp_loss, params, batch)
    return params, batch, H, np.linalg.eigvalsh(H)


@pytest.fixture(scope="module")
def mlp_top(mlp):
    """The shared host-strategy call: top-3 of the MLP Hessian with m = n."""
    params, batch, _, evals = mlp
    return probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=evals.size)


@pytest.fixture(scope="module")
def mlp_top_jit(mlp):
    """hessian_eigs under an outer jax.jit (strategy 'auto' must pick 'scan' there)."""
    _, batch, _, evals = mlp
    return jax.jit(lambda p, k: probes.hessian_eigs(mlp_loss, p, batch, 3, key=k,
                                                    num_iters=evals.size).eigenvalues)


@pytest.fixture(scope="module")
def cnn():
    params, batch = _cnn_init()
    H = dense_hessian(cnn_loss, params, batch)
    return params, batch, H, np.linalg.eigvalsh(H)


# ------------------------------------------------------------------------------------------------
# quadratic: eigenpairs


@pytest.fixture(scope="module")
def quad_top(quad):
    return probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 5, key=key(), num_iters=30)


def test_quadratic_top_eigenpairs(quad, quad_top):
    r = quad_top
    assert r.eigenvalues.dtype == jnp.float64
    assert_close(r.eigenvalues[:3], quad.spectrum[:3], RTOL_EIG, name="top-3")
    assert jax.tree.map(jnp.shape, r.eigenvectors) == {"w": (5, 5, 6), "b": (5, 10)}
    Y = rows(r.eigenvectors)
    assert_close(np.linalg.norm(Y, axis=1), np.ones(5), 1e-12, name="‖y‖")
    # aligned (up to sign) with the true eigenvectors
    assert_close(np.abs(np.sum(Y[:3] * quad.vectors[:, :3].T, axis=1)), np.ones(3), 1e-8, name="|<y,u>|")
    explicit = np.linalg.norm(Y @ quad.A - np.asarray(r.eigenvalues)[:, None] * Y, axis=1)
    assert np.all(explicit[:3] < 1e-10), explicit
    # Pairs 4 and 5 sit in the unconverged bulk at m = 30: the reported residuals must equal the
    # explicit ‖Ay − θy‖ there too (a residual reported as 0, or for the wrong pair, fails).
    assert np.all(explicit[3:] > 1e-5), explicit
    assert_close(r.residuals, explicit, 1e-6, atol=1e-10, name="residuals")


def test_quadratic_smallest(quad):
    r = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 5, key=key(), num_iters=30,
                            which="smallest")
    assert_close(r.eigenvalues[:1], quad.spectrum[-1:], RTOL_EIG, name="smallest")
    assert np.all(np.diff(np.asarray(r.eigenvalues)) >= 0), "smallest first"
    assert r.residuals[0] < 1e-8


def test_warm_start_and_matfree_cross_check(quad, quad_top):
    from matfree import decomp, eig

    # A warm start from the top eigenvector gives it in 3 steps; a cold start does not.
    top = jax.tree.map(lambda a: a[0], quad_top.eigenvectors)
    cold = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, key=key(), num_iters=3)
    warm = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, key=key(), num_iters=3,
                               init=top)
    assert_close(warm.eigenvalues[:1], quad.spectrum[:1], 1e-12, name="warm")
    assert abs(float(cold.eigenvalues[0]) - quad.spectrum[0]) > 1e-6
    # Same start vector as matfree 0.6.3's Lanczos (full reorthogonalisation) → the same Krylov
    # space → the same (far from converged) Ritz values at m = 3 < n.
    v0 = like(quad.params, lambda i: np.cos(i) + 0.5)
    ours = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, key=key(), num_iters=3, init=v0)
    vals, _ = eig.eigh_partial(decomp.tridiag_sym(3, reortho="full"))(lambda v: quad.batch @ v,
                                                                    jnp.asarray(flat(v0)))
    assert_close(ours.eigenvalues, np.sort(np.asarray(vals))[::-1], 1e-10, name="vs matfree")
    assert abs(float(ours.eigenvalues[0]) - quad.spectrum[0]) > 1e-3  # not trivially converged


# ------------------------------------------------------------------------------------------------
# quadratic: trace and density


def test_quadratic_trace_hutchinson_and_hutchpp(quad):
    true = quad.spectrum.sum()
    h = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, key=key(), num_samples=30)
    assert h.stderr > 0
    assert abs(float(h.estimate) - true) <= 3 * float(h.stderr), (h, true)
    # Hutch++ is much closer on average over keys (the top of the spectrum dominates).
    err_h, err_pp = [], []
    for i in range(4):
        for method, errs in (("hutchinson", err_h), ("hutch++", err_pp)):
            r = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, key=key(i), num_samples=30,
                                     method=method)
            errs.append(abs(float(r.estimate) - true))
    assert np.mean(err_pp) < 0.2 * np.mean(err_h), (err_pp, err_h)


@pytest.fixture(scope="module")
def clustered():
    # Three eigenvalues with multiplicities 30, 8, 2: the Krylov space of any start vector has
    # dimension 3, so num_iters = 6 exercises the breakdown restart; the SLQ mass at each
    # eigenvalue is ‖P_i v‖²/‖v‖², with expectation 30/40, 8/40, 2/40.
    return Quadratic(np.repeat([1.0, 5.0, 10.0], [30, 8, 2]), seed=3)


def test_density_mass_at_eigenvalues(clustered):
    d = probes.spectral_density(clustered.loss_fn, clustered.params, clustered.batch, key=key(),
                                num_iters=6, num_runs=12, grid_size=4000)
    grid, dens = np.asarray(d.grid), np.asarray(d.density)
    assert_close(np.trapezoid(dens, grid), 1.0, 1e-12, name="∫density")
    assert_close(np.asarray(d.weights).sum(axis=1), np.ones(12), 1e-12, name="Σ weights")
    # Nodes carrying weight sit at the eigenvalues; the restart blocks carry none.
    nodes, weights = np.asarray(d.nodes), np.asarray(d.weights)
    heavy = weights > 1e-12
    assert np.min(np.abs(nodes[heavy][:, None] - np.array([1.0, 5.0, 10.0])[None]), axis=1).max() < 1e-8
    sigma = np.sqrt(1e-5 * max(1.0, nodes.max() - nodes.min()))
    mass = [np.trapezoid(np.where(np.abs(grid - lam) < 6 * sigma, dens, 0.0), grid) for lam in (1, 5, 10)]
    assert sum(mass) > 0.999
    # Sampling std of the per-eigenvalue mass over 12 runs ≈ 0.04; uniform weights would give 1/3.
    assert_close(mass, [0.75, 0.2, 0.05], 0.0, atol=0.1, name="mass per eigenvalue")
    assert grid[0] < 1.0 - 4 * sigma and grid[-1] > 10.0 + 4 * sigma


def test_density_weights_are_first_components(quad):
    # Gauss quadrature from m Lanczos steps is exact for moments up to 2m − 1:
    # Σ_j w_j θ_j^p = q₀ᵀAᵖq₀ for the unit start vector q₀ (here m = 3, p ≤ 5). Wrong weights
    # (uniform, or the last components) fail this.
    v0 = like(quad.params, lambda i: np.sin(i + 1.0))
    state = _lanczos._lanczos_host(quad.loss_fn, "hessian", None, 3, quad.params, quad.batch, key(), v0)
    theta, w = (np.asarray(a) for a in _density._nodes_weights(state))
    q0 = flat(v0) / np.linalg.norm(flat(v0))
    for p in range(6):
        expected = q0 @ np.linalg.matrix_power(quad.A, p) @ q0
        assert_close(np.sum(w * theta**p), expected, 1e-9, name=f"moment {p}")


# ------------------------------------------------------------------------------------------------
# tiny networks against dense Hessians


def test_mlp_hvp_and_eigs_against_dense(mlp, mlp_top):
    params, batch, H, evals = mlp
    v = like(params, np.cos)
    assert_close(flat(probes.hvp(mlp_loss, params, batch, v)), H @ flat(v), 1e-10, atol=1e-12, name="hvp")
    assert_close(mlp_top.eigenvalues, evals[::-1][:3], RTOL_EIG, name="mlp top-3")
    s = probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=evals.size, which="smallest")
    assert evals[0] < 0  # a saddle-ish point: the test covers negative curvature
    assert_close(s.eigenvalues, evals[:3], RTOL_EIG, atol=1e-10, name="mlp bottom-3")


def test_mlp_trace_and_density_against_dense(mlp):
    params, batch, H, evals = mlp
    t = probes.hessian_trace(mlp_loss, params, batch, key=key(), num_samples=60)
    assert abs(float(t.estimate) - np.trace(H)) <= 3 * float(t.stderr)
    # With m = n each run's nodes are all the eigenvalues.
    d = probes.spectral_density(mlp_loss, params, batch, key=key(), num_iters=evals.size, num_runs=2,
                                grid_size=256)
    for r in range(2):
        assert_close(np.sort(np.asarray(d.nodes[r])), evals, 1e-8, atol=1e-10, name="SLQ nodes")


def test_cnn_eigs_host_and_scan_agree_with_dense(cnn):
    params, batch, _, evals = cnn
    kw = dict(key=key(), num_iters=evals.size)
    host = probes.hessian_eigs(cnn_loss, params, batch, 3, strategy="host", **kw)
    scan = probes.hessian_eigs(cnn_loss, params, batch, 3, strategy="scan", **kw)
    assert_close(host.eigenvalues, evals[::-1][:3], RTOL_EIG, name="cnn top-3")
    assert_close(scan.eigenvalues, host.eigenvalues, 1e-12, name="scan vs host")
    assert_close(rows(scan.eigenvectors), rows(host.eigenvectors), 0.0, atol=1e-9, name="vectors")
    assert_close(scan.residuals, host.residuals, 0.0, atol=1e-9, name="residuals scan vs host")


def test_trace_and_density_host_and_scan_agree(quad):
    for method in ("hutchinson", "hutch++"):
        a, b = (probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, key=key(), num_samples=30,
                                     method=method, strategy=s) for s in ("host", "scan"))
        assert_close(b.estimate, a.estimate, 1e-12, name=f"{method} estimate")
        assert_close(b.stderr, a.stderr, 1e-10, name=f"{method} stderr")
    a, b = (probes.spectral_density(quad.loss_fn, quad.params, quad.batch, key=key(), num_iters=6,
                                    num_runs=2, grid_size=256, strategy=s) for s in ("host", "scan"))
    assert_close(b.nodes, a.nodes, 1e-10, atol=1e-10, name="nodes")
    assert_close(b.weights, a.weights, 0.0, atol=1e-10, name="weights")
    assert_close(b.density, a.density, 1e-8, atol=1e-10, name="density")


def test_block_mask_against_dense_subblock(mlp):
    params, batch, H, _ = mlp
    mask = probes.param_mask(params, lambda p: p == "dense1/kernel")
    sel = flat(jax.tree.map(lambda a, m: np.full(a.shape, m), params, mask)).astype(bool)
    block = H[np.ix_(sel, sel)]
    evals = np.linalg.eigvalsh(block)
    d = int(sel.sum())
    r = probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=d, mask=mask)
    assert_close(r.eigenvalues, evals[::-1][:3], RTOL_EIG, name="masked top-3")
    for leaf, m in zip(jax.tree.leaves(r.eigenvectors), jax.tree.leaves(mask)):
        assert m or np.all(np.asarray(leaf) == 0)
    # Hutch++ with a sketch as wide as the block is exact.
    t = probes.hessian_trace(mlp_loss, params, batch, key=key(), num_samples=3 * d, method="hutch++",
                             mask=mask)
    assert_close(t.estimate, np.trace(block), 1e-10, name="masked trace")
    with pytest.raises(ValueError, match="must not exceed"):
        probes.hessian_eigs(mlp_loss, params, batch, 1, key=key(), num_iters=d + 1, mask=mask)


def test_gradient_curvature_against_dense(mlp):
    params, batch, H, _ = mlp
    g = flat(jax.jit(jax.grad(mlp_loss))(params, batch))
    r = probes.gradient_curvature(mlp_loss, params, batch)
    assert_close(r.curvature, g @ H @ g / (g @ g), 1e-10, name="gᵀHg/‖g‖²")
    assert_close(r.grad_norm, np.linalg.norm(g), 1e-12, name="‖g‖")


def dense_gauss_newton(params, batch):
    """G = Jᵀ H_z J of the MLP, dense float64."""
    flat_p, unravel = ravel_pytree(params)
    J = np.asarray(jax.jit(jax.jacfwd(lambda x: mlp_logits(unravel(x), batch).reshape(-1)))(flat_p))
    z = np.asarray(mlp_logits(params, batch))
    Hz = np.asarray(jax.jit(jax.hessian(lambda zz: cross_entropy(zz.reshape(z.shape), batch)))(z.reshape(-1)))
    return J.T @ Hz @ J


def test_gauss_newton_against_dense(mlp):
    params, batch, _, evals_h = mlp
    G = dense_gauss_newton(params, batch)
    v = like(params, np.sin)
    assert_close(flat(probes.gnvp(MLP_GN, params, batch, v)), G @ flat(v), 1e-10, atol=1e-12, name="Gv")
    evals = np.linalg.eigvalsh(G)
    r = probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=evals.size, curvature=MLP_GN)
    assert_close(r.eigenvalues, evals[::-1][:3], RTOL_EIG, atol=1e-12, name="GN top-3")
    assert abs(evals[-1] - evals_h[-1]) > 1e-3  # the test tells G from H
    with pytest.raises(ValueError, match="GaussNewton"):
        probes.hessian_eigs(mlp_loss, params, batch, 1, key=key(), num_iters=3, curvature="gauss_newton")


def test_float32(mlp):
    params, batch, _, evals = mlp
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    b32 = {"x": batch["x"].astype(jnp.float32), "y": batch["y"]}
    r = probes.hessian_eigs(mlp_loss, p32, b32, 3, key=key(), num_iters=evals.size)
    assert r.eigenvalues.dtype == jnp.float32 and r.residuals.dtype == jnp.float32
    assert jax.tree.leaves(r.eigenvectors)[0].dtype == jnp.float32
    assert_close(r.eigenvalues, evals[::-1][:3], 1e-4, name="float32 top-3")


# ------------------------------------------------------------------------------------------------
# compilation: flat in num_iters, no recompiles, works under jit


PADDED_TRACES: list = []


def _padded_loss(params, batch):
    PADDED_TRACES.append(1)  # Python side effect: runs only while tracing
    core = {k: v for k, v in params.items() if k != "extra"}
    return mlp_loss(core, batch) + 0.5 * jnp.sum(params["extra"] ** 2)


def test_compile_flat_in_num_iters(mlp):
    # Lowering the scan strategy at m = 10 and m = 80 (no XLA compile: cheap): the loop body, and
    # loss_fn inside it, is traced the same number of times and the program has the same size
    # (up to the digits of m). A Python-unrolled loop would trace loss_fn m times and grow the
    # program 8×. Compile times on VGG-11 are in benchmarks/bench_curvature.py.
    params, batch, _, _ = mlp
    p = {"extra": jnp.zeros(60), **params}  # dimension 86 ≥ 80
    sizes, counts = {}, {}
    for m in (10, 80):
        before = len(PADDED_TRACES)
        lowered = _lanczos._eigs_scan.lower(_padded_loss, "hessian", None, m, 1, "largest", p, batch,
                                              key(), None)
        counts[m] = len(PADDED_TRACES) - before
        sizes[m] = len(lowered.as_text())
    assert counts[10] == counts[80] > 0, counts
    assert sizes[80] <= 1.02 * sizes[10], sizes
    # The host strategy's step has no m in its program at all beyond the basis shape.
    state = {m: jax.eval_shape(lambda q, s, m=m: _lanczos._lanczos_allocate_impl(m, q, s),
                               jnp.zeros(86), jnp.zeros(())) for m in (10, 80)}
    step = {m: len(_lanczos._lanczos_step.lower(_padded_loss, "hessian", None, p, batch, state[m]).as_text())
            for m in (10, 80)}
    assert step[80] <= 1.02 * step[10], step


def test_under_outer_jit_and_host_refused(mlp, mlp_top_jit):
    params, batch, _, evals = mlp
    assert_close(mlp_top_jit(params, key()), evals[::-1][:3], RTOL_EIG, name="under jit")
    with pytest.raises(ValueError, match="host"):
        jax.jit(lambda p: probes.hessian_eigs(mlp_loss, p, batch, 1, key=key(), num_iters=3,
                                              strategy="host").eigenvalues)(params)


def test_no_recompile_on_new_values(mlp, mlp_top_jit):
    # The same configurations as the tests above (so nothing new compiles when the module runs
    # whole); the first round compiles whatever is missing, the second must trace nothing.
    params, batch, _, evals = mlp
    n = evals.size
    mask = probes.param_mask(params, lambda p: p == "dense1/kernel")

    def calls(p, k):
        probes.hessian_eigs(mlp_loss, p, batch, 3, key=k, num_iters=n)
        probes.hessian_eigs(mlp_loss, p, batch, 3, key=k, num_iters=n, curvature=MLP_GN)
        probes.hessian_eigs(mlp_loss, p, batch, 3, key=k, num_iters=12, mask=mask)
        mlp_top_jit(p, k)
        probes.hessian_trace(mlp_loss, p, batch, key=k, num_samples=60)
        probes.hessian_trace(mlp_loss, p, batch, key=k, num_samples=36, method="hutch++", mask=mask)
        probes.spectral_density(mlp_loss, p, batch, key=k, num_iters=n, num_runs=2, grid_size=256)
        probes.gradient_curvature(mlp_loss, p, batch)
        probes.hvp(mlp_loss, p, batch, p)
        probes.gnvp(MLP_GN, p, batch, p)

    calls(params, key(0))
    before = len(MLP_TRACES)
    calls(jax.tree.map(lambda a: a + 0.1, params), key(1))
    assert len(MLP_TRACES) == before, "a curvature probe retraced on a call that changed only values"


def test_argument_errors(mlp):
    params, batch, _, _ = mlp
    kw = dict(key=key(), num_iters=3)
    with pytest.raises(ValueError, match="k"):
        probes.hessian_eigs(mlp_loss, params, batch, 4, **kw)
    with pytest.raises(ValueError, match="which"):
        probes.hessian_eigs(mlp_loss, params, batch, 1, which="top", **kw)
    with pytest.raises(ValueError, match="strategy"):
        probes.hessian_eigs(mlp_loss, params, batch, 1, strategy="unroll", **kw)
    with pytest.raises(ValueError, match="selects no"):
        probes.hessian_eigs(mlp_loss, params, batch, 1, mask=probes.param_mask(params, lambda p: False), **kw)
    with pytest.raises(ValueError, match="method"):
        probes.hessian_trace(mlp_loss, params, batch, key=key(), num_samples=3, method="xtrace")


@pytest.mark.parametrize("module", [_operators, _lanczos, _density, _trace, _gradient_curvature],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    globs = {**vars(module), "jnp": jnp, "jax": jax}
    failures, attempted = doctest.testmod(
        module, globs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert attempted > 0
    assert failures == 0


def test_full_dimension_lanczos_does_not_blow_up():
    """Regression: with num_iters close to n the exhausted Krylov space must not inject huge Ritz
    values (a 166-parameter MLP once gave λ ≈ 6e44 at 156 iterations). Extremes against dense."""
    rng = np.random.default_rng(3)
    params = {"dense1": {"kernel": jnp.asarray(rng.standard_normal((8, 12))),
                         "bias": jnp.asarray(0.1 * rng.standard_normal(12))},
              "dense2": {"kernel": jnp.asarray(rng.standard_normal((12, 4))),
                         "bias": jnp.asarray(0.1 * rng.standard_normal(4))}}
    # 3 examples and a squared error: a low-rank Hessian, so the Krylov space is exhausted early
    batch = {"x": jnp.asarray(rng.standard_normal((3, 8))), "y": jnp.asarray(rng.integers(0, 4, 3))}

    def mse_loss(params, batch):
        return 0.5 * jnp.mean(jnp.sum((mlp_logits(params, batch) - jax.nn.one_hot(batch["y"], 4)) ** 2, -1))

    evals = np.linalg.eigvalsh(dense_hessian(mse_loss, params, batch))
    n = evals.size  # 160
    for m in (n - 10, n):
        top = probes.hessian_eigs(mse_loss, params, batch, 3, key=key(), num_iters=m)
        low = probes.hessian_eigs(mse_loss, params, batch, 1, key=key(), num_iters=m,
                                  which="smallest")
        scale = np.abs(evals).max()
        assert_close(top.eigenvalues, evals[::-1][:3], 0, 1e-8 * scale, name=f"top-3, m={m}")
        assert_close(low.eigenvalues, evals[:1], 0, 1e-8 * scale, name=f"smallest, m={m}")


# ------------------------------------------------------------------------------------------------
# preconditioned operator P^{-1/2} C P^{-1/2} (Cohen et al. 2022)
#
# Reference: M = D^{-1/2} H D^{-1/2} with D = diag(P) and H the dense Hessian, diagonalised by
# numpy.linalg.eigvalsh. With m = n Lanczos steps the Krylov space is the whole space, so the Ritz
# values are M's eigenvalues up to rounding, ≈ eps·‖M‖·√n ≈ 1e-14 relative to the top eigenvalue
# here: rtol 1e-8 (RTOL_EIG) leaves a 10⁵× margin, and a wrong scaling (P⁻¹ on one side only,
# P^{+1/2}, one leaf unscaled) changes the eigenvalues by O(1).


def positive_like(params, seed=5):
    """A deterministic P > 0 like ``params``, entries spanning two decades (0.1 … 10)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(10.0 ** rng.uniform(-1.0, 1.0, p.shape)), params)


def preconditioned_dense(H, P):
    d = flat(P)
    return H / np.sqrt(np.outer(d, d))


@pytest.fixture(scope="module")
def mlp_adam(mlp):
    """P from a real optax.adam state after 3 full-batch updates of the MLP (entries ≈ |g|)."""
    params, batch, H, _ = mlp
    opt = optax.adam(1e-2)
    state, p = opt.init(params), params
    for _ in range(3):
        updates, state = opt.update(jax.grad(mlp_loss)(p, batch), state, p)
        p = optax.apply_updates(p, updates)
    P = probes.adam_preconditioner(state)
    M = preconditioned_dense(H, P)
    return P, M, np.linalg.eigvalsh(M)


def test_preconditioned_quadratic_eigs_against_dense(quad):
    P = positive_like(quad.params)
    M = preconditioned_dense(quad.A, P)
    evals, vecs = np.linalg.eigh(M)
    n = evals.size
    kw = dict(key=key(), num_iters=n, preconditioner=P)
    host = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, strategy="host", **kw)
    scan = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, strategy="scan", **kw)
    assert_close(host.eigenvalues, evals[::-1][:3], RTOL_EIG, name="P top-3 host")
    assert_close(scan.eigenvalues, host.eigenvalues, 1e-12, name="P top-3 scan vs host")
    assert abs(evals[-1] - quad.spectrum[0]) > 1.0  # the preconditioner does change the answer
    # eigenvectors: unit eigenvectors y of M (transformed coordinates); u = P^{-1/2} y solves the
    # generalised problem H u = θ P u
    Y = rows(host.eigenvectors)
    assert_close(np.abs(Y @ vecs[:, ::-1][:, :3]).diagonal(), np.ones(3), 1e-8, name="|<y,v>|")
    d = flat(P)
    U = Y / np.sqrt(d)[None, :]
    theta = np.asarray(host.eigenvalues)[:, None]
    res = (np.linalg.norm(U @ quad.A - theta * U * d[None, :], axis=1)
           / np.linalg.norm(theta * U * d[None, :], axis=1))
    assert np.all(res < 1e-10), res
    low = probes.hessian_eigs(quad.loss_fn, quad.params, quad.batch, 3, which="smallest", **kw)
    assert_close(low.eigenvalues, evals[:3], RTOL_EIG, atol=1e-12 * np.abs(evals).max(),
                 name="P bottom-3")


def test_preconditioned_mlp_eigs_trace_density_against_dense(mlp, mlp_adam):
    params, batch, _, _ = mlp
    P, M, evals = mlp_adam
    n = evals.size
    r = probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=n, preconditioner=P)
    assert_close(r.eigenvalues, evals[::-1][:3], RTOL_EIG, name="mlp P top-3")
    # Hutch++ with 3n samples sketches the whole space: exact up to rounding
    t = probes.hessian_trace(mlp_loss, params, batch, key=key(), num_samples=3 * n,
                             method="hutch++", preconditioner=P)
    assert_close(t.estimate, np.trace(M), 1e-8, name="mlp P trace (hutch++)")
    h = probes.hessian_trace(mlp_loss, params, batch, key=key(), num_samples=60, preconditioner=P)
    assert abs(float(h.estimate) - np.trace(M)) <= 3 * float(h.stderr)
    d = probes.spectral_density(mlp_loss, params, batch, key=key(), num_iters=n, num_runs=2,
                                grid_size=256, preconditioner=P)
    scale = np.abs(evals).max()
    for run in range(2):
        assert_close(np.sort(np.asarray(d.nodes[run])), evals, 0, 1e-8 * scale, name="P SLQ nodes")
    # with a mask: the block (P^{-1/2} H P^{-1/2})_SS
    mask = probes.param_mask(params, lambda p: p == "dense1/kernel")
    sel = flat(jax.tree.map(lambda a, m: np.full(a.shape, m), params, mask)).astype(bool)
    block = np.linalg.eigvalsh(M[np.ix_(sel, sel)])
    r = probes.hessian_eigs(mlp_loss, params, batch, 3, key=key(), num_iters=int(sel.sum()),
                            mask=mask, preconditioner=P)
    assert_close(r.eigenvalues, block[::-1][:3], RTOL_EIG, name="masked P top-3")
    # Gauss–Newton: the same wrapper around G v
    S = 1 / np.sqrt(flat(P))
    G = dense_gauss_newton(params, batch)
    x = flat(like(params, np.sin))
    tag, packed = _operators._with_preconditioner(MLP_GN, params, batch, P)
    Gx = _operators._flat_matvec(mlp_loss, tag, None, params, packed, x)
    assert_close(Gx, S * (G @ (S * x)), 1e-10, atol=1e-12 * np.abs(G).max() * S.max() ** 2,
                 name="S G S x")


def test_preconditioned_density_moments_trace_and_mesh(quad):
    """Gauss quadrature from m Lanczos steps integrates polynomials of degree ≤ 2m − 1 exactly:
    Σ_j w_rj θ_rj^p = q_rᵀ M^p q_r for the run's unit start vector q_r, p = 0 … 2m − 1 (m = 6,
    n = 40: the quadrature is far from the spectrum, the moments are still exact)."""
    P = positive_like(quad.params)
    M = preconditioned_dense(quad.A, P)
    m, runs = 6, 2
    kw = dict(key=key(), num_iters=m, num_runs=runs, grid_size=256, preconditioner=P)
    host = probes.spectral_density(quad.loss_fn, quad.params, quad.batch, strategy="host", **kw)
    scan = probes.spectral_density(quad.loss_fn, quad.params, quad.batch, strategy="scan", **kw)
    mesh = probes.spectral_density(quad.loss_fn, quad.params, quad.batch,
                                   mesh=parallel.make_mesh(1), **kw)
    for r in range(runs):
        q0, _ = _lanczos._lanczos_start(None, quad.params, jax.random.fold_in(key(), r), None)
        q0 = np.asarray(q0)
        nodes, weights = np.asarray(host.nodes[r]), np.asarray(host.weights[r])
        for p in range(2 * m):
            exact = q0 @ np.linalg.matrix_power(M, p) @ q0
            scale = np.linalg.norm(M, 2) ** p
            assert_close(np.sum(weights * nodes**p), exact, 0, 1e-10 * scale, name=f"moment {p}")
    for other, name in ((scan, "scan"), (mesh, "mesh")):
        assert_close(other.nodes, host.nodes, 1e-10, atol=1e-10, name=f"nodes {name}")
        assert_close(other.density, host.density, 1e-8, atol=1e-10, name=f"density {name}")
    # trace: Hutch++ exact with 3n samples; Hutchinson host = scan = mesh
    n = M.shape[0]
    t = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, key=key(), num_samples=3 * n,
                             method="hutch++", preconditioner=P)
    assert_close(t.estimate, np.trace(M), 1e-8, name="P trace (hutch++)")
    kw = dict(key=key(), num_samples=30, preconditioner=P)
    a = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, strategy="host", **kw)
    b = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, strategy="scan", **kw)
    c = probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, mesh=parallel.make_mesh(1), **kw)
    assert abs(float(a.estimate) - np.trace(M)) <= 3 * float(a.stderr)
    for other, name in ((b, "scan"), (c, "mesh")):
        assert_close(other.estimate, a.estimate, 1e-12, name=f"hutchinson {name}")


def test_preconditioner_ones_is_the_plain_result(quad, mlp):
    """P = 1: the wrapped operator product is bit-for-bit the plain one (S = 1/√1 = 1 exactly, and
    1·x is exact). The probes then agree to a few ulps, not bit for bit: XLA fuses the Lanczos
    step around a different program (measured: 4e-16 relative on the eigenvalues, the first
    difference in the basis at step 1), so the probes are compared at 1e-13 (≈ 500 ulps; a scale
    that is off by one ulp in one leaf is already ~1e-16 per product, a wrong scale O(1))."""
    for loss_fn, params, batch, curvature in ((quad.loss_fn, quad.params, quad.batch, "hessian"),
                                              (mlp_loss, mlp[0], mlp[1], "hessian"),
                                              (mlp_loss, mlp[0], mlp[1], MLP_GN)):
        ones = jax.tree.map(jnp.ones_like, params)
        tag, packed = _operators._with_preconditioner(curvature, params, batch, ones)
        x = flat(like(params, np.sin))
        plain = _operators._flat_matvec(loss_fn, curvature, None, params, batch, x)
        wrapped = _operators._flat_matvec(loss_fn, tag, None, params, packed, x)
        np.testing.assert_array_equal(np.asarray(wrapped), np.asarray(plain))
    ones = jax.tree.map(jnp.ones_like, quad.params)
    args = (quad.loss_fn, quad.params, quad.batch)
    for strategy in ("host", "scan"):
        kw = dict(key=key(), num_iters=quad.A.shape[0], strategy=strategy)
        plain = probes.hessian_eigs(*args, 3, **kw)
        pre = probes.hessian_eigs(*args, 3, preconditioner=ones, **kw)
        assert_close(pre.eigenvalues, plain.eigenvalues, 1e-13, name=f"eigs {strategy}")
        assert_close(rows(pre.eigenvectors), rows(plain.eigenvectors), 0, 1e-12, name="vectors")
        kw = dict(key=key(), num_samples=30, strategy=strategy)
        plain, pre = (probes.hessian_trace(*args, preconditioner=p, **kw) for p in (None, ones))
        assert_close(pre.estimate, plain.estimate, 1e-13, name=f"trace {strategy}")
        kw = dict(key=key(), num_iters=6, num_runs=2, grid_size=256, strategy=strategy)
        plain, pre = (probes.spectral_density(*args, preconditioner=p, **kw) for p in (None, ones))
        assert_close(pre.nodes, plain.nodes, 1e-13, name=f"slq nodes {strategy}")
        assert_close(pre.weights, plain.weights, 0, 1e-13, name=f"slq weights {strategy}")


HVP_CALLS: list = []


def _counted_quadratic(params, batch):
    jax.debug.callback(lambda: HVP_CALLS.append(1))  # runs once per operator product
    return Quadratic.loss_fn(params, batch)


def test_preconditioned_costs_the_same_hvps(quad):
    """The wrapper adds two elementwise products, not operator products: the loss runs exactly
    num_iters (Lanczos), num_runs·num_iters (SLQ) and num_samples (trace) times, as without P."""
    P = positive_like(quad.params)
    args = (_counted_quadratic, quad.params, quad.batch)

    def count(fn, **kw):
        HVP_CALLS.clear()
        jax.block_until_ready(fn(*args, key=key(), **kw))
        jax.effects_barrier()
        return len(HVP_CALLS)

    for pre in (None, P):
        for strategy in ("host", "scan"):
            assert count(probes.hessian_eigs, k=2, num_iters=7, strategy=strategy,
                         preconditioner=pre) == 7
        # (SLQ and the trace run the same wrapped product; host only, to keep compiles few)
        kw = dict(strategy="host", preconditioner=pre)
        assert count(probes.spectral_density, num_iters=5, num_runs=2, grid_size=16, **kw) == 10
        assert count(probes.hessian_trace, num_samples=9, method="hutch++", **kw) == 9


def test_preconditioner_errors(quad):
    P = positive_like(quad.params)
    kw = dict(key=key(), num_iters=3)
    args = (quad.loss_fn, quad.params, quad.batch, 1)
    bad_values = {"zero": 0.0, "negative": -1.0, "inf": np.inf, "nan": np.nan}
    for label, value in bad_values.items():
        bad = {**P, "w": P["w"].at[2, 3].set(value)}
        with pytest.raises(ValueError, match=r"leaf \['w'\] has 1 entry .*index \(2, 3\)"):
            probes.hessian_eigs(*args, preconditioner=bad, **kw)
    with pytest.raises(ValueError, match=r"leaf \['b'\] of params is missing"):
        probes.hessian_eigs(*args, preconditioner={"w": P["w"]}, **kw)
    with pytest.raises(ValueError, match=r"leaf \['c'\] is not in params"):
        probes.hessian_eigs(*args, preconditioner={**P, "c": P["b"]}, **kw)
    with pytest.raises(ValueError, match=r"leaf \['b'\] has shape \(5,\)"):
        probes.hessian_eigs(*args, preconditioner={**P, "b": P["b"][:5]}, **kw)
    with pytest.raises(ValueError, match=r"leaf \['b'\] has 2 entries"):
        probes.hessian_trace(quad.loss_fn, quad.params, quad.batch, key=key(), num_samples=3,
                             preconditioner={**P, "b": P["b"].at[:2].set(0.0)})
    with pytest.raises(ValueError, match="leaf"):
        probes.spectral_density(quad.loss_fn, quad.params, quad.batch, key=key(), num_iters=3,
                                num_runs=1, preconditioner={**P, "b": -P["b"]})
    # Under jax.jit values cannot be checked: a bad entry makes every result NaN; structure and
    # shapes are static and still raise.
    run = jax.jit(lambda p: probes.hessian_eigs(*args, preconditioner=p, **kw).eigenvalues)
    assert np.all(np.isfinite(np.asarray(run(P))))
    assert np.all(np.isnan(np.asarray(run({**P, "w": P["w"].at[0, 0].set(0.0)}))))
    with pytest.raises(ValueError, match="has shape"):
        run({**P, "b": P["b"][:5]})
