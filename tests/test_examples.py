"""examples/custom_model.py runs: the bridge works for a plain NNX model with nnx.BatchNorm."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_custom_model_example(capsys):
    runpy.run_path(str(EXAMPLES / "custom_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "batch_stats" in out and "running_average" in out
    assert "running statistics unchanged by probing: True" in out
