"""`.npz` datasets in Keras' mnist.npz layout, written by numpy itself: loading, training, and clean
refusals of pickles, wrong layouts, lying headers and bad labels."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data.catalog import load_mnist_sample
from cnnkit.data.resolve import load_dataset
from cnnkit.errors import DataError

from conftest import DATA, assert_clean_failure


@pytest.fixture(scope="module")
def digits():
    splits, _ = load_mnist_sample()
    take = lambda split, n: (splits[split].images[:n, 0].numpy(), splits[split].labels[:n].numpy().astype(np.uint8))
    return take("train", 200), take("test", 50)


@pytest.fixture
def mnist_npz(tmp_path, digits) -> Path:
    (x, y), (xt, yt) = digits
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def test_keras_layout_loads_exactly(mnist_npz, digits):
    (x, y), (xt, yt) = digits
    data = load_dataset(str(mnist_npz))
    assert data.kind == "npz" and data.name == "mnist" and data.classes == [str(i) for i in range(10)]
    assert data.splits["train"].images.shape == (200, 1, 28, 28)
    assert np.array_equal(data.splits["train"].images[:, 0].numpy(), x)
    assert np.array_equal(data.splits["test"].labels.numpy(), yt.astype(np.int64))


def test_arrays_past_the_memory_budget_are_refused_before_they_are_read(mnist_npz):
    from cnnkit.errors import DataError

    with pytest.raises(DataError, match="more than the memory budget of 10"):
        load_dataset(str(mnist_npz), budget=10)


def test_colour_and_train_only(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "colour.npz"
    np.savez(path, x_train=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
             y_train=rng.integers(0, 3, (12, 1)).astype(np.int64))  # (N, 1) labels, as Keras' CIFAR keeps them
    data = load_dataset(str(path))
    assert list(data.splits) == ["train"] and data.splits["train"].images.shape == (12, 3, 8, 8)
    assert data.channels == 3 and data.classes == ["0", "1", "2"]


def test_trains_and_evaluates(cli, mnist_npz):
    code, out, err = cli("train", "perceptron", "--dataset", mnist_npz, "--epochs", 1, "--device", "cpu", "--quiet")
    assert code == 0, err
    run = out.strip()
    code, out, err = cli("evaluate", run, "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 50  # the test split, read back from the recorded .npz path


def _write_member(path: Path, name: str, header: bytes, payload: bytes) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, header + payload)


def _npy_header(shape, dtype="|u1") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()  # the magic string, then the header


def _bad(tmp_path, kind) -> Path:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), rng.integers(0, 3, 10).astype(np.uint8)
    path = tmp_path / f"{kind}.npz"
    if kind == "pickled":
        np.savez(path, x_train=np.array([{"a": 1}] * 10, dtype=object), y_train=y, allow_pickle=True)
    elif kind == "float-images":
        np.savez(path, x_train=x.astype(np.float32), y_train=y)
    elif kind == "float-labels":
        np.savez(path, x_train=x, y_train=y.astype(np.float32) + 0.5)
    elif kind == "negative-labels":
        np.savez(path, x_train=x, y_train=y.astype(np.int64) - 5)
    elif kind == "huge-labels":
        np.savez(path, x_train=x, y_train=np.full(10, 10**9, dtype=np.int64))
    elif kind == "count-mismatch":
        np.savez(path, x_train=x, y_train=y[:7])
    elif kind == "no-train":
        np.savez(path, images=x, labels=y)
    elif kind == "test-without-labels":
        np.savez(path, x_train=x, y_train=y, x_test=x)
    elif kind == "lying-header":
        # A header that claims 10^9 images over 640 bytes of data: refused before numpy allocates 64 GB.
        _write_member(path, "x_train.npy", _npy_header((10**9, 8, 8)), x.tobytes())
        _write_member(path, "y_train.npy", _npy_header((10,)), y.tobytes())
    elif kind == "not-a-zip":
        path.write_bytes(b"this is not a zip file at all")
    elif kind == "truncated":
        np.savez(path, x_train=x, y_train=y)
        path.write_bytes(path.read_bytes()[:300])
    return path


KINDS = ["pickled", "float-images", "float-labels", "negative-labels", "huge-labels", "count-mismatch", "no-train",
         "test-without-labels", "lying-header", "not-a-zip", "truncated"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_files_are_refused_cleanly(tmp_path, kind):
    with pytest.raises(DataError):
        load_dataset(str(_bad(tmp_path, kind)))


@pytest.mark.parametrize("kind, words", [("pickled", "Python objects"), ("lying-header", "not the size")])
def test_refusals_through_the_command(cli, tmp_path, kind, words):
    code, _, err = cli("inspect-dataset", _bad(tmp_path, kind))
    assert words in assert_clean_failure(code, err)[0]
