"""The README's Python example runs as printed (docs do not rot)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_examples_run(capsys, tmp_path, monkeypatch):
    """The fit example trains and prints β and λ_max; the probe example prints the Fig.-4 arrays."""
    import math

    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README has the fit and the probe examples"
    exec(compile(blocks[0], "README.md", "exec"), {})
    beta, lam = (float(v) for v in capsys.readouterr().out.split())
    assert math.isfinite(beta) and lam > 0
    assert (tmp_path / "runs/readme/probes.jsonl").exists()
    ns: dict = {}
    exec(compile(blocks[1], "README.md", "exec"), ns)
    r, out = ns["r"], capsys.readouterr().out
    assert out.startswith(str(r.loss)) and str(r.grad_change) in out  # it prints what it computed
    # ... and what it computed is the loss at θ − η₀g and ‖g‖, evaluated here independently
    # (float32; rtol 1e-5 allows a different fusion of the same sums)
    import jax
    import numpy as np
    import optax

    batch = ns["make_batch"](ns["x"], ns["y"], ns["state"])
    grad = jax.grad(ns["loss_fn"])(ns["params"], batch)
    eta = float(ns["lr_multiples"](0.1)[0])
    moved = jax.tree.map(lambda p, g: p - eta * g, ns["params"], grad)
    np.testing.assert_allclose(float(r.loss[0]), float(ns["loss_fn"](moved, batch)), rtol=1e-5)
    np.testing.assert_allclose(float(r.grad_norm), float(optax.tree.norm(grad)), rtol=1e-5)
