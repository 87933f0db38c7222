"""inspect-dataset: figures checked against numbers computed independently from the raw files."""

from __future__ import annotations

import gzip
import json
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.catalog import sample_dir
from conftest import assert_clean_failure


def raw_mnist_sample():
    """Parse the shipped IDX gz files with gzip + struct + numpy, and split as documented."""
    raw = gzip.decompress((sample_dir() / "t10k-images-idx3-ubyte.gz").read_bytes())
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x0803
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
    raw_labels = gzip.decompress((sample_dir() / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = np.frombuffer(raw_labels, np.uint8, offset=8)
    test = np.arange(count) % 5 == 0  # mnist-sample: every fifth image is the test split
    return {"train": (images[~test], labels[~test]), "test": (images[test], labels[test])}


def assert_one_error(code, stderr, expected_code=1, after_output=False):
    assert_clean_failure(code, stderr, expected_code, after_output=after_output)


def test_mnist_sample_figures_match_the_raw_idx_bytes(cli):
    code, stdout, stderr = cli("inspect-dataset", "mnist-sample", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    for split, (images, labels) in raw_mnist_sample().items():
        part = report["splits"][split]
        assert part["samples"] == len(labels)
        assert part["shape"] == [1, *images.shape[1:]] and part["dtype"] == "uint8"
        assert part["first_labels"] == labels[:10].tolist()
        assert list(part["class_counts"].values()) == np.bincount(labels, minlength=10).tolist()
        pixels = images.astype(np.float64) / 255.0
        assert part["min"] == pixels.min() and part["max"] == pixels.max()
        assert part["mean"][0] == pytest.approx(pixels.mean(), abs=1e-6)
        assert part["std"][0] == pytest.approx(pixels.std(), abs=1e-6)
    train = raw_mnist_sample()["train"][0].astype(np.float64) / 255.0
    assert report["normalize"] == {"from": "train", "mean": [round(train.mean(), 4)], "std": [round(train.std(), 4)]}


def test_human_report_has_the_normalize_line_and_counts(cli):
    code, stdout, _ = cli("inspect-dataset", "mnist-sample")
    assert code == 0
    images = raw_mnist_sample()["train"][0].astype(np.float64) / 255.0
    assert f"Normalize(mean=({images.mean():.4f},), std=({images.std():.4f},))" in stdout
    assert "8,000" in stdout and "2,000" in stdout and "1x28x28" in stdout


def test_folder_statistics_match_pillow(cli, cifar_folder):
    code, stdout, stderr = cli("inspect-dataset", cifar_folder, "--split", "train", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert list(report["splits"]) == ["train"]
    part = report["splits"]["train"]
    files = sorted((cifar_folder / "train").rglob("*.jpg"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype(np.float64) / 255.0
    assert part["samples"] == len(files) == 300
    assert part["mean"] == pytest.approx(pixels.mean(axis=(0, 1, 2)).tolist(), abs=1e-6)
    assert part["std"] == pytest.approx(pixels.std(axis=(0, 1, 2)).tolist(), abs=1e-6)
    assert set(part["class_counts"].values()) == {30}
    info = report["files"]["train"]
    assert info["distinct_sizes"] == 1 and info["common_sizes"] == [["32x32", 300]] and info["modes"] == {"RGB": 300}


def test_streamed_statistics_equal_in_memory_ones(cifar_folder):
    from cnnkit.data.dataset import FileSplit, TensorSplit
    from cnnkit.data.resolve import load_dataset
    from cnnkit.data.stats import inspect_dataset

    streamed = load_dataset(str(cifar_folder), budget=0)  # over budget: files, decoded a batch at a time
    held = load_dataset(str(cifar_folder))
    assert isinstance(streamed.splits["train"], FileSplit) and isinstance(held.splits["train"], TensorSplit)
    a = inspect_dataset(streamed, ["train", "test"])
    b = inspect_dataset(held, ["train", "test"])
    assert a["splits"]["train"]["mean"] == b["splits"]["train"]["mean"]
    assert a["normalize"] == b["normalize"]


def test_imbalance_is_warned_about(cli, cifar_folder):
    for path in sorted((cifar_folder / "train" / "cat").iterdir())[5:]:
        path.unlink()
    code, stdout, stderr = cli("inspect-dataset", cifar_folder, "--split", "train")
    assert code == 0
    assert "warning: the train split is imbalanced: the largest class is 6.00x the smallest" in stderr
    assert "warning" not in cli("inspect-dataset", "mnist-sample")[2]


def test_verify_clean_folder(cli, cifar_folder):
    code, stdout, stderr = cli("inspect-dataset", cifar_folder, "--verify")
    assert code == 0, stderr
    assert "verify: all 400 image files" in stdout


def test_verify_lists_corrupt_truncated_and_non_image_files(cli, cifar_folder):
    good = sorted((cifar_folder / "train" / "dog").glob("*.jpg"))[0]
    truncated = cifar_folder / "train" / "dog" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = cifar_folder / "test" / "cat" / "junk.png"
    junk.write_bytes(b"this is not a png at all" * 10)
    empty = cifar_folder / "test" / "cat" / "empty.jpeg"
    empty.write_bytes(b"")
    notes = cifar_folder / "train" / "bird" / "notes.txt"
    notes.write_text("labels checked by hand")
    (cifar_folder / "train" / "bird" / "Thumbs.db").write_bytes(b"\0" * 10)
    code, stdout, stderr = cli("inspect-dataset", cifar_folder, "--verify", "--json")
    assert_one_error(code, stderr, after_output=True)  # the skipped-images warning comes first
    assert "4 bad file(s)" in stderr
    report = json.loads(stdout)
    problems = {p["path"]: p["reason"] for p in report["verify"]["problems"]}
    assert set(problems) == {str(truncated), str(junk), str(empty), str(notes)}
    assert "truncated" in problems[str(truncated)] and "not an image" in problems[str(notes)]
    assert report["verify"]["checked"] == 403 and len(report["verify"]["ignored"]) == 1
    # The human form lists them too, one per line.
    code, stdout, stderr = cli("inspect-dataset", cifar_folder, "--verify")
    assert "4 bad file(s)" in assert_clean_failure(code, stderr, after_output=True)[0]
    assert str(truncated) in stdout and str(junk) in stdout
    # Without --verify the report still comes out, with a warning that points to --verify.
    code, stdout, stderr = cli("inspect-dataset", cifar_folder)
    assert code == 0 and "warning: 3 unreadable image(s) were skipped; --verify lists them" in stderr


def test_show_draws_a_grid(cli, tmp_path):
    out = tmp_path / "grid.png"
    code, stdout, stderr = cli("inspect-dataset", "mnist-sample", "--show", "12", "--out", out, "--split", "test")
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 300


@pytest.mark.parametrize(
    "args, exit_code",
    [
        (["no-such-dataset"], 1),
        (["mnist-sample", "--show", "4"], 2),
        (["mnist-sample", "--show", "0", "--out", "g.png"], 2),
        (["mnist-sample", "--split", "validation"], 2),
    ],
)
def test_bad_input_is_one_error_line(cli, args, exit_code):
    code, _, stderr = cli("inspect-dataset", *args)
    assert_clean_failure(code, stderr, exit_code)


def test_missing_split_and_unloadable_folder(cli, cifar_folder, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(cifar_folder / "train", flat)
    assert_one_error(*cli("inspect-dataset", flat, "--split", "test")[::2])
    broken = tmp_path / "broken" / "only"
    broken.mkdir(parents=True)
    (broken / "a.jpg").write_bytes(b"nope")
    code, stdout, stderr = cli("inspect-dataset", tmp_path / "broken", "--verify")
    assert_one_error(code, stderr)
    assert "a.jpg" in stdout  # the verify listing still comes out before the error


def test_catalog_mnist_read_through_torchvision(cli, tmp_path):
    """`mnist` from the data root, laid out as torchvision keeps it (files written by export-idx)."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert cli("export-idx", "mnist-sample", "--out", raw, "--quiet")[0] == 0
    code, stdout, stderr = cli("inspect-dataset", "mnist", "--data-dir", tmp_path / "data", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    train_images, train_labels = raw_mnist_sample()["train"]
    assert report["dataset"] == "mnist" and report["splits"]["train"]["samples"] == len(train_labels)
    assert report["splits"]["train"]["first_labels"] == train_labels[:10].tolist()
    assert report["splits"]["test"]["samples"] == 2000 and report["splits"]["train"]["max"] == 1.0


def test_cats_dogs_from_the_data_root(cli, pets_folder):
    code, stdout, stderr = cli("inspect-dataset", "cats-dogs", "--data-dir", pets_folder.parent, "--verify", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["classes"] == ["Cat", "Dog"] and report["verify"]["problems"] == []
    sizes = {Image.open(p).size for p in pets_folder.rglob("*.jpg")}
    info = report["files"]["train"]
    assert info["distinct_sizes"] == len(sizes) and info["files"] == sum(report["splits"]["train"]["class_counts"].values())


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_decompression_bombs_are_refused_from_the_header_one_warning_line_each(cli, tmp_path, monkeypatch, streamed):
    from hostile import picture, png_header_only

    root = tmp_path / "ds"
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(picture(seed=10 * c + i)).save(root / cls / f"{i}.png")
    # 100 Mpixels: over Pillow's limit but under twice it, where Pillow only warns; 900 Mpixels: an error.
    (root / "cat" / "warn-size.png").write_bytes(png_header_only(10000, 10000))
    (root / "dog" / "bomb.png").write_bytes(png_header_only(30000, 30000))
    if streamed:
        monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "1")
    code, out, err = cli("inspect-dataset", root, "--json")
    assert code == 0, err
    for name in ("warn-size.png", "bomb.png"):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and lines[0].startswith("warning:") and "decompression bomb" in lines[0], err
    assert json.loads(out)["splits"]["train"]["samples"] == (10 if streamed else 8)  # streamed counts files


def test_a_bomb_header_gives_no_size_to_the_probe(tmp_path):
    from cnnkit.data.images import probe_image
    from hostile import png_header_only

    path = tmp_path / "warn-size.png"
    path.write_bytes(png_header_only(10000, 10000))
    assert probe_image(path) is None
