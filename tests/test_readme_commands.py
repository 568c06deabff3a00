"""Every ``landscape`` command in README.md's code blocks, run as the user runs it.

Each runs the ``landscape`` console script as a separate process, with the README's own flags
followed by :data:`TINY_FLAGS` (argparse lets a later flag win), in a scratch folder, and checks
exit status 0, no traceback, and the printed summary against ``summary.json``. ``plot``,
``report`` and ``analyze`` reuse the finished ``landscape reproduce fig4`` folder.
:func:`test_every_readme_command_has_a_tiny_setting` fails when the README shows a command that
neither :data:`TINY_FLAGS` nor :data:`NOT_RUN` names.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from images import is_blank
from landscape.cli import _print_summary
from landscape.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
EXE = os.path.join(os.path.dirname(sys.executable), "landscape")

#: Flags that keep an experiment to seconds; Figure-4 probes (TINY) only where it has them (the
#: others default to probe_every 0, and a probe would only add compilation).
NO_PROBES = ["--dataset", "synthetic", "--width", "0.125", "--steps", "2", "--batch-size", "16",
             "--checkpoint-every", "2", "--no-progress"]
TINY = [*NO_PROBES, "--num-step-sizes", "2", "--probe-every", "1"]
#: dln is always the deep linear network (no --dataset/--width); eos and adam-eos are full-batch
#: on the first 1 000 mnist5k images (--batch-size must equal that subset; synthetic has 512).
DLN_TINY = ["--steps", "2", "--num-step-sizes", "2", "--probe-every", "1", "--checkpoint-every",
            "2", "--no-progress"]
EOS_TINY = ["--steps", "2", "--checkpoint-every", "2", "--no-progress"]
#: surfaces' PCA plane needs two checkpoints besides θ₀ (one leaves a single direction).
SURFACES_TINY = [*NO_PROBES, "--checkpoint-every", "1", "--grid", "5"]

#: The transformer on --dataset text (the default corpus, context 64), one tiny layer.
TRANSFORMER_TINY = ["--steps", "2", "--batch-size", "4", "--layers", "1", "--d-model", "16",
                    "--heads", "2", "--num-step-sizes", "2", "--probe-every", "1",
                    "--checkpoint-every", "2", "--no-progress"]

FIG4 = "landscape reproduce fig4"
COMPARE = "landscape compare --norms none,batch,layer,group,rms,weight,lp1,lp2,lpinf --seeds 3"
PAPER = ("landscape reproduce fig4 --preset paper --data-dir ~/data/cifar10 --download "
         "--out runs/fig4-paper")

#: README command (placeholders RUN_DIR and NAME as written) → the flags appended to run it tiny.
#: ``reproduce``/``compare`` also get ``--out`` (a folder of their own).
TINY_FLAGS: dict[str, list[str]] = {
    "landscape reproduce fig4": TINY,
    **{f"landscape reproduce {name}": NO_PROBES
       for name in ("fig1", "fig3", "ioffe-fig1", "theory")},
    # on the MLP (12 → 9, 17 → 12, 22 → 11 s on 2 cores): the convnet's own path runs in fig1,
    # fig3, fig4 and surfaces; the spectrum's numbers are checked in tests/test_spectrum.py
    "landscape reproduce fig2": [*NO_PROBES, "--model", "mlp"],
    "landscape reproduce fig5": [*TINY, "--model", "mlp"],
    "landscape reproduce spectrum": [*NO_PROBES, "--model", "mlp"],
    "landscape reproduce surfaces": SURFACES_TINY,
    "landscape reproduce dln": DLN_TINY,
    "landscape reproduce eos": EOS_TINY,
    "landscape reproduce adam-eos": EOS_TINY,
    # blockwise trains nothing (both nets at initialisation): no --steps
    "landscape reproduce blockwise": ["--dataset", "synthetic", "--width", "0.125", "--batch-size",
                                      "4", "--no-progress"],
    # fig4 itself (and the paper preset, vgg5) run the convnet; its variants and the nine-norm
    # compare run the MLP, the cheapest model to compile, since the flags are what they test
    "landscape reproduce fig4 --seeds 5": [*TINY, "--seeds", "2", "--model", "mlp"],
    "landscape reproduce fig4 --curvature": [*TINY, "--model", "mlp"],
    COMPARE: [*TINY, "--seeds", "1", "--model", "mlp"],  # all nine norms, one seed each
    PAPER: [*TINY, "--model", "vgg5"],  # synthetic data: --data-dir and --download go unused
    # one depth, resnet8 ± shortcuts; 3 × 3 slices and convexity maps (34 → 28 s)
    "landscape reproduce skip": [*TINY, "--model", "resnet8", "--grid", "3"],
    # the layer norm only (pre, post, post without warm-up) and Xiong at depths 1 and 2
    "landscape reproduce transformer-norms": [*TRANSFORMER_TINY, "--norms", "layer",
                                              "--depths", "1,2"],
    "landscape compare --model resnet20 --no-shortcut --norms batch,none,layer --seeds 2":
        [*TINY, "--model", "resnet8", "--seeds", "1"],
    "landscape compare --model transformer --dataset text --norm-position post --norms "
    "layer,rms,dyt,none": [*TRANSFORMER_TINY, "--seeds", "1"],
    "landscape plot RUN_DIR": [],
    "landscape report RUN_DIR": [],
    "landscape analyze RUN_DIR": ["--grid", "3", "--num-batches", "2", "--no-progress"],
}

#: README commands not run here, with the reason.
NOT_RUN: dict[str, str] = {
    "landscape reproduce fig4 --preset paper --data-dir /shared/cifar10 --out /shared/runs/fig4 "
    "--coordinator host0:5432 --num-processes 2 --process-id 0":
        "needs its partner process (--process-id 1) at host0:5432; two processes joined by "
        "jax.distributed run in tests/test_parallel.py::test_two_processes_equal_one",
}

SUBCOMMANDS = ("reproduce", "compare", "plot", "report", "analyze")


def readme_names() -> list[str]:
    """The NAMEs of README's ``landscape reproduce NAME`` table, in order."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `NAME` |"))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names.append(re.match(r"\|\s*`([^`]+)`", line).group(1))
    return names


