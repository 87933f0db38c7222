"""Hostile image files through every command that reads images.

One image given on the command line (predict, visualize-filter --image): an
unreadable one is a clean error, an odd but valid one works. Images inside a
dataset folder (inspect-dataset, train, evaluate, export-idx, summary,
visualize-filter): each unreadable file is named once and skipped, the rest is
used, and no file is changed. test_predict covers predict's own image modes and
its zero-byte, truncated and text files; test_data covers the folder loader's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_clean_failure, digests
from hostile import picture, write_bad_images, write_odd_images

BAD = ["zero-byte", "truncated-jpeg", "text-as-jpg", "bomb", "bomb-warning-size"]
ODD = ["png-named-jpg", "cmyk", "palette", "16-bit", "rgba", "grey", "exif-rotated", "1x1"]
PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    return {**write_bad_images(root / "bad"), **write_odd_images(root / "odd")}


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> Path:
    """Class folders a/ and b/: good digits-like pictures, the odd images in a/, the unreadable ones
    in b/, and junk a file manager leaves (Thumbs.db, .DS_Store, a hidden folder)."""
    root = tmp_path_factory.mktemp("hostile") / "photos ü"
    for cls, seed in (("a", 0), ("b", 100)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(picture(seed=seed + i)).save(root / cls / f"{i}.png")
    write_odd_images(root / "a")
    write_bad_images(root / "b")
    (root / "a" / "Thumbs.db").write_bytes(b"\x00junk")
    (root / "b" / ".DS_Store").write_bytes(b"\x00junk")
    (root / "b" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "a" / ".thumbnails").mkdir()
    Image.fromarray(picture()).save(root / "a" / ".thumbnails" / "hidden.png")
    return root


BAD_NAMES = {"zero-byte.jpg", "truncated.jpg", "notes.jpg", "bomb.png", "big.png"}
READABLE = 12 + len(ODD)  # six pictures per class and the odd images


@pytest.fixture(autouse=True)
def pillow_limit_stays_on():
    yield
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT, "a command switched off Pillow's decompression-bomb limit"


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run()


# ---- one image on the command line -----------------------------------------------------------


@pytest.mark.parametrize("kind", BAD)
def test_visualize_filter_image_that_cannot_be_read(cli, trained, images, kind, tmp_path):
    before = digests(images[kind])
    code, _, err = cli("visualize-filter", "--checkpoint", trained, "--image", images[kind], "--out", tmp_path / "f.png")
    line = assert_clean_failure(code, err)[0]
    assert f"cannot read image {images[kind]}" in line
    if kind.startswith("bomb"):
        assert "decompression bomb" in line
    assert not (tmp_path / "f.png").exists()
    assert digests(images[kind]) == before


@pytest.mark.parametrize("kind", ODD)
def test_visualize_filter_reads_odd_images(cli, trained, images, kind, tmp_path):
    code, out, err = cli("visualize-filter", "--checkpoint", trained, "--image", images[kind], "--out", tmp_path / "f.png", "--json")
    assert code == 0, err
    assert json.loads(out)["feature_maps"][0] == 9  # oneconv's nine maps, drawn from the decoded image
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", ["bomb", "bomb-warning-size"])
def test_predict_refuses_a_decompression_bomb_without_decoding_it(cli, trained, images, kind):
    # test_predict_safety checks the peak memory of such a run, and JPEG bombs on every decode path.
    code, out, err = cli("predict", images[kind], "--model", trained, "--json")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "1 of 1 inputs could not be read" in lines[0]
    assert err.startswith(f"warning: cannot read image {images[kind]}: refused as a decompression bomb")
    assert json.loads(out)[0]["error"].startswith("refused as a decompression bomb")


def test_predict_with_bad_and_odd_images_together(cli, trained, images):
    """Every odd image is predicted, every bad one named; the exit code says some failed."""
    code, out, err = cli("predict", *[images[k] for k in BAD + ODD], "--model", trained, "--json")
    assert_clean_failure(code, err, after_output=True)
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert {name for name, r in records.items() if "error" in r} == BAD_NAMES
    assert all(len(r["predictions"]) == 5 for name, r in records.items() if name not in BAD_NAMES)
    assert sum(line.startswith("warning: cannot read image") for line in err.splitlines()) == len(BAD)


# ---- images inside a dataset folder ----------------------------------------------------------


def warned_names(stderr: str) -> set[str]:
    """The bad files a command's output names, and any good one it wrongly names."""
    return {name for name in BAD_NAMES | {"0.png", "cmyk.jpg", "hidden.png"} if name in stderr}


def test_inspect_counts_and_verify_names_exactly_the_bad_files(cli, hostile_folder):
    before = digests(hostile_folder)
    code, out, err = cli("inspect-dataset", hostile_folder, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "5 unreadable image(s)" in err
    assert report["splits"]["train"]["samples"] == READABLE
    assert {Path(s["path"]).name for s in report["skipped"]} == BAD_NAMES
    code, out, err = cli("inspect-dataset", hostile_folder, "--verify")
    assert_clean_failure(code, err, after_output=True)
    assert warned_names(out + err) == BAD_NAMES
    assert digests(hostile_folder).items() >= before.items()  # only the decode cache may be added


def test_train_and_evaluate_skip_each_bad_file_once(cli, hostile_folder, tmp_path):
    code, out, err = cli("train", "oneconv", "--dataset", hostile_folder, "--epochs", "1", "--val-split", "0.25",
                         "--out", tmp_path / "runs", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["skipped_images"] == len(BAD)
    assert warned_names(err) == BAD_NAMES
    assert all(err.count(name) == 1 for name in BAD_NAMES)
    code, out, err = cli("evaluate", summary["run_dir"], "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == READABLE - int(READABLE * 0.75)


def test_export_idx_writes_every_readable_image(cli, hostile_folder, tmp_path):
    from cnnkit.data.idx import read_idx

    code, out, err = cli("export-idx", hostile_folder, "--out", tmp_path / "idx", "--resize", "28", "--grayscale")
    assert code == 0, err
    assert warned_names(err) <= BAD_NAMES
    images = read_idx(tmp_path / "idx" / "train-images-idx3-ubyte")
    assert images.shape == (READABLE, 28, 28)


@pytest.mark.parametrize("args", [
    ["summary", "cnn", "--dataset", "DS"],
    ["visualize-filter", "--dataset", "DS", "--count", "4", "--out", "k.png"],
])
def test_other_dataset_commands_take_the_folder(cli, hostile_folder, args):
    code, out, err = cli(*[str(hostile_folder) if a == "DS" else a for a in args])
    assert code == 0, err
    assert "Traceback" not in err


def test_a_folder_of_nothing_but_bad_images_is_a_clean_error(cli, tmp_path):
    root = tmp_path / "all-bad"
    write_bad_images(root / "a")
    write_bad_images(root / "b")
    before = digests(root)
    for args in (["inspect-dataset", root], ["train", "oneconv", "--dataset", root, "--out", tmp_path / "runs"],
                 ["export-idx", root, "--out", tmp_path / "idx"]):
        code, _, err = cli(*args)
        lines = assert_clean_failure(code, err, after_output=True)
        assert "no readable images" in lines[0], args
    assert digests(root).items() >= before.items()
    assert not (tmp_path / "idx").exists() or not list((tmp_path / "idx").glob("*-idx*"))
