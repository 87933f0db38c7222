"""Real photo folders as users bring them: --limit decodes only what it uses, evaluate scores a separate
test folder whole, download --from names the file a folder lacks.

How many images were decoded is read from the decode caches cnnkit wrote (each holds the images it
decoded), not from timing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cnnkit.data.catalog import sample_dir

from conftest import DATA, assert_clean_failure


def _decoded(cache_dir: Path) -> list[torch.Tensor]:
    """The labels of every decode cache written, smallest first."""
    saved = [torch.load(c, weights_only=True) for c in cache_dir.glob("decoded-*.pt")]
    return sorted((s["labels"] for s in saved), key=len)


def test_limit_decodes_only_the_images_it_samples_across_classes(cli, tmp_path, cache_dir):
    pets = DATA / "pets-sample"  # 50 Cat, 50 Dog: read in place, nothing is written into it
    code, out, err = cli("train", "perceptron", "--dataset", pets, "--limit", "20", "--epochs", "1",
                         "--device", "cpu", "--out", tmp_path / "runs", "--json")
    assert code == 0, err
    val, train = _decoded(cache_dir)
    cats, dogs = torch.bincount(train).tolist()  # 20 of the 80 training images, each class in its share
    assert cats + dogs == 20 and min(cats, dogs) >= 9
    assert len(val) == 5  # validation limited alike: 20 of 80 -> 5 of the 20 held out
    summary = json.loads(out)
    code, out, err = cli("evaluate", summary["run_dir"], "--split", "val", "--json")  # the same 5, drawn again
    assert code == 0, err
    assert json.loads(out)["count"] == 5


def test_val_limit_sets_the_validation_size(cli, tmp_path, cache_dir):
    code, _, err = cli("train", "perceptron", "--dataset", DATA / "pets-sample", "--limit", "10", "--val-limit", "4",
                       "--epochs", "1", "--device", "cpu", "--out", tmp_path / "runs")
    assert code == 0, err
    assert [len(labels) for labels in _decoded(cache_dir)] == [4, 10]


def test_evaluate_scores_a_separate_test_folder_whole_and_says_so(cli, tmp_path, tiny_run):
    run = tiny_run("perceptron", dataset=DATA / "pets-sample", limit=None, val_split=None)
    other = tmp_path / "test-photos"
    shutil.copytree(DATA / "pets-sample", other)
    code, out, err = cli("evaluate", run, "--dataset", other, "--json", "--device", "cpu")
    assert code == 0, err
    document = json.loads(out)
    assert (document["split"], document["count"]) == ("all", 100)
    code, out, err = cli("evaluate", run, "--dataset", other, "--device", "cpu")
    assert f"on {other}: every image (100 images)" in out
    code, out, err = cli("evaluate", run, "--device", "cpu", "--json")  # its own folder: training's held-out part
    assert code == 0, err
    assert (json.loads(out)["split"], json.loads(out)["count"]) == ("val", 20)


def test_split_all_scores_train_and_test_together(cli, tmp_path, tiny_run):
    run = tiny_run("perceptron", dataset=DATA / "cifar10-sample", limit=None, val_split=None)
    code, out, err = cli("evaluate", run, "--split", "all", "--json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["count"] == 400


def test_split_test_on_a_folder_without_test_is_a_clean_error(cli, tiny_run):
    run = tiny_run("perceptron", dataset=DATA / "pets-sample", limit=None, val_split=None)
    code, _, err = cli("evaluate", run, "--split", "test", "--device", "cpu")
    message, hint = assert_clean_failure(code, err)[:2]
    assert "no test split" in message and "--split all" in hint


def test_download_from_a_folder_missing_a_file_names_it(cli, tmp_path, data_dir):
    folder = tmp_path / "by-hand"
    folder.mkdir()
    for path in sample_dir().glob("t10k-*.gz"):  # the test files only: the train files are missing
        shutil.copy(path, folder / path.name)
    code, _, err = cli("download", "mnist", "--from", folder, "--data-dir", data_dir, "--mirror", "http://127.0.0.1:9/")
    message, hint = assert_clean_failure(code, err)[:2]
    assert "train-images-idx3-ubyte.gz" in message and str(folder) in message and "network" not in err
    assert "missing" in message
