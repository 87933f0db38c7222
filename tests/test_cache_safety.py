"""The decoded-image cache of a folder: never stale, never trusted blindly, never piling up.

Every case is a real folder of image files and the real cache file cnnkit wrote,
then changed the way a user (or an attacker with write access to the folder)
would: a same-size rewrite, a replaced cache, a non-UTF-8 name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.cache import cache_root
from cnnkit.data.resolve import load_dataset

from conftest import run_cnnkit
from hostile import picture


def _folder(root: Path, per_class: int = 4, side: int = 16) -> Path:
    """Two classes of uncompressed BMPs: a rewrite with other pixels keeps the file size exactly."""
    for c, name in enumerate(("ants", "bees")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(picture((side, side), seed=10 * c + i)).save(root / name / f"{i}.bmp")
    return root


def _caches(root: Path) -> list[Path]:
    """The decode caches in the cache directory (the test's own CNNKIT_CACHE, see conftest.py)."""
    return sorted(cache_root().glob("decoded-*.pt"))


def _pixels(root: Path) -> torch.Tensor:
    dataset = load_dataset(str(root))
    return dataset.splits["train"].images


def test_a_same_size_rewrite_with_the_old_mtime_is_decoded_again(tmp_path):
    root = _folder(tmp_path / "ds")
    _pixels(root)
    target = root / "ants" / "0.bmp"
    stat = target.stat()
    Image.fromarray(255 - picture((16, 16), seed=0)).save(target)  # other pixels, same size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as a restore from backup or `cp -p` leaves it
    assert target.stat().st_size == stat.st_size
    served = _pixels(root)[0, 0]
    assert torch.equal(served, torch.from_numpy(255 - picture((16, 16), seed=0)))


def _tampered(saved: dict, defect: str) -> dict:
    images, labels, skipped = saved["images"], saved["labels"], saved["skipped"]
    return {
        "shape": lambda: {**saved, "images": images[:, :, :8, :8].clone()},
        "dtype": lambda: {**saved, "images": images.to(torch.float32)},
        "count": lambda: {**saved, "images": images[:-1].clone(), "labels": labels[:-1].clone()},
        "labels": lambda: {**saved, "labels": torch.zeros_like(labels)},
        "label-range": lambda: {**saved, "labels": labels + 50},
        "label-dtype": lambda: {**saved, "labels": labels.to(torch.int32)},
        "skipped": lambda: {**saved, "skipped": [["/etc/passwd", "x"]]},
        "skipped-shape": lambda: {**saved, "skipped": [1, 2]},
        "not-a-dict": lambda: [images, labels],
        "images-a-list": lambda: {**saved, "images": images.tolist()},
    }[defect]()


@pytest.mark.parametrize("defect", ["shape", "dtype", "count", "labels", "label-range", "label-dtype", "skipped",
                                    "skipped-shape", "not-a-dict", "images-a-list"])
def test_a_tampered_cache_is_rebuilt_not_used(tmp_path, defect):
    root = _folder(tmp_path / "ds")
    fresh = load_dataset(str(root)).splits["train"]
    (cache,) = _caches(root)
    torch.save(_tampered(torch.load(cache, weights_only=True), defect), cache)
    again = load_dataset(str(root)).splits["train"]
    assert torch.equal(again.images, fresh.images) and torch.equal(again.labels, fresh.labels)
    assert again.images.dtype == torch.uint8


def test_a_tampered_cache_trains_like_a_fresh_one_through_the_cli(cli, tmp_path):
    root = _folder(tmp_path / "ds")
    load_dataset(str(root))
    (cache,) = _caches(root)
    saved = torch.load(cache, weights_only=True)
    torch.save({**saved, "images": saved["images"][:3].clone()}, cache)  # 3 images for 8 labels
    code, _, stderr = cli("train", "lenet", "--dataset", root, "--epochs", "1", "--out", tmp_path / "runs")
    assert code == 0, stderr


def test_a_new_cache_replaces_its_old_generations_and_stale_temporaries(tmp_path):
    root = _folder(tmp_path / "ds")
    _pixels(root)
    (first,) = _caches(root)
    cache_dir = cache_root()
    legacy = cache_dir / "decoded-0123456789abcdef0123.pt"  # the key format before content sampling
    legacy.write_bytes(first.read_bytes())
    stale = cache_dir / f".{first.name}.abc123.tmp"  # left by a run that was killed while writing
    stale.write_bytes(b"half a cache")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    live = cache_dir / f".{first.name}.def456.tmp"  # another run writing right now: not ours to delete
    live.write_bytes(b"being written")
    Image.fromarray(picture((16, 16), seed=99)).save(root / "bees" / "new.bmp")
    _pixels(root)
    remaining = sorted(p.name for p in cache_dir.iterdir())
    (second,) = _caches(root)
    assert second != first
    assert remaining == sorted([second.name, live.name])


def test_caches_of_other_sizes_and_splits_are_kept(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        _folder(root / split)
    load_dataset(str(root))
    assert len(_caches(root)) == 2  # one per split: writing test's must not delete train's
    load_dataset(str(root))
    assert len(_caches(root)) == 2


def _non_utf8_folder(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    for c, name in enumerate((b"caf\xe9", b"na\xefve")):  # Latin-1 names, as an old Windows zip leaves them
        folder = bytes(root) + b"/" + name
        os.mkdir(folder)
        for i in range(4):
            Image.fromarray(picture((16, 16), seed=10 * c + i)).save(os.fsdecode(folder + b"/img\xff%d.png" % i))
    return root


def test_non_utf8_file_and_class_names_are_inspected_and_trained(tmp_path):
    root = _non_utf8_folder(tmp_path)
    env = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    inspected = run_cnnkit("inspect-dataset", root, cwd=tmp_path, env=env, timeout=120, errors="surrogateescape")
    assert inspected.returncode == 0, inspected.stderr
    assert "caf\udce9" in inspected.stdout  # the class name, byte for byte as on disk
    trained = run_cnnkit("train", "lenet", "--dataset", root, "--epochs", "1", "--out", tmp_path / "runs",
                         cwd=tmp_path, env=env, timeout=180, errors="surrogateescape")
    assert trained.returncode == 0, trained.stderr
    assert "unexpected" not in trained.stderr
    assert len(_caches(root)) == 1
