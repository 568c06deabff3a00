"""``--dataset text``: character-level token windows from a text file or Python's own docs, and the
model flags that go with the new models (``--no-shortcut``, the transformer flags)."""

from __future__ import annotations

import numpy as np
import pytest

from landscape import cli
from landscape.config import ConfigError, TrainConfig
from landscape.data import (DEFAULT_TEXT_CONTEXT, DataError, batch_at, load_dataset, load_text,
                            text_corpus)

TEXT = "abracadabra, said the cat; " * 40  # 1 080 characters, 13 distinct


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_characters_become_sorted_ids(text_file):
    corpus = text_corpus(text_file)
    assert corpus.vocabulary == "".join(sorted(set(TEXT)))
    assert corpus.tokens.dtype == np.int32 and len(corpus.tokens) == len(TEXT)
    assert "".join(corpus.vocabulary[t] for t in corpus.tokens) == TEXT


def test_windows_shift_by_one_and_split_the_text_in_order(text_file):
    ds = load_text(text_file, context=8)
    tokens = text_corpus(text_file).tokens
    cut = round(0.9 * len(TEXT))  # 972: the first 90 % train, the rest test, in text order
    assert ds.input_shape == (8,) and ds.num_classes == len(set(TEXT)) and ds.name == "text"
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == y.shape
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token
    np.testing.assert_array_equal(ds.x_train[0], tokens[:8])
    np.testing.assert_array_equal(ds.y_train[-1], tokens[8 * (len(ds.x_train) - 1) + 1:][:8])
    np.testing.assert_array_equal(ds.x_test[0], tokens[cut:cut + 8])
    assert len(ds.x_train) == (cut - 1) // 8 and len(ds.x_test) == (len(TEXT) - cut - 1) // 8
    dense = load_text(text_file, context=8, stride=1)  # every start: overlapping windows
    assert len(dense.x_train) == cut - 8
    x, y = batch_at(ds, step=3, batch_size=4, seed=0)
    assert x.dtype == np.int32 and x.shape == (4, 8)


def test_a_folder_of_text_files_and_errors(tmp_path, text_file):
    (tmp_path / "b.txt").write_text("zz", encoding="utf-8")
    assert text_corpus(tmp_path).vocabulary == "".join(sorted(set(TEXT + "z\n")))
    with pytest.raises(DataError, match=r"context=200 needs 201 tokens.*test split") as err:
        load_text(text_file, context=200)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="neither a text file"):
        text_corpus(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="test_fraction"):
        load_text(text_file, test_fraction=1.0)


def test_default_corpus_is_pythons_documentation():
    corpus = text_corpus()
    assert "pydoc_data.topics" in corpus.source and len(corpus.tokens) > 100_000
    assert "".join(corpus.vocabulary[t] for t in corpus.tokens[:22]) == 'The "assert" statement'
    ds = load_dataset("text")
    assert ds.input_shape == (DEFAULT_TEXT_CONTEXT,) and ds.num_classes == len(corpus.vocabulary)
    assert load_dataset("text", context=16).x_test.shape[1] == 16
    np.testing.assert_array_equal(load_dataset("text").x_test, ds.x_test)  # deterministic


def test_config_pairs_text_with_the_transformer_and_options_with_their_models():
    TrainConfig(dataset="text", model="transformer", model_options={"context": 16, "heads": 2})
    TrainConfig(model="resnet20", model_options={"shortcut": False})
    for bad, match in (({"dataset": "text"}, "go together"),
                       ({"model": "transformer"}, "go together"),
                       ({"model_options": {"shortcut": False}}, r"--no-shortcut.*resnetN"),
                       ({"model": "resnet8", "model_options": {"heads": 2}}, r"--heads.*transformer"),
                       ({"dataset": "text", "model": "transformer",
                         "model_options": {"context": 0}}, "context")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad)


@pytest.mark.parametrize("argv, match", [
    (["--model", "vgg5", "--no-shortcut"], "--no-shortcut"),
    (["--model", "resnet8", "--qk-norm"], "--qk-norm"),
    (["--model", "resnet8", "--context", "8"], "--context"),
    (["--model", "transformer", "--norms", "batch"], "transformer takes layer"),
])
def test_cli_model_flags_on_the_wrong_model_exit_2(argv, match, capsys, tmp_path):
    assert cli.main(["compare", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err


def test_cli_maps_model_flags_into_model_options():
    args = cli.build_parser().parse_args(
        ["compare", "--model", "transformer", "--norm-position", "post", "--qk-norm", "--layers",
         "3", "--d-model", "32", "--heads", "2", "--context", "16"])
    assert cli._overrides(args)["model_options"] == {
        "norm_position": "post", "qk_norm": True, "layers": 3, "d_model": 32, "heads": 2,
        "context": 16}
    args = cli.build_parser().parse_args(["reproduce", "fig4", "--model", "resnet8", "--no-shortcut"])
    assert cli._overrides(args)["model_options"] == {"shortcut": False}


def test_heads_that_do_not_divide_the_width_exit_2(capsys, tmp_path):
    argv = ["compare", "--model", "transformer", "--heads", "3", "--norms", "layer", "--seeds", "1",
            "--steps", "2", "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: model_options for 'transformer': transformer heads=3 must divide d_model=64"