def readme_commands() -> list[str]:
    """Every ``landscape SUBCOMMAND ...`` in README.md's fenced code blocks, normalised: lines
    continued (``\\`` or a next line starting with ``[``) joined, ``# comments`` and optional
    ``[...]`` parts dropped, whitespace collapsed; ``reproduce NAME`` expanded over
    :func:`readme_names`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        lines: list[str] = []
        for raw in block.splitlines():
            line = re.sub(r"\s#.*$", "", raw).rstrip()
            if lines and (lines[-1].endswith("\\") or line.lstrip().startswith("[")):
                lines[-1] = lines[-1].rstrip("\\") + " " + line.strip()
            elif line.strip():
                lines.append(line)
        for line in lines:
            for part in line.split("&&"):
                part = part.strip()
                if not re.match(r"landscape\s+\S", part):
                    continue
                while re.search(r"\[[^\[\]]*\]", part):
                    part = re.sub(r"\s*\[[^\[\]]*\]", "", part)
                part = " ".join(part.split())
                if part == "landscape reproduce NAME":
                    commands += [f"landscape reproduce {n}" for n in readme_names()]
                else:
                    commands.append(part)
    return list(dict.fromkeys(commands))


def test_every_readme_command_has_a_tiny_setting():
    commands = readme_commands()
    assert {c.split()[1] for c in commands} == set(SUBCOMMANDS)
    known = set(TINY_FLAGS) | set(NOT_RUN)
    assert set(commands) == known, (f"README commands without a tiny setting: "
                                    f"{sorted(set(commands) - known)}; entries for commands the "
                                    f"README no longer shows: {sorted(known - set(commands))}")
    # the NAME table lists every experiment (compare is its own subcommand)
    assert set(readme_names()) | {"compare"} == set(EXPERIMENTS)


def test_print_summary_prints_any_value(capsys):
    """One line per comparison key whatever the value's type; a model whose ``train_loss`` is a
    curve (eos) shows its ``final_train_loss``."""
    summary = {
        "models": {"lr0.1": {"train_loss": [0.9, 0.5], "final_train_loss": 0.4393,
                             "test_accuracy": 0.25, "diverged_at_step": None},
                   "none/seed0": {"train_loss": 1.5, "test_accuracy": math.nan,
                                  "diverged_at_step": 7},
                   "batchnorm_running_average": {"steps": [0, 50]}},
        "comparison": {"float": 0.123456, "nan": math.nan, "none": None, "list": [1.0, 2.5, None],
                       "curve": [float(i) for i in range(100)],
                       "interval": {"mean": 0.875, "ci95": [0.8, 0.95], "n": 3},
                       "text": "two\nlines", "count": 3},
    }
    _print_summary(Path("runs/x"), summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["wrote runs/x/",
                         "         lr0.1: final train loss 0.4393, test accuracy 0.250",
                         "    none/seed0: final train loss 1.5, diverged at step 7"]
    assert lines[3:] == ["  float: 0.1235", "  nan: nan", "  none: n/a", "  list: 1, 2.5, n/a",
                         "  curve: 0, 1, 2, 3, …, 99 (100 values)",
                         "  interval: mean=0.875, ci95=(0.8, 0.95), n=3", "  text: two lines",
                         "  count: 3"]


# ------------------------------------------------------------------ the console script itself

def _landscape(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the console script (it inherits the suite's compilation cache from conftest.py)."""
    proc = subprocess.run([EXE, *argv], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _train(command: str, folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """Run a ``reproduce``/``compare`` README command tiny into ``folder/out``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "out"
    argv = [*shlex.split(command)[1:], *TINY_FLAGS[command], "--out", str(out)]
    return out, _landscape(argv, cwd=folder)


def _check_summary_lines(out: Path, stdout: str) -> None:
    """``wrote OUT/``, a line per model with a final loss and a line per comparison key whose
    number is the summary's."""
    lines = stdout.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert lines[0] == f"wrote {out}/", stdout
    assert len(lines) > 1, stdout
    for label, entry in summary["models"].items():
        loss = entry.get("train_loss")
        if not isinstance(loss, (int, float)):
            loss = entry.get("final_train_loss")
        if isinstance(loss, (int, float)):
            line = next((l for l in lines if l.strip().startswith(f"{label}: final train loss")),
                        None)
            assert line is not None, (label, stdout)
            printed = float(line.split("final train loss ")[1].split(",")[0])
            assert printed == pytest.approx(loss, rel=1e-3, nan_ok=True), line
    comparison = summary.get("comparison")
    if isinstance(comparison, str):  # surfaces: a written comparison
        assert f"  {comparison}" in lines
    elif isinstance(comparison, dict):
        for key, value in comparison.items():
            line = next((l for l in lines if l.startswith(f"  {key}: ")), None)
            assert line is not None, (key, stdout)
            if isinstance(value, (int, float)) or value is None:
                text = line[len(f"  {key}: "):]
                printed = math.nan if text in ("nan", "n/a") else float(text)
                expected = math.nan if value is None else value
                assert printed == pytest.approx(expected, rel=1e-3, nan_ok=True), line


TRAINING = [c for c in TINY_FLAGS if c.split()[1] in ("reproduce", "compare")]


def check_training_command(command: str, out: Path, proc: subprocess.CompletedProcess) -> None:
    """The printed summary matches ``summary.json``, plus what each command's flags promise."""
    _check_summary_lines(out, proc.stdout)
    summary = json.loads((out / "summary.json").read_text())
    if command == PAPER:
        config = json.loads((out / "experiment.json").read_text())["runs"]["batchnorm"]
        assert config["probe_every"] == 1 and config["lr"] == 0.1  # the paper preset's
    if command == COMPARE:
        assert sorted(summary["table"]) == sorted(shlex.split(command)[3].split(","))
    if "--seeds 5" in command:
        assert summary["models"]["batchnorm"]["seeds"] == [0, 1]  # the tiny --seeds 2 won
    if "--curvature" in command:
        assert set(summary["proxy_against_true_beta"]) == {"batchnorm", "vanilla"}


class _Command:
    """One README training command, run tiny as a process once per class (``run``). One class per
    command: the suite's ``--dist loadscope`` hands each class to the next free worker, so the
    commands spread over both workers instead of queueing on one (the rest of the suite has no
    classes: a file each). A command's class may add checks of its output folder: the
    end-to-end check of an experiment is its README command, not a second in-process run."""

    command: str

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
        return _train(cls.command, tmp_path_factory.mktemp("readme") / "cmd")

    @pytest.mark.slow
    def test_runs_tiny(self, run):
        check_training_command(self.command, *run)


def _summary(run: tuple[Path, subprocess.CompletedProcess]) -> tuple[Path, dict]:
    """A finished command's output folder and its ``summary.json``."""
    out, _ = run
    return out, json.loads((out / "summary.json").read_text())


class TestReproduceSkip(_Command):
    """``landscape reproduce skip`` on resnet8 ± shortcuts: every model measured."""

    command = "landscape reproduce skip"

    @pytest.mark.slow
    def test_measures_every_model(self, run):
        out, summary = _summary(run)
        flags = TINY_FLAGS[self.command]
        models, n = summary["models"], int(flags[flags.index("--grid") + 1])
        assert set(models) == {"resnet8", "resnet8-noshort"}
        for label, m in models.items():
            c = np.load(out / "surfaces" / f"{label}_convexity.npz")
            assert c["ratio"].shape == (n, n)
            assert np.all(np.isfinite(c["ratio"])) and np.all(c["ratio"] >= 0)  # |λ_min/λ_max|
            np.testing.assert_allclose(c["ratio"], np.abs(c["lambda_min"] / c["lambda_max"]))
            assert np.all(c["lambda_min"] <= c["lambda_max"])
            assert len(m["lambda_max"]) == len(m["steps"]) == 2
            assert np.all(np.isfinite(m["lambda_max"]))
            assert m["shortcut"] == (label == "resnet8") and m["depth"] == 8
            assert np.isfinite(m["ring_increase_0.5"]) and m["surface_min"] <= m["loss_at_centre"]
        assert "ResNet-8" in summary["comparison"]
        for name in ("skip.png", "skip_fig4.png", "skip_table.md",
                     "surfaces/resnet8_random2d.npz"):
            assert (out / name).exists()
        assert not is_blank(out / "skip.png")


class TestReproduceTransformerNorms(_Command):
    """``landscape reproduce transformer-norms --norms layer --depths 1,2``: the (b) grid of the
    layer norm, its pairs, λ_max at every probe, and Xiong's slopes."""

    command = "landscape reproduce transformer-norms"

    @pytest.mark.slow
    def test_grid_pairs_and_xiong(self, run):
        out, summary = _summary(run)
        assert set(summary["table"]) == {"pre-layer/warmup", "post-layer/warmup",
                                         "post-layer/no-warmup"}
        assert all("median_lambda_max" in row for row in summary["table"].values())
        pairs = {(row["a"], row["b"]): row for row in summary["smoothness"]}
        assert set(pairs) == {("pre-layer/warmup", "post-layer/warmup"),
                              ("post-layer/warmup", "post-layer/no-warmup")}
        for row in pairs.values():
            assert row["effective_beta"]["n"] == 1 and np.isfinite(row["effective_beta"]["mean"])
        for m in summary["models"].values():
            assert len(m["lambda_max"]) == 2 and np.all(np.isfinite(m["lambda_max"]))
        c = summary["comparison"]
        assert c["xiong_slope_pre_ln_xavier"] < c["xiong_slope_post_ln_xavier"]
        assert set(summary["xiong"]) == {"xavier", "gpt2"}
        assert summary["options"]["xiong"]["depths"] == [1, 2]
        for name in ("xiong.png", "compare_lambda_max.png", "compare_table.md",
                     "transformer_norms.md"):
            assert (out / name).exists()
        assert "λ_max" in (out / "compare_table.md").read_text()


class TestReproduceBlockwise(_Command):
    """``landscape reproduce blockwise``: both networks' blocks, spectra and distances."""

    command = "landscape reproduce blockwise"

    @pytest.mark.slow
    def test_blocks_spectra_and_figure(self, run):
        from landscape.experiments.blockwise import BLOCKWISE_PRESETS

        out, written = _summary(run)
        top_k = BLOCKWISE_PRESETS["quick"]["top_k"]
        for name, blocks in (("transformer", ["embedding", "layer0/qk", "layer0/vo",
                                              "layer0/mlp", "layer0/norm", "final_norm"]),
                             ("cnn", ["layer0", "layer1", "layer2", "layer3", "head"])):
            entry = written["models"][name]
            assert entry["blocks"] == blocks
            assert len(entry["parameter_counts"]) == len(blocks) and entry["num_parameters"] > 0
            assert np.asarray(entry["top_eigenvalues"]).shape == (len(blocks), top_k)
            assert np.asarray(entry["js_distances"]).shape == (len(blocks), len(blocks))
            assert math.isfinite(entry["heterogeneity"])
            assert math.isfinite(written["comparison"][f"heterogeneity_{name}"])
        assert not is_blank(out / "blockwise.png")


def _figures_written(out: Path, names: list[str]) -> None:
    for name in names:
        assert (out / f"{name}.pdf").stat().st_size > 0 and not is_blank(out / f"{name}.png"), name


def _check_activations(run, name: str, labels: list[str]) -> dict:
    """An activation experiment's folder: its three figures, every model's final loss and
    activation percentiles (p15 ≤ p50 ≤ p85 at every measured step, the first at step 0)."""
    out, summary = _summary(run)
    assert summary["experiment"] == name and list(summary["models"]) == labels
    _figures_written(out, [name, f"{name}_training", f"{name}_activations"])
    for label, entry in summary["models"].items():
        assert np.isfinite(entry["train_loss"]) and "diverged_at_step" in entry, label
        acts = entry["activations"]
        assert acts["steps"][0] == 0
        p15, p50, p85 = (np.asarray(acts[k]) for k in ("p15", "p50", "p85"))
        assert p15.shape == p50.shape == p85.shape == (len(acts["steps"]),)
        assert np.all(p15 <= p50) and np.all(p50 <= p85), label
    return summary


class TestReproduceFig2(_Command):
    """``landscape reproduce fig2``: standard, BN and noisy BN, their activations and figures."""

    command = "landscape reproduce fig2"

    @pytest.mark.slow
    def test_activations_and_figures(self, run):
        _check_activations(run, "fig2", ["standard", "batchnorm", "noisy batchnorm"])


class TestReproduceIoffeFig1(_Command):
    """``landscape reproduce ioffe-fig1``: one unit's input distribution with and without BN."""

    command = "landscape reproduce ioffe-fig1"

    @pytest.mark.slow
    def test_activations_and_figures(self, run):
        summary = _check_activations(run, "ioffe-fig1", ["without BN", "with BN"])
        assert {e["activations"]["unit"] for e in summary["models"].values()} == {0}


class TestReproduceSurfaces(_Command):
    """``landscape reproduce surfaces`` (checkpoints at steps 1 and 2): files, summary keys, and
    the centre of each slice is the trained model's loss on the surface batch."""

    command = "landscape reproduce surfaces"

    @pytest.mark.slow
    def test_surfaces_and_their_centre(self, run):
        import jax.numpy as jnp

        from landscape import bridge
        from landscape.data import batch_at, make_synthetic
        from landscape.probes import load_surface
        from landscape.train import restore_model

        out, summary = _summary(run)
        n = int(SURFACES_TINY[SURFACES_TINY.index("--grid") + 1])
        assert set(summary["models"]) == {"batchnorm", "vanilla"}
        for label, entry in summary["models"].items():
            for key in ("train_loss", "surface_min", "surface_max", "ring_increase_0.5",
                        "interpolation_monotone", "pca_explained_variance", "loss_at_centre"):
                assert key in entry, key
            assert entry["checkpoint_steps"] == [1, 2] and entry["mode"] == "batch_stats"
            assert 0 < sum(entry["pca_explained_variance"]) <= 1 + 1e-9
            surface, record = load_surface(out / "surfaces" / f"{label}_random2d")
            assert record["meta"]["mode"] == "batch_stats" and surface.loss.shape == (n, n)
            # the surface batch is the last step's (2); float32, rtol 1e-5: the same program
            model = restore_model(out / label)
            _, params, state = bridge.split(model)
            x, y = batch_at(make_synthetic(seed=0), 2, 16, seed=0)
            loss = float(bridge.make_loss_fn(model)(
                params, bridge.make_batch(jnp.asarray(x), jnp.asarray(y), state)))
            assert np.isclose(surface.loss[n // 2, n // 2], loss, rtol=1e-5)
            assert np.isclose(entry["loss_at_centre"], loss, rtol=1e-5)
            line, _ = load_surface(out / "surfaces" / f"{label}_interpolation")
            assert np.isclose(np.interp(1.0, line.coords[0], line.loss), loss, rtol=1e-4)
        assert isinstance(summary["comparison"], str) and "BN" in summary["comparison"]
        for name in ("surfaces.png", "interpolation.png", "surface_batchnorm.png",
                     "pca_vanilla.png"):
            assert not is_blank(out / name), name


class TestReproduceTheory(_Command):
    """``landscape reproduce theory``: Theorems 4.1/4.2 at every BN layer, the table, the figure,
    and the figure redrawn from the checkpoint and records alone."""

    command = "landscape reproduce theory"

    @pytest.mark.slow
    def test_theorems_table_and_replot(self, run):
        from landscape.reproduce import replot

        out, summary = _summary(run)
        rows = summary["theory"]
        assert [r["layer"] for r in rows] == ["block0", "block1", "block2", "block3"]
        for r in rows:
            assert r["thm41_fraction_holds"] == 1.0  # the corrected bound holds at every unit
            assert r["thm41_max_rel_gap"] < 1e-3  # float32 equality up to ε = 1e-5 effects
            assert r["thm42_units"] == 8  # the experiment's default
        assert sum(r["thm41_printed_violations"] for r in rows) > 0  # the 1/√m misprint fails
        assert "| block0 |" in (out / "theory.md").read_text()
        assert not is_blank(out / "theory.png")
        (out / "theory.png").unlink()
        assert out / "theory.png" in replot(out)  # redrawn from checkpoint + records


class TestReproduceFig5(_Command):
    """``landscape reproduce fig5``: every ℓp norm probed at both steps, the comparison, figures."""

    command = "landscape reproduce fig5"

    @pytest.mark.slow
    def test_every_norm_probed(self, run):
        from landscape.experiments.fig5 import FIG5_NORMS

        out, summary = _summary(run)
        assert set(summary["models"]) == set(FIG5_NORMS)
        assert summary["models"]["lpinf"]["norm"] == "lpinf"
        for label, m in summary["models"].items():
            assert m["steps"] == [0, 1] and len(m["effective_beta"]) == 2, label
        assert "comparison" in summary  # batchnorm vs vanilla
        _figures_written(out, ["fig5", "fig5_probes"])


class TestReproduceDln(_Command):
    """``landscape reproduce dln``: the deep linear network with and without BN, probed."""

    command = "landscape reproduce dln"

    @pytest.mark.slow
    def test_both_networks_probed(self, run):
        out, summary = _summary(run)
        assert set(summary["models"]) == {"batchnorm", "vanilla"}
        for m in summary["models"].values():
            assert m["steps"] == [0, 1] and all(math.isfinite(v) for v in m["effective_beta"])
        config = json.loads((out / "experiment.json").read_text())["runs"]["vanilla"]
        assert (config["dataset"], config["model"]) == ("dln", "dln")
        assert (config["step_size_lo"], config["step_size_hi"]) == (0.01, 30.0)
        _figures_written(out, ["dln"])


class TestReproduceFig4:
    """``landscape reproduce fig4``, then plot, report and analyze on its folder."""

    @pytest.fixture(scope="class")
    @classmethod
    def fig4_run(cls, tmp_path_factory):
        return _train(FIG4, tmp_path_factory.mktemp("readme") / "fig4")

    @pytest.mark.slow
    def test_runs_tiny(self, fig4_run):
        check_training_command(FIG4, *fig4_run)

    @pytest.mark.slow
    def test_records_and_a_changed_configuration_refused(self, fig4_run, capsys):
        """Every probe field at both steps, the figure; the same command with another
        ``--lr`` in the finished folder is refused (one line, exit 2) and nothing is touched."""
        from landscape.cli import main

        out, _ = fig4_run
        summary = json.loads((out / "summary.json").read_text())
        for label in ("batchnorm", "vanilla"):
            entry = summary["models"][label]
            assert entry["steps"] == [0, 1]
            for key in ("loss_min", "loss_max", "grad_change_min", "grad_change_max",
                        "effective_beta", "grad_norm"):
                assert len(entry[key]) == 2, key
            assert {"train_loss", "test_accuracy"} <= set(entry)
        assert not is_blank(out / "fig4.png") and (out / "fig4.pdf").stat().st_size > 0
        before = (out / "summary.json").read_text()
        argv = [*shlex.split(FIG4)[1:], *TINY_FLAGS[FIG4], "--lr", "0.05", "--out", str(out)]
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0], err
        assert (out / "summary.json").read_text() == before

    @pytest.mark.slow
    def test_plot_report_analyze_on_the_finished_run(self, fig4_run):
        out, _ = fig4_run

        def run(command):
            argv = [out if a == "RUN_DIR" else a for a in shlex.split(command)[1:]]
            return _landscape([str(a) for a in argv] + TINY_FLAGS[command], cwd=out.parent)

        written = run("landscape plot RUN_DIR").stdout.splitlines()
        assert str(out / "fig4.png") in written and all(Path(p).is_file() for p in written)
        report = Path(run("landscape report RUN_DIR").stdout.strip())
        page = report.read_text()
        assert report == out / "report.html" and "batchnorm" in page
        assert "data:image/png;base64," in page
        lines = run("landscape analyze RUN_DIR").stdout.splitlines()
        for label in ("batchnorm", "vanilla"):
            assert f"wrote {out / label / 'analysis'}/" in lines
            assert any(re.match(rf"\s*{label} step \d+: loss \S+, gradient change .*effective β",
                                l) for l in lines), lines


_WRITTEN = {cls.command for cls in list(globals().values())
            if isinstance(cls, type) and issubclass(cls, _Command) and cls is not _Command}
for _command in TRAINING:
    # fig4's run is shared with plot/report/analyze (TestReproduceFig4); classes written out
    # above add checks of their own
    if _command != FIG4 and _command not in _WRITTEN:
        _name = "Test" + "".join(w.capitalize() for w in re.findall(r"[a-z0-9]+", _command)[1:])
        globals()[_name] = type(_name, (_Command,), {"command": _command})
