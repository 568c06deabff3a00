"""The ``landscape`` command: user errors are one ``error:`` line and exit 2; a tiny run works."""

import json
import os
import subprocess
import sys

import pytest

from landscape.cli import main

TINY = ["--dataset", "synthetic", "--width", "0.125", "--steps", "4", "--probe-every", "2",
        "--num-step-sizes", "2", "--batch-size", "32", "--checkpoint-every", "2", "--no-progress"]


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["reproduce", "fig99"], "invalid choice: 'fig99'"),
    (["reproduce", "fig4", "--steps", "0"], "expected a positive integer, got '0'"),
    (["reproduce", "fig4", "--steps", "-5"], "expected a positive integer"),
    (["reproduce", "fig4", "--steps", "ten"], "expected a positive integer, got 'ten'"),
    (["reproduce", "fig4", "--lr", "nan"], "positive finite number, got 'nan'"),
    (["reproduce", "fig4", "--lr", "inf"], "positive finite number, got 'inf'"),
    (["reproduce", "fig4", "--lr", "-0.1"], "positive finite number"),
    (["reproduce", "fig4", "--lr", "abc"], "positive finite number, got 'abc'"),
    (["reproduce", "fig4", "--batch-size", "0"], "positive integer"),
    (["reproduce", "fig4", "--width", "0"], "positive finite number"),
    (["reproduce", "fig4", "--seed", "-1"], "integer >= 0"),
    (["reproduce", "fig4", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["reproduce", "fig4", "--model", "vggnet"], "or package.module:function, got 'vggnet'"),
    (["reproduce", "fig4", "--model", "resnet21"], "a CIFAR ResNet's depth is 6n+2"),
    (["reproduce", "fig4", "--model", "no_such_module_xyz:make", "--steps", "1"],
     "model: cannot import 'no_such_module_xyz'"),
    (["reproduce", "fig4", "--preset", "huge"], "invalid choice: 'huge'"),
    (["reproduce", "fig4", "--num-step-sizes", "0"], "positive integer"),
    (["reproduce"], "required"),
    ([], "required"),
    (["reproduce", "fig4", "--bogus"], "unrecognized arguments: --bogus"),
    (["reproduce", "fig4", "--norms", "layer"], "--norms applies to transformer-norms"),
    (["reproduce", "fig1", "--depths", "8"], "--depths applies to skip and transformer-norms"),
    (["reproduce", "skip", "--depths", "8,x"], "expected positive integers like 2,4,8"),
    (["reproduce", "transformer-norms", "--depths", "0,2"], "expected positive integers"),
    (["reproduce", "transformer-norms", "--norms", "batch"], "norms: batch"),
    (["reproduce", "fig4", "--grid", "5"], "--grid applies to surfaces and skip"),
    (["reproduce", "surfaces", "--grid", "0"], "positive integer"),
])
def test_bad_flags(capsys, argv, needle):
    assert needle in _error(capsys, argv)


def test_depths_norms_and_grid_reach_the_experiment(monkeypatch, tmp_path):
    """``--depths`` picks skip's ResNets and transformer-norms' Xiong depths, ``--norms`` its grid,
    ``--grid`` the surfaces' slices and skip's slices and convexity map (the experiment is built,
    not run)."""
    from landscape import reproduce

    built = []
    monkeypatch.setattr(reproduce, "run_experiment", lambda exp, *a, **k: built.append(exp) or {})
    assert main(["reproduce", "skip", "--depths", "8,20", "--out", str(tmp_path / "s")]) == 0
    assert list(built[-1].runs) == ["resnet8", "resnet8-noshort", "resnet20", "resnet20-noshort"]
    assert main(["reproduce", "transformer-norms", "--depths", "1,3", "--norms", "rms, dyt",
                 "--out", str(tmp_path / "t")]) == 0
    assert built[-1].options["xiong"]["depths"] == [1, 3]
    assert {c[1] for c in built[-1].options["configs"]} == {"rms", "dyt"}
    assert main(["reproduce", "surfaces", "--grid", "7", "--out", str(tmp_path / "g")]) == 0
    assert built[-1].options["grid"] == 7
    assert main(["reproduce", "skip", "--grid", "3", "--out", str(tmp_path / "k")]) == 0
    assert built[-1].options["grid"] == built[-1].options["convexity_grid"] == 3


def test_missing_cifar_folder(capsys, tmp_path):
    line = _error(capsys, ["reproduce", "fig4", "--dataset", "cifar10", "--data-dir",
                           str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert "nope" in line


def test_garbage_cifar_folder(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-binary.tar.gz").write_bytes(b"this is not a tar file")
    line = _error(capsys, ["reproduce", "fig4", "--dataset", "cifar10", "--data-dir", str(data),
                           "--out", str(tmp_path / "out"), "--no-progress"])
    assert "cifar" in line.lower()


def test_out_is_a_file(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    line = _error(capsys, ["reproduce", "fig4", *TINY, "--out", str(target)])
    assert "not a folder" in line
    assert target.read_text() == "keep me"


def test_batch_larger_than_dataset(capsys, tmp_path):
    line = _error(capsys, ["reproduce", "fig4", *TINY[:-3], "--batch-size", "100000",
                           "--no-progress", "--out", str(tmp_path / "o")])
    assert "batch_size=100000" in line


def test_plot_and_report_errors(capsys, tmp_path):
    assert "no such run folder" in _error(capsys, ["plot", str(tmp_path / "missing")])
    assert "not a landscape run folder" in _error(capsys, ["report", str(tmp_path)])


def test_console_script_exit_code(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "landscape")
    proc = subprocess.run([exe, "reproduce", "fig4", "--steps", "0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr


FACTORY = '''
import numpy as np
import jax.numpy as jnp
from flax import nnx


class Net(nnx.Module):
    def __init__(self, d_in, classes, norm, rngs):
        self.lin = nnx.Linear(d_in, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs) if norm == "batch" else None
        self.out = nnx.Linear(16, classes, rngs=rngs)

    def __call__(self, x, *, use_running_average=None):
        h = self.lin(x.reshape(x.shape[0], -1))
        if self.bn is not None:
            h = self.bn(h, use_running_average=use_running_average)
        return self.out(jnp.tanh(h))


def make(*, norm, input_shape, num_classes, width, seed, norm_options, **options):
    if norm not in ("batch", "none"):
        raise ValueError(f"this model has norm batch or none, not {norm!r}")
    return Net(int(np.prod(input_shape)), num_classes, norm, nnx.Rngs(seed))
'''


@pytest.mark.slow
def test_compare_and_analyze_a_user_model_factory(capsys, tmp_path):
    """`landscape compare --model file.py:make` trains the user's NNX model (its config.json
    names the factory) and `landscape analyze` rebuilds it from that name."""
    factory = tmp_path / "mynet.py"
    factory.write_text(FACTORY)
    out = tmp_path / "cmp"
    argv = ["compare", "--model", f"{factory}:make", "--norms", "batch,none", "--seeds", "1",
            *TINY, "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    runs = sorted(p for p in out.rglob("config.json"))
    assert len(runs) == 2
    assert {json.loads(p.read_text())["model"] for p in runs} == {f"{factory}:make"}
    assert main(["analyze", str(runs[0].parent), "--surface", "none", "--num-batches", "2",
                 "--no-progress"]) == 0
    assert "effective β" in capsys.readouterr().out
    # a norm the factory refuses is a one-line error naming the option
    line = _error(capsys, [*argv[:3], "--norms", "layer", *argv[5:], "--out", str(tmp_path / "c2")])
    assert "this model has norm batch or none" in line
