"""examples/custom_model.py runs: the bridge works for a plain NNX model with nnx.BatchNorm."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_custom_model_example(capsys):
    runpy.run_path(str(EXAMPLES / "custom_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "batch_stats" in out and "running_average" in out
    assert "running statistics unchanged by probing: True" in out


def test_custom_hook_example(tmp_path, capsys):
    """The user-defined hook records cosines in [-1, 1] (NaN first) every 5 steps."""
    import math

    ns = runpy.run_path(str(EXAMPLES / "custom_hook.py"))
    ns["main"](["--steps", "15", "--out", str(tmp_path / "run")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [int(line.split()[1]) for line in lines] == [0, 5, 10]
    cosines = [float(line.split()[3]) for line in lines]
    assert math.isnan(cosines[0]) and all(-1 <= c <= 1 for c in cosines[1:])
