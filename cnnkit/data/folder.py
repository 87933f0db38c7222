"""ImageFolder directories: scan, decode once in parallel, cache the tensor beside the data."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch

from cnnkit.data.dataset import FileSplit, TensorSplit
from cnnkit.data.images import ImageReadError, is_image_file, load_image, probe_image
from cnnkit.errors import DataError
from cnnkit.fileio import load_cache

CACHE_DIR = ".cnnkit-cache"
CACHE_VERSION = 1
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_split_dirs(root: Path) -> dict[str, Path] | None:
    """`train/` plus `test/` or `val/`: an explicit split layout."""
    names = {p.name.lower(): p for p in class_folders(root)}
    if "train" not in names:
        return None
    held_out = next((names[n] for n in ("test", "val", "valid", "validation") if n in names), None)
    return {"train": names["train"], "test": held_out} if held_out else {"train": names["train"]}


def scan_classes(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """Files and labels of one ImageFolder split; an empty class or folder is an error."""
    folders = class_folders(root)
    if not folders:
        raise DataError(
            f"no class folders in {root}",
            "an image folder dataset holds one sub-folder of images per class",
        )
    names = [f.name for f in folders]
    if classes is not None and names != classes:
        raise DataError(f"class folders in {root} ({', '.join(names)}) differ from the train split's ({', '.join(classes)})")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p) and not _hidden(p, folder))
        if not found:
            os.listdir(folder)  # rglob skips a folder it may not read: raise its PermissionError instead of "no images"
            raise DataError(f"class folder {folder} has no images", "remove the folder or add images to it")
        files.extend(found)
        labels.extend([label] * len(found))
    return names, files, labels


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def common_size(files: list[Path], workers: int) -> tuple[tuple[int, int] | None, Counter, Counter]:
    """The (H, W) every readable image shares, or None; plus size and mode counts."""
    with ThreadPoolExecutor(workers) as pool:
        probes = list(pool.map(probe_image, files))
    sizes = Counter((h, w) for (w, h), _ in filter(None, probes))
    modes = Counter(mode for _, mode in filter(None, probes))
    return (next(iter(sizes)) if len(sizes) == 1 else None), sizes, modes


def _cache_key(files: list[Path], channels: int, size: tuple[int, int], resize_to: int | None) -> str:
    digest = hashlib.sha1(f"{CACHE_VERSION}|{channels}|{size}|{resize_to}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decode_files(
    files: list[Path],
    labels: list[int],
    channels: int,
    size: tuple[int, int],
    resize_to: int | None,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[TensorSplit, list[tuple[str, str]]]:
    """Decode every file in parallel into one uint8 tensor; skip (and report) unreadable ones."""
    images = torch.empty((len(files), channels, *size), dtype=torch.uint8)
    ok = torch.zeros(len(files), dtype=torch.bool)
    skipped: list[tuple[str, str]] = []

    def decode(i: int) -> None:
        try:
            images[i] = load_image(files[i], channels, size, resize_to)
            ok[i] = True
        except ImageReadError as exc:
            skipped.append((str(files[i]), exc.reason))
        if on_progress:
            on_progress(1)

    # Pillow releases the GIL while decoding, so threads decode in parallel.
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(decode, range(len(files))))
    keep = ok.nonzero().flatten()
    return TensorSplit(images[keep], torch.tensor(labels, dtype=torch.long)[keep]), sorted(skipped)


def load_folder_split(
    root: Path,
    files: list[Path],
    labels: list[int],
    channels: int,
    size: tuple[int, int],
    resize_to: int | None,
    in_memory: bool,
    workers: int,
    progress_factory: Callable | None = None,
) -> tuple[TensorSplit | FileSplit, list[tuple[str, str]], bool]:
    """A split held in memory (decoded or from the cache) or streamed. Returns (split, skipped, from_cache)."""
    if not in_memory:
        return FileSplit(list(files), torch.tensor(labels, dtype=torch.long), resize_to), [], False
    cache = root / CACHE_DIR / f"decoded-{_cache_key(files, channels, size, resize_to)}.pt"
    saved = load_cache(cache)  # None when missing or damaged: decode again, never trust it
    if isinstance(saved, dict) and {"images", "labels", "skipped"} <= saved.keys():
        return TensorSplit(saved["images"], saved["labels"]), [tuple(s) for s in saved["skipped"]], True
    if progress_factory:
        with progress_factory(f"decoding {root.name}", len(files)) as advance:
            split, skipped = decode_files(files, labels, channels, size, resize_to, workers, advance)
    else:
        split, skipped = decode_files(files, labels, channels, size, resize_to, workers)
    _write_cache(cache, split, skipped)
    return split, skipped, False


def _write_cache(cache: Path, split: TensorSplit, skipped: list) -> None:
    from cnnkit.fileio import atomic_torch_save

    try:
        payload = {"images": split.images, "labels": split.labels, "skipped": [list(s) for s in skipped]}
        atomic_torch_save(cache, payload)
    except OSError:
        pass  # a read-only dataset still trains; it just decodes again next time


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
