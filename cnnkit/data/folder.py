"""ImageFolder directories: scan, decode once in parallel, cache the tensor in the cache directory (data/cache.py)."""

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
from cnnkit.reporting import QUIET, Reporter

CACHE_DIR = ".cnnkit-cache"  # where caches were written before data/cache.py: beside the data, never again
CACHE_VERSION = 2  # 2: content-sampled keys, names decoded-<group>-<key>.pt


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_split_dirs(root: Path) -> dict[str, Path] | None:
    """`train/` plus `test/` or `val/`: an explicit split layout.

    A folder named `train` is a split only if it holds class folders; one that holds images
    is a class (a flat dataset of classes `test`, `train`, `val`, ...), decided one level deeper.
    """
    names = {p.name.lower(): p for p in class_folders(root)}
    if "train" not in names or not _holds_class_folders(names["train"]):
        return None
    held_out = next((names[n] for n in ("test", "val", "valid", "validation") if n in names), None)
    if held_out is not None and not _holds_class_folders(held_out):
        raise DataError(
            f"{names['train']} holds class folders but {held_out} does not",
            "a split layout has class folders in both train/ and test/ (or val/); a flat dataset has images in every class folder",
        )
    return {"train": names["train"], "test": held_out} if held_out else {"train": names["train"]}


def _holds_class_folders(folder: Path) -> bool:
    """A split folder holds class folders and no images of its own; a class folder holds images."""
    entries = list(folder.iterdir())
    has_images = any(p.is_file() and is_image_file(p) for p in entries)
    return not has_images and any(p.is_dir() and not p.name.startswith(".") for p in entries)


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


# How much of each file's start and end the cache key hashes: a rewrite that keeps the size (and,
# restored from a backup, the mtime) changes the pixels, and nearly always these bytes too.
SAMPLE_BYTES = 64 << 10
# A temporary cache older than this was left by a crashed run, not by one still writing it.
STALE_TEMPORARY_SECONDS = 3600


