"""The one cache directory: decoded folders go there (never beside the data), it stays under its budget,
--no-cache writes nothing, and a cache directory that is not safely the user's own is refused.

Each test has its own CNNKIT_CACHE (the autouse `cache_dir` fixture in conftest.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from cnnkit.data.cache import cache_root, evict
from cnnkit.data.folder import CACHE_DIR
from cnnkit.data.resolve import load_dataset

from conftest import DATA, assert_clean_failure, digests
from hostile import make_read_only, picture


def _photos(root: Path, per_class: int = 6, side: int = 16, seed: int = 0) -> Path:
    for c, name in enumerate(("Cat", "Dog")):  # the class names of pets-sample
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(picture((side, side), seed=seed + 10 * c + i)).save(root / name / f"{i}.png")
    return root


def _caches(where: Path) -> list[Path]:
    return sorted(where.glob("decoded-*.pt"))


def test_train_caches_in_the_cache_dir_says_so_once_and_leaves_the_dataset_alone(cli, tmp_path, cache_dir):
    photos = _photos(tmp_path / "photos")
    before = digests(photos)
    args = ("train", "perceptron", "--dataset", photos, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "runs")
    code, _, err = cli(*args)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: cached")]
    assert notes == [f"note: cached 12 decoded images ({os.path.getsize(_caches(cache_dir)[0]) / 1024:,.1f} KiB) "
                     f"in {cache_dir}"]
    assert (os.stat(cache_dir).st_mode & 0o777) == 0o700
    assert digests(photos) == before and not (photos / CACHE_DIR).exists()
    code, _, err = cli(*args)  # the second run reads the cache: nothing new to tell
    assert code == 0, err
    assert "note: cached" not in err


def test_cache_dir_option_wins_over_the_environment(cli, tmp_path, cache_dir):
    photos = _photos(tmp_path / "photos")
    chosen = tmp_path / "my-cache"
    code, _, err = cli("inspect-dataset", photos, "--cache-dir", chosen)
    assert code == 0, err
    assert len(_caches(chosen)) == 1 and not cache_dir.exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "inspect-dataset", "export-idx"])
def test_no_cache_writes_no_cache(cli, tmp_path, cache_dir, tiny_run, command):
    photos = _photos(tmp_path / "photos")
    argv = {
        "train": ["train", "perceptron", "--dataset", photos, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r"],
        "evaluate": ["evaluate", tiny_run("perceptron", dataset=DATA / "pets-sample", limit=None, val_split=None),
                     "--dataset", photos, "--device", "cpu"],
        "inspect-dataset": ["inspect-dataset", photos],
        "export-idx": ["export-idx", photos, "--out", tmp_path / "idx"],
    }[command]
    shutil.rmtree(cache_dir, ignore_errors=True)  # tiny_run may have trained just now, with a cache
    code, _, err = cli(*argv, "--no-cache")
    assert code == 0, err
    assert not cache_dir.exists()


def test_a_read_only_dataset_trains_and_is_unchanged(cli, tmp_path, monkeypatch, cache_dir):
    photos = _photos(tmp_path / "photos")
    before = digests(photos)
    make_read_only(monkeypatch, photos)  # as a read-only mount: chmod stops nothing when tests run as root
    code, _, err = cli("train", "perceptron", "--dataset", photos, "--epochs", "1", "--device", "cpu",
                       "--out", tmp_path / "runs")
    assert code == 0, err
    assert digests(photos) == before
    assert _caches(cache_dir)


def test_the_budget_evicts_least_recently_used_caches_first_never_the_one_in_use(tmp_path, cache_dir, monkeypatch):
    folders = [_photos(tmp_path / f"ds{i}", seed=100 * i) for i in range(3)]
    written = []
    for folder in folders:
        load_dataset(str(folder))
        written.append(next(c for c in _caches(cache_dir) if c not in written))
        time.sleep(0.01)
    old = time.time() - 3600
    os.utime(written[0], (old, old))
    os.utime(written[1], (old + 60, old + 60))
    load_dataset(str(folders[0]))  # a cache hit marks ds0's cache as just used
    one = written[0].stat().st_size
    monkeypatch.setenv("CNNKIT_CACHE_SIZE", str(2 * one + one // 2))  # room for two of the three
    removed = evict(cache_dir, keep=written[2])
    assert removed == [written[1]]  # ds1's: the least recently used
    monkeypatch.setenv("CNNKIT_CACHE_SIZE", "1K")
    assert evict(cache_dir, keep=written[2]) == [written[0]] and _caches(cache_dir) == [written[2]]


def test_the_default_is_the_xdg_cache_or_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "cnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "cnnkit"


def _hostile(tmp_path: Path, kind: str) -> Path:
    target = tmp_path / "cache"
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    elif kind == "file":
        target.write_bytes(b"not a folder")
    elif kind == "world-writable":
        target.mkdir()
        target.chmod(0o777)
    elif kind == "another user's":
        target.mkdir(mode=0o700)
        os.chown(target, 65534, 65534)  # nobody: the tests run as root, who may give a folder away
    elif kind == "a shared group's":
        target.mkdir()
        os.chown(target, -1, 65534)  # nogroup
        target.chmod(0o770)
    return target


@pytest.mark.parametrize("kind", ["symlink", "file", "world-writable", "another user's", "a shared group's"])
def test_a_hostile_cache_dir_is_refused_before_anything_is_written(cli, tmp_path, monkeypatch, kind):
    if kind in ("another user's", "a shared group's") and os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user or group")
    photos = _photos(tmp_path / "photos")
    target = _hostile(tmp_path, kind)
    monkeypatch.setenv("CNNKIT_CACHE", str(target))
    before = digests(tmp_path)
    code, _, err = cli("inspect-dataset", photos)
    message, hint = assert_clean_failure(code, err, expected_code=2)[:2]
    assert str(target) in message and "--no-cache" in hint
    assert digests(tmp_path) == before
    code, _, err = cli("inspect-dataset", photos, "--no-cache")  # the way out the hint names
    assert code == 0, err


def test_a_bad_cache_size_is_refused_before_anything_is_decoded(cli, tmp_path, monkeypatch, cache_dir):
    photos = _photos(tmp_path / "photos")
    monkeypatch.setenv("CNNKIT_CACHE_SIZE", "abc")
    code, _, err = cli("inspect-dataset", photos)
    message, hint = assert_clean_failure(code, err, expected_code=2)[:2]
    assert "CNNKIT_CACHE_SIZE=abc" in message and "unset CNNKIT_CACHE_SIZE" in hint
    assert not _caches(cache_dir)


def test_a_cache_dir_that_cannot_be_created_only_costs_the_cache(cli, tmp_path, monkeypatch):
    photos = _photos(tmp_path / "photos")
    blocked = tmp_path / "ro"
    blocked.mkdir()
    make_read_only(monkeypatch, blocked)
    monkeypatch.setenv("CNNKIT_CACHE", str(blocked / "cnnkit"))
    code, _, err = cli("train", "perceptron", "--dataset", photos, "--epochs", "1", "--device", "cpu",
                       "--out", tmp_path / "runs")
    assert code == 0, err
    assert "no decode cache" in err and not (blocked / "cnnkit").exists()
