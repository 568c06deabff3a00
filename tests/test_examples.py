"""examples/custom_model.py runs: the bridge works for a plain NNX model with nnx.BatchNorm."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from children import child_env, runtime_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _python(script: Path, cwd: Path, env: dict[str, str]) -> str:
    """``python SCRIPT`` as a user runs it (a process of its own); its stdout."""
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_custom_model_example(tmp_path):
    out = _python(EXAMPLES / "custom_model.py", tmp_path, child_env(drop=()))  # tiny: compiles
    assert "batch_stats" in out and "running_average" in out
    assert "running statistics unchanged by probing: True" in out


@pytest.mark.slow
def test_custom_hook_example(tmp_path, capsys):
    """The user-defined hook records cosines in [-1, 1] (NaN first) every 5 steps."""
    import math

    ns = runpy.run_path(str(EXAMPLES / "custom_hook.py"))
    ns["main"](["--steps", "15", "--out", str(tmp_path / "run")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [int(line.split()[1]) for line in lines] == [0, 5, 10]
    cosines = [float(line.split()[3]) for line in lines]
    assert math.isnan(cosines[0]) and all(-1 <= c <= 1 for c in cosines[1:])


def _run_example(name, argv, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.slow
def test_plain_jax_example(tmp_path, capsys, monkeypatch):
    """A model in plain JAX (a list of dicts of arrays) through fit: records and hooks written."""
    from landscape.train import read_run

    _run_example("plain_jax.py", ["--out", str(tmp_path / "run"), "--steps", "40"], monkeypatch)
    run = read_run(tmp_path / "run")
    assert [r["step"] for r in run["probes"]] == [0, 20]
    assert [r["step"] for r in run["curvature"]] == [0]
    assert run["train"][-1]["loss"] < run["train"][0]["loss"]
    assert "effective β over training" in capsys.readouterr().out


@pytest.mark.slow
def test_attach_probes_example(tmp_path):
    """The own-loop form: hooks.step in a hand-written NNX loop, the Figure-4 figure drawn."""
    out = _python(EXAMPLES / "attach_probes.py", tmp_path, runtime_env())
    assert out.count("effective beta") == 12 and (tmp_path / "runs/attach/fig4.png").exists()


@pytest.mark.slow
def test_transformer_example_then_analyze_from_the_cli(tmp_path, monkeypatch):
    """The NNX transformer LM trains through fit with both hooks; `landscape analyze` (the
    command, a new process) rebuilds it from the recorded setup and probes its checkpoint."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "lm"
    _run_example("transformer_lm.py", ["--out", str(out), "--steps", "4", "--layers", "1"], monkeypatch)
    config = json.loads((out / "config.json").read_text())
    assert config["setup"]["factory"].endswith("transformer_lm.py:setup")
    exe = os.path.join(os.path.dirname(sys.executable), "landscape")
    proc = subprocess.run([exe, "analyze", str(out), "--surface", "1d", "--grid", "3",
                           "--num-batches", "2", "--no-progress"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "effective β" in proc.stdout and "λ_max" in proc.stdout
    record = json.loads((out / "analysis" / "analysis.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 4 and record["lambda_max"] > 0
