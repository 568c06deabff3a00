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
    exec(compile(blocks[1], "README.md", "exec"), {})
    assert capsys.readouterr().out.count("[") >= 2  # the loss and gradient-change arrays
