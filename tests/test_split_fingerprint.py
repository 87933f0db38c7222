"""The validation split is drawn from a folder's file list by seed: a changed folder must not be re-split silently.

Training records a fingerprint of the file list (relative paths and sizes) in the
checkpoint; `evaluate --split val|train` and `train --resume` compare it with the
folder as it is now.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import assert_clean_failure
from hostile import picture

RESUME_HINT = "start a new run"


def _flat_folder(root: Path, per_class: int = 10) -> Path:
    for c, name in enumerate(("ants", "bees")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(picture((16, 16), seed=100 * c + i)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def trained(cli, tmp_path) -> tuple[Path, Path]:
    """A LeNet run on a flat folder validated on 20% of it: (folder, run directory)."""
    folder = _flat_folder(tmp_path / "ds")
    code, out, err = cli("train", "lenet", "--dataset", folder, "--epochs", "1", "--val-split", "0.2",
                         "--out", tmp_path / "runs", "--json", "--quiet")
    assert code == 0, err
    return folder, Path(json.loads(out)["run_dir"])


def test_the_checkpoint_records_the_file_list_fingerprint(trained):
    _, run_dir = trained
    data = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)["data"]
    assert isinstance(data["fingerprint"], str) and len(data["fingerprint"]) == 64


@pytest.mark.parametrize("change, split", [("added", "val"), ("resized", "val"), ("removed", "train")])
def test_evaluate_refuses_to_re_split_a_folder_whose_files_changed(cli, trained, tmp_path, change, split):
    folder, run_dir = trained
    assert cli("evaluate", run_dir, "--split", split, "--json")[0] == 0
    if change == "added":
        for i in range(6):
            Image.fromarray(picture((16, 16), seed=900 + i)).save(folder / "ants" / f"new{i}.png")
    elif change == "removed":
        (folder / "bees" / "3.png").unlink()
    else:
        Image.fromarray(picture((16, 16), seed=5)).save(folder / "bees" / "3.png", compress_level=0)
    code, out, err = cli("evaluate", run_dir, "--split", split)
    lines = assert_clean_failure(code, err, after_output=True)
    assert "changed since this checkpoint was trained" in lines[0] and any("--split test" in line for line in lines[1:])
    assert out == ""


def test_a_separate_test_folder_still_evaluates(cli, trained, tmp_path):
    folder, run_dir = trained
    Image.fromarray(picture((16, 16), seed=7)).save(folder / "ants" / "late.png")  # the training folder changed
    test = tmp_path / "held-out"
    for split in ("train", "test"):
        _flat_folder(test / split, per_class=3)
    code, out, err = cli("evaluate", run_dir, "--dataset", test, "--split", "test", "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 6


def test_a_checkpoint_without_a_fingerprint_evaluates_as_before(cli, trained):
    folder, run_dir = trained
    checkpoint = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    checkpoint["data"].pop("fingerprint", None)  # as written before fingerprints were recorded
    torch.save(checkpoint, run_dir / "best.pt")
    Image.fromarray(picture((16, 16), seed=7)).save(folder / "ants" / "late.png")
    code, _, err = cli("evaluate", run_dir, "--split", "val", "--json")
    assert code == 0, err


def test_resume_refuses_a_folder_whose_files_changed(cli, trained):
    folder, run_dir = trained
    (folder / "ants" / "0.png").unlink()
    code, out, err = cli("train", "--resume", run_dir, "--epochs", "2")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "changed since this checkpoint was trained" in lines[0] and any(RESUME_HINT in line for line in lines[1:])
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2, "an epoch was trained on the changed folder"  # header + epoch 1


def test_resume_of_an_unchanged_folder_continues(cli, trained):
    _, run_dir = trained
    code, _, err = cli("train", "--resume", run_dir, "--epochs", "2", "--quiet")
    assert code == 0, err
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 3
