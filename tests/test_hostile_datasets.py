"""Broken datasets through every command that takes --dataset (or a DATASET argument).

Each defect is a real on-disk dataset: IDX files with one field wrong, image
folders that are empty, hold junk only, or disagree between splits. Every
command must fail with one error line naming the problem, write nothing, and
leave the dataset as it was. test_data covers the loader itself; here it is the
commands' turn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.folder import CACHE_DIR
from cnnkit.data.idx import write_idx
from conftest import assert_clean_failure, digests, write_idx_pair
from hostile import IDX_DEFECTS, picture, shared_mobilenet_weights, write_broken_idx

MESSAGES = {
    "magic": "wrong magic number",
    "dtype": "unknown IDX dtype code",
    "dims": "declares 0 dimensions",
    "short": "is truncated",
    "long": "longer than its header says",
    "float": "expected uint8",
    "count": "20 images but",
    "labels-only": "no class folders",
    "negative-labels": "are negative",
    "classes-txt-short": "names 2 classes but the labels go up to 2",
    "empty-folder": "no class folders",
    "class-without-images": "has no images",
    "junk-only": "has no images",
    "split-classes-differ": "differ from the train split's",
    "a-file": "is a file, not a directory",
}
FOLDER_DEFECTS = ["empty-folder", "class-without-images", "junk-only", "split-classes-differ", "a-file"]
EXTRA_IDX = ["labels-only", "negative-labels", "classes-txt-short"]


def make_broken(root: Path, defect: str) -> Path:
    folder = root / defect
    if defect in IDX_DEFECTS:
        return write_broken_idx(folder, defect)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    if defect == "labels-only":
        write_idx(folder / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    elif defect == "negative-labels":
        write_idx_pair(folder, "train", rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), np.array([0, -1, 1, 0], np.int8))
    elif defect == "classes-txt-short":
        write_idx_pair(folder, "train", rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), np.array([0, 2, 1, 0], np.uint8))
        (folder / "classes.txt").write_text("circle\nsquare\n")
    elif defect == "class-without-images":
        (folder / "cat").mkdir()
        (folder / "dog").mkdir()
        Image.fromarray(picture()).save(folder / "cat" / "1.png")
    elif defect == "junk-only":
        for cls in ("cat", "dog"):
            (folder / cls).mkdir()
            (folder / cls / "Thumbs.db").write_bytes(b"\x00junk")
            (folder / cls / ".hidden.png").write_bytes(b"\x00junk")
            (folder / cls / "notes.txt").write_text("not an image\n")
    elif defect == "split-classes-differ":
        for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "horse"))):
            for cls in classes:
                (folder / split / cls).mkdir(parents=True)
                Image.fromarray(picture()).save(folder / split / cls / "1.png")
    elif defect == "a-file":
        folder.rmdir()
        write_idx(folder, np.zeros((2, 4, 4), np.uint8))
    return folder


DEFECTS = IDX_DEFECTS + EXTRA_IDX + FOLDER_DEFECTS


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-datasets")
    return {d: make_broken(root, d) for d in DEFECTS}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return shared_mobilenet_weights(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run()


COMMANDS = {
    "inspect-dataset": ["inspect-dataset", "DS"],
    "summary": ["summary", "cnn", "--dataset", "DS"],
    "visualize-filter": ["visualize-filter", "--dataset", "DS", "--out", "OUT/k.png"],
    "train": ["train", "perceptron", "--dataset", "DS", "--out", "OUT"],
    "finetune": ["finetune", "mobilenet_v2", "--weights", "WEIGHTS", "--dataset", "DS", "--out", "OUT"],
    "evaluate": ["evaluate", "RUN", "--dataset", "DS"],
    "export-idx": ["export-idx", "DS", "--out", "OUT"],
}


@pytest.mark.parametrize("defect", DEFECTS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_broken_dataset(cli, command, defect, broken, weights, trained, tmp_path):
    dataset = broken[defect]
    before = digests(dataset)
    names = {"DS": str(dataset), "OUT": str(tmp_path / "out"), "WEIGHTS": str(weights), "RUN": str(trained)}
    args = [names.get(a, a.replace("OUT", names["OUT"])) for a in COMMANDS[command]]
    code, out, err = cli(*args)
    line = assert_clean_failure(code, err)[0]
    assert MESSAGES[defect] in line, err
    assert out == "", "a failure printed a result on stdout"
    assert digests(dataset) == before, "the dataset was changed"
    assert not (tmp_path / "out").exists(), "something was written for a dataset that does not load"


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_training_needs_two_classes_and_some_training_images(cli, command, weights, tmp_path):
    one_class = tmp_path / "one-class"
    (one_class / "cat").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(picture(seed=i)).save(one_class / "cat" / f"{i}.png")
    one_image = tmp_path / "one-image"
    one_image.mkdir()
    write_idx_pair(one_image, "train", np.zeros((1, 8, 8), np.uint8), np.array([1], np.uint8))
    for dataset, message in ((one_class, "a classifier needs at least two"), (one_image, "none left after holding out")):
        args = ["train", "perceptron"] if command == "train" else ["finetune", "mobilenet_v2", "--weights", weights]
        code, _, err = cli(*args, "--dataset", dataset, "--out", tmp_path / "runs")
        assert message in assert_clean_failure(code, err)[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("spec", ["", "   "])
@pytest.mark.parametrize("command", list(COMMANDS) + ["inspect-dataset --verify"])
def test_an_empty_dataset_spec_is_a_usage_error_not_the_current_folder(cli, command, spec, weights, trained, tmp_path):
    """`--dataset "$DATA"` with DATA unset: the cwd holds a perfectly trainable folder, which must not be used."""
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(picture(seed=i)).save(tmp_path / cls / f"{i}.png")
    before = digests(tmp_path)
    names = {"DS": spec, "OUT": str(tmp_path / "out"), "WEIGHTS": str(weights), "RUN": str(trained)}
    argv = COMMANDS.get(command, ["inspect-dataset", "DS", "--verify"])
    code, out, err = cli(*[names.get(a, a.replace("OUT", names["OUT"])) for a in argv])
    assert "empty" in assert_clean_failure(code, err, expected_code=2)[0]
    assert out == ""
    assert digests(tmp_path) == before and not (tmp_path / CACHE_DIR).exists() and not (tmp_path / "out").exists()


def test_a_flat_folder_with_classes_named_train_test_and_val_is_a_dataset_of_classes(cli, tmp_path):
    root = tmp_path / "flat"
    for c, cls in enumerate(("test", "train", "val", "zebra")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(picture(seed=10 * c + i)).save(root / cls / f"{i}.png")
    code, out, err = cli("inspect-dataset", root, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["classes"] == ["test", "train", "val", "zebra"]
    assert list(report["splits"]) == ["train"] and report["splits"]["train"]["samples"] == 12


def test_a_split_layout_is_still_found_one_level_deeper(cli, tmp_path):
    root = tmp_path / "split"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            Image.fromarray(picture()).save(root / split / cls / "1.png")
    code, out, err = cli("inspect-dataset", root, "--json")
    assert code == 0, err
    assert json.loads(out)["classes"] == ["cat", "dog"] and sorted(json.loads(out)["splits"]) == ["test", "train"]
    # train/ of class folders beside val/ of loose images cannot be both layouts at once.
    for image in (root / "val").rglob("*.png"):
        image.rename(root / "val" / f"{image.parent.name}.png")
    for cls in ("cat", "dog"):
        (root / "val" / cls).rmdir()
    code, _, err = cli("inspect-dataset", root)
    assert "holds class folders but" in assert_clean_failure(code, err)[0]
