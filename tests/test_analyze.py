"""`landscape analyze` on a tiny run: files, bands, resume equal to an uninterrupted analysis,
option and user-error checks; and examples/analyze_checkpoint.py."""

import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

from landscape import analyze as analyze_mod
from landscape.analyze import analyze, confidence_band, interpolation_max_rise, ring_increase
from landscape.cli import main
from landscape.config import ConfigError, TrainConfig
from images import is_blank
from landscape.records import read_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OPTS = dict(num_batches=2, surface="2d", grid=3, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-step BN MLP (width 0.125) on synthetic 8×8 data, checkpoints at 2 and 4, K = 2 (the
    convnet: `landscape analyze` on the README's fig4 folder, tests/test_readme_commands.py)."""
    from landscape.train import train

    path = tmp_path_factory.mktemp("analyze") / "run"
    cfg = TrainConfig(dataset="synthetic", model="mlp", width=0.125, steps=4, batch_size=16,
                      checkpoint_every=2, keep_checkpoints=10, eval_every=0, num_step_sizes=2)
    train(cfg, path, progress=False)
    return path


def _copy(run_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def test_pure_summaries():
    mean, lo, hi = confidence_band([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(hi - mean, 4.302652729911275 / np.sqrt(3))  # t_{0.975,2}
    assert np.isnan(confidence_band([1.0])[1])
    a = np.linspace(-1, 1, 41)
    assert np.isclose(ring_increase((a, a), a[:, None] ** 2 + a[None, :] ** 2, 0.5), 0.25,
                      atol=2e-3)  # bilinear interpolation error ≤ h²/4 = 6e-4 per axis
    assert interpolation_max_rise([0.0, 0.5, 1.0, 1.5], [3.0, 2.0, 2.5, 9.0]) == 0.5


@pytest.mark.slow
def test_analyze_resume_equals_uninterrupted(run_dir, tmp_path, monkeypatch):
    full = analyze(_copy(run_dir, tmp_path, "full"), steps="all", **OPTS)
    assert [r["step"] for r in full["records"]] == [2, 4]
    r = full["records"][-1]
    assert r["mode"] == "batch_stats" and r["num_batches"] == 2
    assert r["effective_beta_lo"] <= r["effective_beta_mean"] <= r["effective_beta_hi"]
    out = Path(full["run_dir"]) / "analysis"
    for name in ("analysis.json", "analysis.jsonl", "analysis.png", "interpolation.png",
                 "surface_step4.npz", "surface_step4.json", "surface_step4.png",
                 "interpolation_step2.npz"):
        assert (out / name).exists(), name
    assert not is_blank(out / "analysis.png")
    # the slice's centre is the model's loss on minibatch S (= the first probe batch's L(θ))
    s = np.load(out / "surface_step4.npz")
    from landscape import bridge
    from landscape.train import restore_model
    import jax.numpy as jnp
    from landscape.data import batch_at, make_synthetic

    model = restore_model(full["run_dir"], step=4)
    _, params, state = bridge.split(model)
    x, y = batch_at(make_synthetic(seed=0), 4, 16, seed=0)
    loss = bridge.make_loss_fn(model)(params, bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state))
    assert np.isclose(s["loss"][1, 1], float(loss), rtol=1e-5)

    # interrupted after the first step, then rerun: the same records and arrays
    part = _copy(run_dir, tmp_path, "part")
    real, calls = analyze_mod.analyze_step, []

    def flaky(ctx, step, out):
        if calls:
            raise KeyboardInterrupt
        calls.append(step)
        return real(ctx, step, out)

    monkeypatch.setattr(analyze_mod, "analyze_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        analyze(part, steps="all", **OPTS)
    assert [r["step"] for r in read_records(part / "analysis" / "analysis.jsonl")] == [2]
    monkeypatch.setattr(analyze_mod, "analyze_step", real)
    resumed = analyze(part, steps="all", **OPTS)
    assert resumed["records"] == full["records"]
    for name in ("surface_step2.npz", "surface_step4.npz", "interpolation_step4.npz"):
        a, b = np.load(out / name), np.load(part / "analysis" / name)
        assert all(np.array_equal(a[k], b[k]) for k in a.files), name

    # other options are refused; overwrite replaces analysis/ only
    with pytest.raises(ConfigError, match="other options"):
        analyze(part, steps="last", **{**OPTS, "num_batches": 3})
    again = analyze(part, steps="last", overwrite=True, **{**OPTS, "surface": "none"})
    assert [r["step"] for r in again["records"]] == [4]
    assert not (part / "analysis" / "surface_step2.npz").exists()
    assert (part / "config.json").exists() and (part / "checkpoints").is_dir()


def test_user_errors(run_dir, tmp_path, capsys):
    with pytest.raises(ConfigError, match="no checkpoint at step"):
        analyze(run_dir, steps=[3], **OPTS)
    with pytest.raises(ConfigError, match="surface"):
        analyze(run_dir, **{**OPTS, "surface": "3d"})
    with pytest.raises(ConfigError, match="not a run folder"):
        analyze(tmp_path, **OPTS)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="no checkpoints"):
        analyze(empty, **OPTS)
    for argv in (["analyze", str(tmp_path / "nope")], ["analyze", str(run_dir), "--steps", "x"],
                 ["analyze", str(run_dir), "--steps", "7"], ["analyze", str(run_dir), "--grid", "1"],
                 ["analyze", str(run_dir), "--mode", "eval"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
    assert not (run_dir / "analysis").exists()  # nothing written by refused calls


@pytest.mark.slow
def test_cli_experiment_folder(run_dir, tmp_path, capsys):
    exp = tmp_path / "exp"
    _copy(run_dir, exp, "bn")
    (exp / "experiment.json").write_text(json.dumps({"experiment": "fig4", "runs": {"bn": {}}}))
    assert main(["analyze", str(exp), "--surface", "none", "--num-batches", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bn step 4" in out
    assert [r["step"] for r in read_records(exp / "bn" / "analysis" / "analysis.jsonl")] == [4]


@pytest.mark.slow
def test_analyze_checkpoint_example(capsys):
    runpy.run_path(str(EXAMPLES / "analyze_checkpoint.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "restored equals trained: True" in out
    assert "surface centre equals loss: True" in out
