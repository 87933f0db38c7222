"""Every file cnnkit writes is new: created with O_EXCL beside its final name and renamed over it.

So a symlink planted at the final name (or at a temporary name) is replaced, never written through, and
files are created with the umask's mode like any standard tool's (mkstemp would force 0600).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnkit.data.cache import cache_root
from conftest import assert_clean_failure, digests, write_digits_idx
from hostile import picture

MODES = {0o022: 0o644, 0o077: 0o600}


@pytest.fixture(params=sorted(MODES), ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield MODES[request.param]
    os.umask(old)


@pytest.fixture
def precious(tmp_path) -> Path:
    path = tmp_path / "precious"
    path.write_bytes(b"the user's own file\n" * 50)
    return path


def assert_new_regular_file(path: Path, mode: int) -> None:
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode), f"{path} is not a regular file"
    assert stat.S_IMODE(info.st_mode) == mode, f"{path} has mode {stat.S_IMODE(info.st_mode):o}, want {mode:o}"


def test_every_fileio_writer_replaces_a_planted_link(tmp_path, precious, umask):
    from cnnkit.fileio import atomic_path, atomic_save, atomic_torch_save, atomic_write_bytes, atomic_write_text

    before = digests(precious)
    writers = {
        "bytes": lambda p: atomic_write_bytes(p, b"new"),
        "text": lambda p: atomic_write_text(p, "new"),
        "save": lambda p: atomic_save(p, lambda f: f.write(b"new")),
        "torch": lambda p: atomic_torch_save(p, {"x": torch.zeros(2)}),
        "path": lambda p: _through_atomic_path(atomic_path, p),
    }
    for name, write in writers.items():
        target = tmp_path / f"{name}.out"
        target.symlink_to(precious)
        write(target)
        assert_new_regular_file(target, umask)
    assert digests(precious) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def _through_atomic_path(atomic_path, target: Path) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    old = os.umask(0o022)
    try:
        from cnnkit.engine.config import TrainConfig
        from cnnkit.reporting import Reporter
        from cnnkit.engine.runner import start_training

        root = tmp_path_factory.mktemp("safety")
        data = write_digits_idx(root, train=64, test=32)
        config = TrainConfig(model="perceptron", dataset=str(data), epochs=1, batch_size=32, out=str(root / "runs"),
                             name="one", device="cpu", schedule="none")
        return Path(start_training(config, Reporter(quiet=True))["run_dir"])
    finally:
        os.umask(old)


RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.json", "report.html")


def test_resume_replaces_links_planted_in_the_run(cli, trained, tmp_path, precious, umask):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    for name in RUN_FILES[1:]:
        (run / name).unlink()
        (run / name).symlink_to(precious)
    (run / ".last.pt.0badc0de.tmp").symlink_to(precious)  # a temporary name, as a killed run leaves
    before = digests(precious)
    code, _, err = cli("train", "--resume", run, "--epochs", "2", "--quiet")
    assert code == 0, err
    assert digests(precious) == before
    for name in RUN_FILES:
        assert_new_regular_file(run / name, umask)
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)


def test_a_planted_lock_link_is_refused(cli, trained, tmp_path, precious):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (run / ".lock").symlink_to(precious)
    before = digests(tmp_path)
    code, _, err = cli("train", "--resume", run, "--epochs", "2")
    assert "lock" in assert_clean_failure(code, err)[0]
    assert digests(tmp_path) == before


def test_new_run_figures_caches_and_exports_respect_the_umask(cli, tmp_path, precious):
    old = os.umask(0o022)  # 077 is covered above, through the same fileio writers
    try:
        _new_run_figures_caches_and_exports(cli, tmp_path, precious, 0o644)
    finally:
        os.umask(old)


def _new_run_figures_caches_and_exports(cli, tmp_path: Path, precious: Path, umask: int) -> None:
    photos = tmp_path / "photos"
    for label in ("cat", "dog"):
        (photos / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(picture((16, 16), seed=i + 10 * (label == "dog"))).save(photos / label / f"{i}.png")
    code, out, err = cli("train", "perceptron", "--dataset", photos, "--epochs", "1", "--device", "cpu",
                         "--out", tmp_path / "runs", "--quiet")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    for name in RUN_FILES:
        assert_new_regular_file(run / name, umask)
    caches = list(cache_root().glob("decoded-*.pt"))
    assert caches, "no decode cache was written"
    for cache in caches:
        assert_new_regular_file(cache, umask)

    before = digests(precious)
    figure = tmp_path / "confusion.png"
    figure.symlink_to(precious)
    code, _, err = cli("evaluate", run, "--confusion", figure, "--quiet")
    assert code == 0, err
    assert_new_regular_file(figure, umask)

    export = tmp_path / "idx"
    assert cli("export-idx", "mnist-sample", "--out", export, "--limit", "10", "--quiet")[0] == 0
    (export / "train-images-idx3-ubyte").unlink()
    (export / "train-images-idx3-ubyte").symlink_to(precious)
    code, _, err = cli("export-idx", "mnist-sample", "--out", export, "--limit", "12", "--force", "--quiet")
    assert code == 0, err
    for path in export.iterdir():
        assert_new_regular_file(path, umask)
    assert stat.S_IMODE(export.stat().st_mode) == umask | (umask & 0o444) >> 2  # the folder too: 755 or 700
    assert digests(precious) == before
