"""The README's Python examples run as printed (docs do not rot)."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from children import runtime_env

README = Path(__file__).resolve().parents[1] / "README.md"

#: Appended to the probe example in its process: what it computed, and the loss at θ − η₀g and
#: ‖g‖ evaluated independently of the probe (a jitted gradient, the moved parameters).
_CHECK = """
import json as _json, jax as _jax, optax as _optax
_batch = make_batch(x, y, state)
_grad = _jax.jit(_jax.grad(loss_fn))(params, _batch)
_eta = float(lr_multiples(0.1)[0])
_moved = _jax.tree.map(lambda p, g: p - _eta * g, params, _grad)
print(_json.dumps({"loss0": float(r.loss[0]), "grad_norm": float(r.grad_norm),
                   "printed_loss": str(r.loss), "printed_change": str(r.grad_change),
                   "ref_loss0": float(_jax.jit(loss_fn)(_moved, _batch)),
                   "ref_grad_norm": float(_optax.tree.norm(_grad))}))
"""


@pytest.mark.slow
def test_readme_python_examples_run(capsys, tmp_path, monkeypatch):
    """The fit example trains and prints β and λ_max; the probe example prints the Fig.-4 arrays
    (in a process of its own, as a user runs it: it probes a batch of 128 on VGG-11)."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README has the fit and the probe examples"
    exec(compile(blocks[0], "README.md", "exec"), {})
    beta, lam = (float(v) for v in capsys.readouterr().out.split())
    assert math.isfinite(beta) and lam > 0
    assert (tmp_path / "runs/readme/probes.jsonl").exists()

    proc = subprocess.run([sys.executable, "-c", blocks[1] + _CHECK], cwd=tmp_path,
                          env=runtime_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *printed, last = proc.stdout.splitlines()
    got = json.loads(last)
    out = "\n".join(printed)
    # it prints what it computed ...
    assert out.startswith(got["printed_loss"]) and got["printed_change"] in out
    # ... and what it computed is the loss at θ − η₀g and ‖g‖ (float32; rtol 1e-5 allows a
    # different fusion of the same sums)
    assert got["loss0"] == pytest.approx(got["ref_loss0"], rel=1e-5)
    assert got["grad_norm"] == pytest.approx(got["ref_grad_norm"], rel=1e-5)
