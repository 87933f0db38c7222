"""export-idx: MNIST-format files that torchvision, the tutorial's load_mnist and cnnkit read back."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.data.catalog import sample_dir
from cnnkit.data.export_idx import sample_across_classes
from cnnkit.data.idx import read_idx
from cnnkit.data.resolve import load_dataset
from conftest import assert_clean_failure, digests


def load_mnist(path, kind="train"):
    """The seed tutorial's reader, verbatim in spirit: struct.unpack + np.fromfile."""
    labels_path = os.path.join(path, f"{kind}-labels-idx1-ubyte")
    images_path = os.path.join(path, f"{kind}-images-idx3-ubyte")
    with open(labels_path, "rb") as lbpath:
        magic, n = struct.unpack(">II", lbpath.read(8))
        labels = np.fromfile(lbpath, dtype=np.uint8)
    with open(images_path, "rb") as imgpath:
        magic, num, rows, cols = struct.unpack(">IIII", imgpath.read(16))
        images = np.fromfile(imgpath, dtype=np.uint8).reshape(len(labels), rows * cols)
    return images, labels


def test_mnist_sample_reads_back_byte_identical_everywhere(cli, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    out = tmp_path / "mnist-idx"
    code, stdout, stderr = cli("export-idx", "mnist-sample", "--out", out)
    assert code == 0, stderr
    names = {Path(line).name for line in stdout.split()}
    assert names == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "classes.txt"}
    source = load_dataset("mnist-sample")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        want_images = source.splits[split].images[:, 0]
        want_labels = source.splits[split].labels
        # torchvision's own MNIST reader
        assert torch.equal(read_image_file(str(out / f"{prefix}-images-idx3-ubyte")), want_images)
        assert torch.equal(read_label_file(str(out / f"{prefix}-labels-idx1-ubyte")), want_labels)
        # the tutorial's load_mnist
        images, labels = load_mnist(out, prefix)
        assert images.tobytes() == want_images.numpy().tobytes()
        assert labels.tolist() == want_labels.tolist()
    assert (out / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    # ...and cnnkit itself: the folder is a dataset spec.
    again = load_dataset(str(out))
    assert again.kind == "idx" and again.classes == source.classes
    for split in ("train", "test"):
        assert torch.equal(again.splits[split].images, source.splits[split].images)
        assert torch.equal(again.splits[split].labels, source.splits[split].labels)


def test_real_mnist_test_files_come_back_byte_identical(cli, tmp_path):
    original = tmp_path / "mnist-t10k"
    original.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(sample_dir() / name, original / name)
    out = tmp_path / "out"
    code, _, stderr = cli("export-idx", original, "--out", out, "--quiet")
    assert code == 0, stderr
    # A lone t10k pair is a test split, and export keeps the split names it read: t10k-* again.
    for kind in ("images-idx3", "labels-idx1"):
        want = gzip.decompress((original / f"t10k-{kind}-ubyte.gz").read_bytes())
        assert (out / f"t10k-{kind}-ubyte").read_bytes() == want
    assert not list(out.glob("train-*"))


def test_gzip_output_decompresses_to_the_plain_export(cli, tmp_path):
    assert cli("export-idx", "mnist-sample", "--out", tmp_path / "plain", "--split", "test", "--limit", "50")[0] == 0
    assert cli("export-idx", "mnist-sample", "--out", tmp_path / "gz", "--split", "test", "--limit", "50", "--gzip")[0] == 0
    for kind in ("images-idx3", "labels-idx1"):
        plain = (tmp_path / "plain" / f"t10k-{kind}-ubyte").read_bytes()
        assert gzip.decompress((tmp_path / "gz" / f"t10k-{kind}-ubyte.gz").read_bytes()) == plain
    assert read_idx(tmp_path / "gz" / "t10k-images-idx3-ubyte.gz").shape == (50, 28, 28)
    assert not (tmp_path / "gz" / "train-images-idx3-ubyte.gz").exists()


def test_colour_folder_exports_4d_and_loads_back(cli, cifar_folder, tmp_path):
    out = tmp_path / "cifar-idx"
    code, _, stderr = cli("export-idx", cifar_folder, "--out", out, "--json")
    assert code == 0, stderr
    images = read_idx(out / "train-images-idx4-ubyte")
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
    source = load_dataset(str(cifar_folder))
    again = load_dataset(str(out))
    assert again.classes == source.classes
    assert torch.equal(again.splits["train"].images, source.splits["train"].images)
    assert torch.equal(again.splits["test"].labels, source.splits["test"].labels)
    # inspect-dataset takes the exported folder as it is.
    code, stdout, _ = cli("inspect-dataset", out, "--split", "test")
    assert code == 0 and "airplane" in stdout


def test_streamed_folder_exports_the_same_bytes(cli, cifar_folder, tmp_path, monkeypatch):
    assert cli("export-idx", cifar_folder, "--out", tmp_path / "held", "--split", "test")[0] == 0
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "0")  # over budget: the split is files, decoded for the export
    assert load_dataset(str(cifar_folder)).streamed
    assert cli("export-idx", cifar_folder, "--out", tmp_path / "streamed", "--split", "test")[0] == 0
    for name in ("t10k-images-idx4-ubyte", "t10k-labels-idx1-ubyte", "classes.txt"):
        assert (tmp_path / "held" / name).read_bytes() == (tmp_path / "streamed" / name).read_bytes()


