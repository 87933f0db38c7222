"""Class names and paths are text: never rich markup on stdout, never mathtext in a figure.

A folder of JPEGs whose class folders are named like markup (`[bold]x[` would style and lose its
brackets, `:cat: [i]` would turn into an emoji and italics) and like mathtext (`$\\undefinedcmd{$`
is an unknown TeX command in math mode), under a path holding `[/x]` (a closing tag nobody
opened: rich raises on it). Every command that prints or draws class names or paths must exit 0
and show each exactly as it is spelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hostile import picture

NAMES = ["[bold]x[", "$\\undefinedcmd{$", ":cat: [i]"]
ROOT = "[/x] $photos$"  # two components on disk: "[" and "x] $photos$"
PER_CLASS = 8


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    # Long temporary paths must not wrap inside a table title or cell: rich reads COLUMNS.
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def odd_names(tmp_path) -> Path:
    """A flat image folder (one folder per class) of small grey JPEGs; its path is markup too."""
    root = tmp_path / ROOT
    for label, name in enumerate(NAMES):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(PER_CLASS):
            Image.fromarray(picture((28, 28), seed=10 * label + index)).save(folder / f"{index}.jpg", quality=90)
    return root


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 100


def assert_names_printed(stdout: str) -> None:
    for name in NAMES:
        assert name in stdout, f"{name!r} not printed as it is named:\n{stdout}"


def test_inspect_dataset_prints_and_draws_names_as_spelled(cli, odd_names, tmp_path):
    code, stdout, stderr = cli("inspect-dataset", odd_names)
    assert code == 0, stderr
    assert_names_printed(stdout)  # the classes table
    assert odd_names.name in stdout  # the dataset's own name heads the report, brackets and all
    grid = tmp_path / "grid.png"
    code, stdout, stderr = cli("inspect-dataset", odd_names, "--show", 6, "--out", grid)
    assert code == 0, stderr
    assert_png(grid)  # each image titled with its class name


def test_visualize_filter_titles_images_with_odd_class_names(cli, odd_names, tmp_path):
    out = tmp_path / "kernel.png"
    code, stdout, stderr = cli("visualize-filter", "--dataset", odd_names, "--count", 3, "--out", out)
    assert code == 0, stderr
    assert_png(out)


def test_train_evaluate_and_predict_print_names_as_spelled(cli, odd_names, tmp_path):
    code, stdout, stderr = cli("train", "oneconv", "--dataset", odd_names, "--epochs", 1, "--batch-size", 8,
                               "--out", tmp_path / "runs", "--name", "run", "--device", "cpu")
    assert code == 0, stderr
    run = tmp_path / "runs" / "run"
    assert ROOT in stdout  # the summary table's title holds the dataset path
    assert_png(run / "curves.png")

    confusion, mistakes = tmp_path / "confusion.png", tmp_path / "mistakes"
    code, stdout, stderr = cli("evaluate", run, "--confusion", confusion, "--misclassified", mistakes, "--device", "cpu")
    assert code == 0, stderr
    assert_names_printed(stdout)  # per-class rows and the confusion matrix's columns
    assert ROOT in stdout  # the title names the dataset by its path
    assert_png(confusion)
    assert_png(mistakes / "misclassified.png")

    code, stdout, stderr = cli("predict", odd_names / NAMES[0] / "0.jpg", "--model", run, "--top-k", 3, "--device", "cpu")
    assert code == 0, stderr
    assert_names_printed(stdout)
    code, stdout, stderr = cli("predict", odd_names / NAMES[1] / "0.jpg", "--model", run, "--json", "--device", "cpu")
    assert code == 0, stderr
    assert {p["label"] for p in json.loads(stdout)[0]["predictions"]} == set(NAMES)


def test_progress_bars_on_a_terminal_show_folder_names_as_spelled(tmp_path):
    """A bar's label holds the folder's name; on a real terminal (a pty) it must not be read as markup."""
    import os
    import pty
    import subprocess
    import sys

    root = tmp_path / "[bold]pets"
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(picture((28, 28), seed=10 * label + index)).save(root / name / f"{index}.jpg")
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    env.pop("CNNKIT_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "inspect-dataset", str(root), "--verify"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=120)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "verifying [bold]pets" in text, text  # with markup read, the bar said "verifying pets" in bold
