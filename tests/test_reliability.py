"""Reliability: divergence, torn records, kill -9 and resume, determinism, checkpoint mismatch,
and property-based invariances of the probes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from landscape import probes
from landscape.cli import main
from landscape.config import ConfigError, TrainConfig
from landscape.records import RecordWriter, read_records, truncate_records
from landscape.train import read_run, train

TINY_RUN = dict(dataset="synthetic", model="mlp", width=0.2, steps=8, batch_size=32, lr=0.1,
                eval_every=4, checkpoint_every=4, probe_every=2, num_step_sizes=2,
                probe_strategy="unroll")
TINY_CLI = ["--dataset", "synthetic", "--model", "mlp", "--width", "0.2", "--steps", "8",
            "--probe-every", "2", "--num-step-sizes", "2", "--batch-size", "32",
            "--checkpoint-every", "2", "--no-progress"]


# ------------------------------------------------------------------------------- divergence

@pytest.mark.slow
def test_divergence_is_recorded_and_the_command_still_succeeds(tmp_path, capsys):
    out = tmp_path / "div"
    argv = [*TINY_CLI, "--model", "vgg5", "--width", "0.125", "--lr", "1e6"]  # ReLU net → NaN
    assert main(["reproduce", "fig4", *argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "diverged" in captured.err
    text = (out / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # valid JSON: non-finite → null
    summary = json.loads(text)
    step = summary["models"]["vanilla"]["diverged_at_step"]
    assert step is not None and 0 <= step < 8
    assert None in summary["models"]["vanilla"]["loss_max"]  # probes after divergence are NaN
    rows = read_records(out / "vanilla" / "probes.jsonl")
    assert np.isnan(rows[-1]["loss_max"])
    assert len(read_records(out / "vanilla" / "train.jsonl")) == 8  # the run finished
    assert summary["models"]["vanilla"]["test_accuracy"] is None  # NaN logits: no fake accuracy


def test_stop_on_divergence(tmp_path):
    cfg = TrainConfig(**{**TINY_RUN, "model": "vgg5", "width": 0.125, "norm": "none", "lr": 1e6,
                         "stop_on_divergence": True})
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = train(cfg, tmp_path, progress=False)
    rows = read_records(tmp_path / "train.jsonl")
    assert result.diverged_at_step is not None
    assert rows[-1]["step"] == result.diverged_at_step  # stopped right there
    assert json.loads((tmp_path / "run.json").read_text())["diverged_at_step"] == result.diverged_at_step


# ---------------------------------------------------------------------------------- records

def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write({"step": 0, "x": 1.0})
        w.write({"step": 1, "x": float("nan")})
    with open(path, "a") as f:
        f.write('{"step": 2, "x": 3.')  # killed mid-write
    with pytest.warns(RuntimeWarning, match="torn"):
        rows = read_records(path)
    assert [r["step"] for r in rows] == [0, 1] and np.isnan(rows[1]["x"])
    with pytest.warns(RuntimeWarning):
        truncate_records(path, before_step=10)
    assert path.read_text().endswith("\n")  # rewritten whole: appends start on a fresh line
    (tmp_path / "bad.jsonl").write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------ kill -9 and resume

#: Loaded by the child through PYTHONPATH: SIGKILL the process right after it writes the given
#: step of the given run's train.jsonl — a kill at a known point, no polling, no race.
_KILLER = """
import os, signal
from landscape.engine import sinks

_write = sinks.JsonlSink.write


def write(self, name, record):
    _write(self, name, record)
    if (name == "train" and self.workdir.name == os.environ["KILL_RUN"]
            and record["step"] == int(os.environ["KILL_AT_STEP"])):
        os.kill(os.getpid(), signal.SIGKILL)