def test_grayscale_and_resize_give_torchvision_readable_idx3(cli, cifar_folder, tmp_path):
    from torchvision.datasets.mnist import read_image_file
    from torchvision.transforms.v2.functional import resize, rgb_to_grayscale

    out = tmp_path / "grey"
    code, _, stderr = cli("export-idx", cifar_folder, "--out", out, "--grayscale", "--resize", "16", "--limit", "20", "--split", "train")
    assert code == 0, stderr
    images = read_image_file(str(out / "train-images-idx3-ubyte"))
    assert images.shape == (20, 16, 16)
    train = load_dataset(str(cifar_folder)).splits["train"]
    source = train.images[sample_across_classes(train.labels, 20, 0)]  # --limit takes the classes in turn
    assert torch.equal(images, resize(rgb_to_grayscale(source), [16, 16], antialias=True)[:, 0])


def test_refuses_to_overwrite_without_force(cli, tmp_path):
    out = tmp_path / "o"
    assert cli("export-idx", "mnist-sample", "--out", out, "--limit", "5", "--gzip")[0] == 0
    before = (out / "train-images-idx3-ubyte.gz").read_bytes()
    code, _, stderr = cli("export-idx", "mnist-sample", "--out", out, "--limit", "7")
    assert_clean_failure(code, stderr)
    assert "--force" in stderr and (out / "train-images-idx3-ubyte.gz").read_bytes() == before
    code, _, stderr = cli("export-idx", "mnist-sample", "--out", out, "--limit", "7", "--force")
    assert code == 0, stderr
    # The stale .gz variant is gone, so the folder reads one way only.
    assert not (out / "train-images-idx3-ubyte.gz").exists()
    assert len(load_dataset(str(out)).splits["train"]) == 7


def test_exported_folder_trains(cli, tmp_path):
    out = tmp_path / "idx"
    assert cli("export-idx", "mnist-sample", "--out", out, "--limit", "300")[0] == 0
    code, stdout, stderr = cli("train", "perceptron", "--dataset", out, "--epochs", "1", "--quiet", "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 0, stderr
    assert (Path(stdout.strip().splitlines()[-1]) / "last.pt").is_file()


@pytest.mark.parametrize(
    "args, exit_code",
    [
        (["no-such-dataset", "--out", "x"], 1),
        (["mnist-sample", "--out", "x", "--split", "nope"], 2),
        (["mnist-sample", "--out", "x", "--resize", "0"], 2),
        (["mnist-sample", "--out", "x", "--limit", "0"], 2),
        (["mnist-sample"], 2),
    ],
)
def test_bad_input_is_one_error_line(cli, args, exit_code):
    code, _, stderr = cli("export-idx", *args)
    assert_clean_failure(code, stderr, expected_code=exit_code)


def test_out_that_is_a_file_and_missing_split(cli, tmp_path, cifar_folder):
    target = tmp_path / "file"
    target.write_text("x")
    assert_clean_failure(*cli("export-idx", "mnist-sample", "--out", target)[::2])
    flat = tmp_path / "flat"  # class folders directly: no test split
    shutil.copytree(cifar_folder / "train", flat)
    code, _, stderr = cli("export-idx", flat, "--out", tmp_path / "o", "--split", "test")
    assert_clean_failure(code, stderr)
    assert not (tmp_path / "o" / "train-images-idx4-ubyte").exists()


def test_force_over_another_datasets_export_leaves_none_of_its_files(cli, cifar_folder, tmp_path):
    out = tmp_path / "idx"
    assert cli("export-idx", "mnist-sample", "--out", out, "--limit", "20")[0] == 0
    flat = tmp_path / "flat"  # class folders directly: a train split only
    shutil.copytree(cifar_folder / "train", flat)
    code, stdout, stderr = cli("export-idx", flat, "--out", out, "--force", "--limit", "10")
    assert code == 0, stderr
    # Exactly the new export: MNIST's t10k-* beside CIFAR's train-* would read as one mixed dataset.
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "train-images-idx4-ubyte", "train-labels-idx1-ubyte"]
    assert sorted(Path(line).name for line in stdout.split()) == sorted(p.name for p in out.iterdir())
    again = load_dataset(str(out))
    assert list(again.splits) == ["train"] and again.classes == load_dataset(str(flat)).classes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10-sample", "flat", "idx"]  # no temporary folder left