def _file_signature(path: Path) -> bytes:
    """Path, size, mtime and a hash of the first and last 64 KiB, as bytes (names need not be UTF-8)."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            head = f.read(SAMPLE_BYTES)
            if stat.st_size > SAMPLE_BYTES:
                f.seek(max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES))
                head += f.read(SAMPLE_BYTES)
    except OSError as exc:  # unreadable or gone: decoding will skip it with a reason; the key says so
        return os.fsencode(path) + f"|error {exc.errno}\n".encode()
    sample = hashlib.sha256(head).digest()
    return os.fsencode(path) + f"|{stat.st_size}|{stat.st_mtime_ns}|".encode() + sample + b"\n"


def _cache_group(files: list[Path], channels: int, size: tuple[int, int], resize_to: int | None,
                 role: str = "") -> str:
    """What a cache is of (one split's folder, or one chosen part of it, decoded to one size): generations of
    it replace each other. `role` tells apart the parts --limit chooses from one folder (train, val)."""
    folder = os.path.commonpath([os.fsencode(p.parent) for p in files]) if files else b""
    suffix = f"|{role}".encode() if role else b""
    digest = hashlib.sha256(f"{CACHE_VERSION}|{channels}|{size}|{resize_to}|".encode() + folder + suffix)
    return digest.hexdigest()[:12]


def _cache_key(files: list[Path], channels: int, size: tuple[int, int], resize_to: int | None, workers: int = 4) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{channels}|{size}|{resize_to}|{len(files)}\n".encode())
    # hashlib and file reads release the GIL: threads read the samples in parallel.
    with ThreadPoolExecutor(workers) as pool:
        for signature in pool.map(_file_signature, files):
            digest.update(signature)
    return digest.hexdigest()[:24]


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
    label: str,
    files: list[Path],
    labels: list[int],
    channels: int,
    size: tuple[int, int],
    resize_to: int | None,
    in_memory: bool,
    workers: int,
    reporter: Reporter = QUIET,
    cache_dir: Path | None = None,
    role: str = "",
    on_cached: Callable[[int, int], None] | None = None,
) -> tuple[TensorSplit | FileSplit, list[tuple[str, str]], bool]:
    """A split held in memory (decoded, or from the cache in `cache_dir`; None: no cache) or streamed.

    Returns (split, skipped, from_cache). `label` names the split in the progress bar; a new cache
    written is told to `on_cached(images, bytes)`, so the caller can say once what all its splits took.
    """
    if not in_memory:
        return FileSplit(list(files), torch.tensor(labels, dtype=torch.long), resize_to), [], False
    cache = None
    if cache_dir is not None:
        group = _cache_group(files, channels, size, resize_to, role)
        cache = cache_dir / f"decoded-{group}-{_cache_key(files, channels, size, resize_to, workers)}.pt"
        cached = _valid_cache(load_cache(cache), files, labels, channels, size)  # None: decode again, never trust it
        if cached is not None:
            from cnnkit.data.cache import touch

            touch(cache)
            return cached[0], cached[1], True
    with reporter.task(f"decoding {label}", len(files)) as advance:
        split, skipped = decode_files(files, labels, channels, size, resize_to, workers, advance)
    written = cache is not None and _write_cache(cache, group, split, skipped)
    if written and on_cached is not None:
        on_cached(len(split), cache.stat().st_size)
    return split, skipped, False


def _valid_cache(saved, files: list[Path], labels: list[int], channels: int, size: tuple[int, int]):
    """(split, skipped) from a loaded cache if it is exactly what decoding `files` would give, else None.

    A cache is a file anyone can replace: every count, shape, dtype and label is checked
    against the scan, so a wrong one is rebuilt rather than trained on (or crashed on).
    """
    if not isinstance(saved, dict) or not {"images", "labels", "skipped"} <= saved.keys():
        return None
    images, cached_labels, raw_skipped = saved["images"], saved["labels"], saved["skipped"]
    if not (isinstance(images, torch.Tensor) and isinstance(cached_labels, torch.Tensor) and isinstance(raw_skipped, list)):
        return None
    if not all(isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in raw_skipped):
        return None
    skipped = [(s[0], s[1]) for s in raw_skipped]
    skipped_paths = {path for path, _ in skipped}
    if len(skipped_paths) != len(skipped) or not skipped_paths <= {str(f) for f in files}:
        return None
    kept = [label for f, label in zip(files, labels) if str(f) not in skipped_paths]
    if images.dtype != torch.uint8 or tuple(images.shape) != (len(kept), channels, *size):
        return None
    if cached_labels.dtype != torch.long or not torch.equal(cached_labels, torch.tensor(kept, dtype=torch.long)):
        return None
    return TensorSplit(images.contiguous(), cached_labels), sorted(skipped)


def _write_cache(cache: Path, group: str, split: TensorSplit, skipped: list) -> bool:
    """Write the cache atomically, then drop its old generations and keep the cache directory under budget."""
    from cnnkit.data.cache import evict
    from cnnkit.fileio import atomic_torch_save

    try:
        payload = {"images": split.images, "labels": split.labels, "skipped": [list(s) for s in skipped]}
        atomic_torch_save(cache, payload)
    except OSError:
        return False  # a full or read-only cache directory: the run goes on, it decodes again next time
    _remove_old_caches(cache, group)
    evict(cache.parent, keep=cache)
    return True


def _remove_old_caches(current: Path, group: str) -> None:
    """Earlier generations of this cache (the files changed since), caches of the old key format, and
    temporaries a crashed run left: without this every edit of a folder leaves a full copy behind."""
    import re
    import time

    legacy = re.compile(r"decoded-[0-9a-f]{20}\.pt")  # CACHE_VERSION 1: no group in the name
    now = time.time()
    try:
        entries = list(current.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        old = (name.startswith(f"decoded-{group}-") and name.endswith(".pt")) or legacy.fullmatch(name)
        temporary = name.startswith(".decoded-") and name.endswith(".tmp")
        try:
            if entry == current or entry.is_symlink() or not entry.is_file():
                continue
            if old or (temporary and now - entry.stat().st_mtime > STALE_TEMPORARY_SECONDS):
                entry.unlink()
        except OSError:
            pass  # another run removed it first, or the folder is read-only now


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