sinks.JsonlSink.write = write
"""


@pytest.mark.slow
def test_kill_9_then_same_command_equals_uninterrupted(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "landscape")
    args = ["reproduce", "fig4", *TINY_CLI, "--steps", "40", "--probe-every", "4"]
    ref = tmp_path / "ref"
    subprocess.run([exe, *args, "--out", str(ref)], check=True, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    (tmp_path / "killer").mkdir()
    (tmp_path / "killer" / "sitecustomize.py").write_text(_KILLER)
    env = {**os.environ, "KILL_RUN": "vanilla", "KILL_AT_STEP": "13",  # the second run, mid-way
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "killer"), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([exe, *args, "--out", str(out)], env=env, capture_output=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "batchnorm" / "train.jsonl").exists() and not (out / "summary.json").exists()
    subprocess.run([exe, *args, "--out", str(out)], check=True, capture_output=True, timeout=600)
    a, b = json.loads((ref / "summary.json").read_text()), json.loads((out / "summary.json").read_text())
    assert a["models"] == b["models"]
    for label in ("batchnorm", "vanilla"):
        steps = [r["step"] for r in read_records(out / label / "train.jsonl")]
        assert steps == list(range(40))  # no duplicates, no gaps


# ------------------------------------------------------------------------------ determinism

@pytest.mark.slow
def test_same_seed_same_records_different_seed_differs(tmp_path):
    cfg = TrainConfig(**{**TINY_RUN, "norm": "noisy_batch", "steps": 4, "checkpoint_every": 4})
    runs = [read_run(train(c, tmp_path / name, progress=False).workdir)
            for name, c in (("a", cfg), ("b", cfg), ("c", cfg.replace(seed=1)))]
    assert runs[0]["train"] == runs[1]["train"] and runs[0]["probes"] == runs[1]["probes"]
    assert runs[0]["train"][0]["loss"] != runs[2]["train"][0]["loss"]


# ---------------------------------------------------------------------- untrusted checkpoints

@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(tmp_path):
    cfg = TrainConfig(**{**TINY_RUN, "steps": 4})
    train(cfg, tmp_path / "a", progress=False)
    other = cfg.replace(width=0.3)
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints")
    with pytest.raises(ConfigError, match="does not match the model"):
        train(other, tmp_path / "b", progress=False)


# ------------------------------------------------------------- property-based probe invariances

def _loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"])
    return batch["c"] * jnp.mean((h @ params["w2"] - batch["y"]) ** 2)


@pytest.fixture(scope="module")
def probe64():
    with jax.enable_x64(True):
        fn = probes.make_step_probe(_loss, strategy="unroll")
        key = jax.random.key(0)
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        params = {"w1": jax.random.normal(k1, (4, 5), jnp.float64),
                  "w2": jax.random.normal(k2, (5, 2), jnp.float64)}
        batch = {"x": jax.random.normal(k3, (8, 4), jnp.float64),
                 "y": jax.random.normal(k4, (8, 2), jnp.float64)}
        direction = jax.tree.map(lambda p: jax.random.normal(k5, p.shape, jnp.float64), params)
        yield fn, params, batch, direction


# Tolerance: float64 arithmetic with a few hundred flops per value; 1e-9 relative leaves room.
@settings(max_examples=15, deadline=None)
@given(c=st.floats(0.01, 100.0), etas=st.lists(st.floats(1e-3, 0.5), min_size=3, max_size=3))
def test_scaling_the_loss_scales_every_field(probe64, c, etas):
    fn, params, batch, _ = probe64
    with jax.enable_x64(True):
        step_sizes = jnp.asarray(etas, jnp.float64)
        base = fn(params, {**batch, "c": jnp.float64(1.0)}, step_sizes)
        # scaling L by c scales g by c, so moving along the default direction at η/c reaches the
        # same points; with a fixed direction the points are the same at the same η
        direction = jax.tree.map(lambda g: g, jax.grad(_loss)(params, {**batch, "c": 1.0}))
        base_d = fn(params, {**batch, "c": jnp.float64(1.0)}, step_sizes, direction)
        scaled = fn(params, {**batch, "c": jnp.float64(c)}, step_sizes, direction)
        np.testing.assert_allclose(scaled.loss, c * base_d.loss, rtol=1e-9)
        np.testing.assert_allclose(scaled.grad_change, c * base_d.grad_change, rtol=1e-9)
        np.testing.assert_allclose(scaled.grad_norm, c * base.grad_norm, rtol=1e-9)
        np.testing.assert_allclose(scaled.effective_beta, c * base_d.effective_beta, rtol=1e-9)


@settings(max_examples=15, deadline=None)
@given(s=st.floats(0.05, 20.0), etas=st.lists(st.floats(1e-3, 0.5), min_size=3, max_size=3))
def test_scaling_direction_and_inverse_step_sizes_is_invariant(probe64, s, etas):
    fn, params, batch, direction = probe64
    with jax.enable_x64(True):
        b = {**batch, "c": jnp.float64(1.0)}
        step_sizes = jnp.asarray(etas, jnp.float64)
        base = fn(params, b, step_sizes, direction)
        moved = fn(params, b, step_sizes / s, jax.tree.map(lambda d: s * d, direction))
        np.testing.assert_allclose(moved.loss, base.loss, rtol=1e-9)
        np.testing.assert_allclose(moved.grad_change, base.grad_change, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(moved.effective_beta, base.effective_beta, rtol=1e-9)


# ------------------------------------------------------------- review findings (regressions)

@pytest.mark.slow
def test_overwrite_never_leaves_the_output_folder(tmp_path):
    from landscape.experiments.fig4 import fig4_experiment
    from landscape.reproduce import run_experiment

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "exp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "experiment.json").write_text(json.dumps({"experiment": "x", "runs": {"../victim": {}}}))
    exp = fig4_experiment("quick", dataset="synthetic", model="mlp", width=0.2, steps=2,
                          probe_every=1, num_step_sizes=1, batch_size=32, checkpoint_every=2)
    run_experiment(exp, out, overwrite=True, progress=False)
    assert (victim / "precious.txt").read_text() == "keep"  # outside --out: untouched
    assert (out / "notes.txt").read_text() == "mine"  # not a run folder: untouched
    assert (out / "summary.json").exists()


def test_finished_records_are_never_wiped_without_checkpoints(tmp_path):
    cfg = TrainConfig(**{**TINY_RUN, "steps": 4})
    train(cfg, tmp_path, progress=False)
    before = (tmp_path / "train.jsonl").read_text()
    shutil.rmtree(tmp_path / "checkpoints")
    from landscape.train import RunExistsError

    with pytest.raises(RunExistsError, match="no checkpoint to resume from"):
        train(cfg, tmp_path, progress=False)
    assert (tmp_path / "train.jsonl").read_text() == before


@pytest.mark.slow
def test_rerunning_a_run_stopped_by_divergence_trains_nothing(tmp_path):
    cfg = TrainConfig(**{**TINY_RUN, "model": "vgg5", "width": 0.125, "norm": "none", "lr": 1e6,
                         "stop_on_divergence": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg, tmp_path, progress=False)
        first = [(tmp_path / f).read_text() for f in ("train.jsonl", "eval.jsonl")]
        train(cfg, tmp_path, progress=False)
    assert [(tmp_path / f).read_text() for f in ("train.jsonl", "eval.jsonl")] == first


def test_comparison_uses_steps_probed_by_both_runs():
    from landscape.experiments.fig4 import fraction_below as _fraction_below

    # vanilla stopped early: only steps 0 and 1 are compared
    assert _fraction_below([0, 1, 2, 3], [1.0, 5.0, 1.0, 1.0], [0, 1], [2.0, 2.0]) == 0.5
    assert np.isnan(_fraction_below([0], [1.0], [1], [2.0]))


def test_infinite_option_values_are_refused():
    with pytest.raises(ConfigError, match="lpinf"):
        TrainConfig(**{**TINY_RUN, "norm": "lp", "norm_options": {"p": float("inf")}})


@pytest.mark.slow
def test_overwrite_replaces_nested_compare_runs(tmp_path):
    from landscape.reproduce import EXPERIMENTS, ExperimentExistsError, run_experiment

    tiny = dict(dataset="synthetic", model="mlp", width=0.2, steps=2, probe_every=1,
                num_step_sizes=1, batch_size=32, checkpoint_every=2)
    run_experiment(EXPERIMENTS["compare"]("quick", norms=["none"], seeds=1, **tiny), tmp_path,
                   progress=False)
    assert (tmp_path / "none" / "seed0" / "config.json").exists()
    (tmp_path / "experiment.json").unlink()  # even without its manifest the folder is recognised
    other = EXPERIMENTS["compare"]("quick", norms=["none"], seeds=1, **{**tiny, "lr": 0.05})
    with pytest.raises(ExperimentExistsError):
        run_experiment(other, tmp_path, progress=False)
    run_experiment(other, tmp_path, overwrite=True, progress=False)
    cfg = json.loads((tmp_path / "none" / "seed0" / "config.json").read_text())
    assert cfg["lr"] == 0.05


def test_a_failed_start_does_not_block_its_folder(tmp_path):
    """A run that failed before training anything (here: missing CIFAR-10 files) leaves only its
    manifest; the corrected command must not be refused as "a different run" — but a folder with
    a finished run still is (the test above)."""
    from landscape.reproduce import EXPERIMENTS, run_experiment
    from landscape.data import DataError

    bad = EXPERIMENTS["fig4"]("quick", dataset="cifar10", data_dir=str(tmp_path / "missing"),
                              steps=2, model="mlp", width=0.2)
    with pytest.raises(DataError):
        run_experiment(bad, tmp_path / "out", progress=False)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["experiment.json"]
    good = EXPERIMENTS["fig4"]("quick", dataset="synthetic", steps=2, model="mlp", width=0.2,
                               probe_every=1, num_step_sizes=1, batch_size=32, checkpoint_every=2)
    run_experiment(good, tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert manifest["runs"]["batchnorm"]["dataset"] == "synthetic"