def test_force_keeps_the_users_other_files_in_a_shared_folder(cli, tmp_path):
    """An --out that also holds the user's files is not swapped whole: only export files are replaced."""
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert cli("export-idx", "mnist-sample", "--out", out, "--limit", "5")[0] == 0
    code, _, stderr = cli("export-idx", "mnist-sample", "--out", out, "--limit", "7", "--split", "train", "--force")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "notes.txt", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert (out / "notes.txt").read_text() == "mine\n" and len(load_dataset(str(out)).splits["train"]) == 7


def test_sigint_leaves_the_previous_export_untouched(tmp_path):
    """Interrupt a --force export while it writes: the old export is byte-identical, nothing half is left."""
    import subprocess

    from cnnkit.data.idx import write_idx

    source = tmp_path / "big"
    source.mkdir()
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(source / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (5000, 28, 28), dtype=np.uint8))
        write_idx(source / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, 5000, dtype=np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    write_idx(out / "train-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8))
    write_idx(out / "train-labels-idx1-ubyte", rng.integers(0, 10, 10, dtype=np.uint8))
    (out / "classes.txt").write_text("".join(f"{d}\n" for d in range(10)))
    before = digests(out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "export-idx", str(source), "--out", str(out), "--gzip", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 60

    def first_file_written() -> bool:  # in out/ or in the temporary folder the export is built in, beside it
        return any(tmp_path.glob("*/train-images-idx3-ubyte.gz"))

    while time.time() < deadline and not first_file_written() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert proc.returncode in (130, 0), stderr  # 0 only if it had already finished
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"
    if proc.returncode == 130:
        assert digests(out) == before
    else:
        assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                                          "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


# ---- a folder of only t10k-* files is a test split ---------------------------------------------------
@pytest.fixture
def t10k_only(tmp_path) -> Path:
    """The real MNIST test files alone, as MNIST ships them."""
    folder = tmp_path / "mnist-t10k"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(sample_dir() / name, folder / name)
    return folder


def test_t10k_only_folder_is_a_test_split(cli, t10k_only):
    data = load_dataset(str(t10k_only))
    assert list(data.splits) == ["test"]
    code, _, err = cli("train", "perceptron", "--dataset", t10k_only, "--epochs", 1)
    lines = assert_clean_failure(code, err)
    assert "only a test split" in lines[0] and "--val-split" in lines[1]
    code, out, err = cli("train", "perceptron", "--dataset", t10k_only, "--val-split", "0.5", "--limit", 64,
                         "--epochs", 1, "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["validated_on"] == "50% of test"


def test_limit_samples_across_classes_seeded(cli, tmp_path, cifar_folder):
    """CIFAR's folder is sorted by class: the first 20 would all be airplanes."""
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        code, _, err = cli("export-idx", cifar_folder, "--out", tmp_path / name, "--split", "train", "--limit", 20,
                           "--seed", seed, "--quiet")
        assert code == 0, err
    labels = {name: read_idx(tmp_path / name / "train-labels-idx1-ubyte") for name in "abc"}
    assert sorted(np.bincount(labels["a"], minlength=10).tolist()) == [2] * 10  # every class, twice
    assert np.array_equal(labels["a"], labels["b"])
    images = {name: read_idx(tmp_path / name / "train-images-idx4-ubyte") for name in "abc"}
    assert np.array_equal(images["a"], images["b"]) and not np.array_equal(images["a"], images["c"])
    assert np.all(np.diff(labels["a"].astype(int)) >= 0)  # the dataset's own order among those chosen
