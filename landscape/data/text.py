"""Character-level text (``--dataset text``): int32 token windows with next-token targets.

The corpus is a UTF-8 file, a folder of ``*.txt`` files or, by default, the help topics of the
Python documentation that ship with CPython (offline). Unlike the image loaders, the
:class:`Dataset` returned here holds ``(N, T)`` int32 tokens in ``x`` and the next tokens in ``y``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from landscape.choices import check_int
from landscape.data.dataset import DataError, Dataset, _open_fraction

#: Tokens per example of ``load_dataset("text")`` when no context is given (x and y hold this many;
#: a window holds one more).
DEFAULT_TEXT_CONTEXT = 64


class TextCorpus(NamedTuple):
    """A text as character ids: ``tokens`` (n,) int32, ``vocabulary`` the characters (id → char,
    sorted by code point) and ``source``, where the text came from."""

    tokens: np.ndarray
    vocabulary: str
    source: str


def _default_text() -> tuple[str, str]:
    """The Python Language Reference's help topics that ship with CPython (``pydoc_data.topics``):
    ≈ 465 000 characters of English prose and grammar (Python 3.11), all topics in key order.
    Licence: the Python documentation is distributed under the PSF License Agreement (Python's
    ``LICENSE``, ``sys.base_prefix``), like the interpreter."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
    return text, f"pydoc_data.topics (Python {sys.version_info[0]}.{sys.version_info[1]})"


def _read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """A UTF-8 text file, or every ``*.txt`` file of a folder (sorted by name, joined by a newline)."""
    path = Path(path).expanduser()
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise DataError(f"text: {path} is neither a text file nor a folder holding *.txt files")
    try:
        return "\n".join(f.read_text(encoding="utf-8") for f in files), str(path)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"text: cannot read {path} as UTF-8 text ({err})") from None


def text_corpus(path: str | os.PathLike[str] | None = None) -> TextCorpus:
    """Character-level tokens of a text: ``path`` (a UTF-8 file or a folder of ``*.txt``) or, by
    default, the help topics of the Python documentation shipped with CPython (offline; PSF
    licence). The vocabulary is every distinct character of the whole text, sorted by code point,
    so train and test share it.

    Example:
      >>> corpus = text_corpus()
      >>> "".join(corpus.vocabulary[t] for t in corpus.tokens[:14])
      'The "assert" s'
    """
    text, source = _default_text() if path is None else _read_text(path)
    if len(text) < 2:
        raise DataError(f"text: {source} holds {len(text)} characters; at least 2 are needed")
    vocabulary = "".join(sorted(set(text)))
    lookup = np.zeros(ord(vocabulary[-1]) + 1, np.int32)
    lookup[[ord(c) for c in vocabulary]] = np.arange(len(vocabulary), dtype=np.int32)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    return TextCorpus(lookup[codes], vocabulary, source)


def _windows(tokens: np.ndarray, context: int, stride: int, split: str, source: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``context + 1`` tokens starting every ``stride`` tokens: x = w[:-1], y = w[1:]."""
    if len(tokens) < context + 1:
        raise DataError(f"text: context={context} needs {context + 1} tokens per example but the "
                        f"{split} split of {source} has {len(tokens)}; use a shorter context")
    starts = np.arange(0, len(tokens) - context, stride)
    w = tokens[starts[:, None] + np.arange(context + 1)[None, :]]
    return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])


def load_text(path: str | os.PathLike[str] | None = None, *, context: int = DEFAULT_TEXT_CONTEXT,
              test_fraction: float = 0.1, stride: int | None = None) -> Dataset:
    """Next-character prediction on a text (:func:`text_corpus`), as a :class:`Dataset`.

    The token stream is split deterministically — the first ``1 − test_fraction`` of the text for
    training, the rest for testing (no shuffling: the test text is unseen) — and each split is cut
    into windows of ``context + 1`` tokens starting every ``stride`` tokens (default ``context``:
    the inputs do not overlap). Example i is ``x[i] = w_i[:-1]``, ``y[i] = w_i[1:]``, both
    ``(context,)`` int32; the model's loss averages over all B·T positions.

    Args:
      path: a UTF-8 text file or a folder of ``*.txt`` files (default: Python's help topics).
      context: tokens per example (the transformer's context length).
      test_fraction: share of the text held out at its end, in ``(0, 1)``.
      stride: tokens between window starts (default: ``context``).

    Returns:
      A :class:`Dataset` named ``"text"`` with ``x_*``/``y_*`` of shape ``(N, context)`` int32,
      ``num_classes`` = the vocabulary size and ``input_shape`` = ``(context,)``.

    Raises:
      DataError: an unreadable file, a bad option, or a context longer than a split.

    Example:
      >>> ds = load_text(context=32)
      >>> ds.input_shape, ds.x_train.dtype.name
      ((32,), 'int32')
    """
    context = check_int("text: context", context, error=DataError)
    stride = context if stride is None else check_int("text: stride", stride, error=DataError)
    test_fraction = _open_fraction(test_fraction, "text: test_fraction")
    corpus = text_corpus(path)
    cut = int(round(len(corpus.tokens) * (1.0 - test_fraction)))
    x_train, y_train = _windows(corpus.tokens[:cut], context, stride, "train", corpus.source)
    x_test, y_test = _windows(corpus.tokens[cut:], context, stride, "test", corpus.source)
    return Dataset(x_train, y_train, x_test, y_test, len(corpus.vocabulary), "text")
