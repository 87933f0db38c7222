"""`export-idx`: write dataset splits as MNIST-format IDX files.

Grey images become IDX3 (N, H, W) uint8, the layout of MNIST itself, which
torchvision's MNIST reader and the classic `load_mnist` (struct + np.fromfile)
read unchanged. Colour images become 4-D IDX (N, H, W, 3) under the name
`*-images-idx4-ubyte`, which cnnkit reads back. The whole export is written
into a temporary folder and swapped in once complete, so an interrupted or
failed export leaves the previous one as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cnnkit.data.dataset import Dataset, TensorSplit
from cnnkit.data.idx import write_idx
from cnnkit.data.idx_dir import CLASSES_FILE
from cnnkit.errors import CnnkitError, DataError
from cnnkit.fileio import current_umask, fsync_dir

PREFIXES = {"train": "train", "test": "t10k"}  # MNIST's own file prefixes
RESIZE_CHUNK = 4096
STAGING_MARK = ".export-tmp"  # suffix of the temporary folder an export is written into


def output_names(split: str, colour: bool, compress: bool) -> tuple[str, str]:
    suffix = ".gz" if compress else ""
    prefix = PREFIXES[split]
    return f"{prefix}-images-idx{4 if colour else 3}-ubyte{suffix}", f"{prefix}-labels-idx1-ubyte{suffix}"


def _all_variants(split: str) -> list[str]:
    """Every name an earlier export of this split may have left (grey or colour, gzipped or not)."""
    return sorted({name for colour in (False, True) for compress in (False, True) for name in output_names(split, colour, compress)})


def existing_outputs(out_dir: Path, splits: list[str]) -> list[Path]:
    names = [name for split in splits for name in _all_variants(split)] + [CLASSES_FILE]
    return [out_dir / name for name in names if (out_dir / name).exists()]


def refuse_to_overwrite(out_dir: str | Path, splits: list[str]) -> None:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} is a file, not a directory")
    existing = existing_outputs(out_dir, splits) if out_dir.is_dir() else []
    if existing:
        raise CnnkitError(
            f"{out_dir} already holds {', '.join(p.name for p in existing)}",
            "pass --force to overwrite them, or choose another --out",
        )


def sample_across_classes(labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """`limit` indices taking the classes in turn, each class's images in a seeded random order, then sorted.

    The first N would be N images of the first class in a folder sorted by class; this keeps every class
    (as long as N allows) and the dataset's own order among those chosen.
    """
    if limit >= len(labels):
        return torch.arange(len(labels))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    by_class = [order[labels[order] == c] for c in labels.unique().tolist()]
    # Rank within its class, then class: sorting by (rank, class) deals the classes out like cards.
    ranks = torch.cat([torch.arange(len(members)) for members in by_class])
    classes = torch.cat([torch.full((len(members),), i) for i, members in enumerate(by_class)])
    dealt = torch.cat(by_class)[torch.argsort(ranks * len(by_class) + classes)]
    return dealt[:limit].sort().values


def split_images(split, channels: int, size: tuple[int, int], limit: int | None,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images and labels of a split (`limit` of them across the classes), decoding files if it is streamed."""
    if limit is not None:
        split = split.subset(sample_across_classes(split.labels, limit, seed))
    if isinstance(split, TensorSplit):
        return split.images, split.labels
    # Streamed files: decode them (unreadable ones are skipped, with their labels).
    from cnnkit.data.folder import decode_files, default_workers

    decoded, _ = decode_files(split.files, split.labels.tolist(), channels, size, split.resize_to, default_workers())
    return decoded.images, decoded.labels


def convert(images: torch.Tensor, resize: int | None, grayscale: bool) -> torch.Tensor:
    """Grey and resize uint8 images in chunks (torchvision's antialiased resize)."""
    from torchvision.transforms.v2 import functional as TF

    if not grayscale and (resize is None or tuple(images.shape[-2:]) == (resize, resize)):
        return images
    chunks = []
    for start in range(0, len(images), RESIZE_CHUNK):
        chunk = images[start:start + RESIZE_CHUNK]
        if grayscale and chunk.shape[1] == 3:
            chunk = TF.rgb_to_grayscale(chunk)
        if resize is not None and tuple(chunk.shape[-2:]) != (resize, resize):
            chunk = TF.resize(chunk, [resize, resize], antialias=True)
        chunks.append(chunk)
    return torch.cat(chunks) if chunks else images


def export_idx(
    dataset: Dataset,
    out_dir: str | Path,
    splits: list[str],
    compress: bool = False,
    resize: int | None = None,
    grayscale: bool = False,
    limit: int | None = None,
    force: bool = False,
    on_file: Callable[[dict], None] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Write each split's images and labels, then classes.txt; return what was written.

    Everything is written into a fresh temporary folder first and swapped in only once complete, so a
    failure part-way (a full disk, Ctrl-C) leaves the previous export exactly as it was. With `force` the
    new export replaces the previous one whole: no file of an older export (another dataset's t10k-*,
    another variant) is left beside it.
    """
    shown = Path(out_dir)  # the records name files as the user named the folder
    out_dir = Path(os.path.abspath(out_dir))
    if len(dataset.classes) > 256:
        raise DataError(f"{len(dataset.classes)} classes do not fit IDX ubyte labels (at most 256)")
    if force:
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"--out {out_dir} is a file, not a directory")
    else:
        refuse_to_overwrite(out_dir, splits)
    splits_data = {name: dataset.split(name) for name in splits}  # a missing split fails before anything is written
    # A symlinked --out is the user's pointer to a folder: write inside it, never rename the link itself.
    swap_folder = not out_dir.exists() or (force and not out_dir.is_symlink() and _holds_only_an_export(out_dir))
    # Beside the target when the whole folder is swapped in, inside it when other files share the folder.
    staging = _make_staging(out_dir.parent if swap_folder else out_dir, out_dir.name)
    try:
        written = _write_into(staging, dataset, splits_data, compress, resize, grayscale, limit, seed)
        fsync_dir(staging)
        if swap_folder:
            _swap_folder(staging, out_dir)
        else:
            _move_files(staging, out_dir, stale=_stale_names(written, splits, force))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _named_for_user(exc, staging, out_dir) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for record in written:
        record["path"] = str(shown / record.pop("name"))
        if on_file:
            on_file(record)
    return written


def _write_into(folder: Path, dataset: Dataset, splits_data: dict, compress: bool, resize: int | None,
                grayscale: bool, limit: int | None, seed: int = 0) -> list[dict]:
    from cnnkit.fileio import atomic_write_text

    written: list[dict] = []
    for name, split in splits_data.items():
        images, labels = split_images(split, dataset.channels, dataset.size, limit, seed)
        images = convert(images, resize, grayscale)
        colour = images.shape[1] == 3
        array = images.permute(0, 2, 3, 1).numpy() if colour else images[:, 0].numpy()
        image_name, label_name = output_names(name, colour, compress)
        for file_name, data in ((image_name, array), (label_name, labels.numpy().astype(np.uint8))):
            path = write_idx(folder / file_name, data, compress)
            written.append({"name": file_name, "split": name, "shape": list(data.shape), "dtype": "uint8",
                            "bytes": path.stat().st_size})
    classes_path = folder / CLASSES_FILE
    atomic_write_text(classes_path, "".join(f"{c}\n" for c in dataset.classes))
    written.append({"name": CLASSES_FILE, "split": None, "shape": [len(dataset.classes)], "dtype": "text",
                    "bytes": classes_path.stat().st_size})
    return written


def _export_names() -> set[str]:
    return {name for split in PREFIXES for name in _all_variants(split)} | {CLASSES_FILE}


def _is_our_temporary(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or STAGING_MARK in name)


def _holds_only_an_export(folder: Path) -> bool:
    """True for a folder cnnkit's export-idx made: its files and temporaries, nothing of the user's."""
    names = [entry.name for entry in os.scandir(folder)]
    return bool(names) and all(name in _export_names() or _is_our_temporary(name) for name in names)


def _stale_names(written: list[dict], splits: list[str], force: bool) -> set[str]:
    """Export files to remove beside the new ones: every older one with --force, else other variants of these splits."""
    old = _export_names() if force else {name for split in splits for name in _all_variants(split)}
    return old - {record["name"] for record in written}


def _make_staging(parent: Path, name: str) -> Path:

    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=STAGING_MARK, dir=parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700; it becomes the user's folder
    return staging


def _swap_folder(staging: Path, out_dir: Path) -> None:
    """Rename the old export aside, the new one into place, then delete the old one."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        fsync_dir(out_dir.parent)
        return
    aside = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.old{STAGING_MARK}")
    os.rename(out_dir, aside)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(aside, out_dir)  # put the old export back
        raise
    fsync_dir(out_dir.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _move_files(staging: Path, out_dir: Path, stale: set[str]) -> None:
    """Into a folder that also holds other files: each finished file replaces its old one, then stale ones go."""
    for entry in sorted(os.listdir(staging)):
        os.replace(staging / entry, out_dir / entry)
    for name in stale:
        (out_dir / name).unlink(missing_ok=True)
    os.rmdir(staging)
    fsync_dir(out_dir)


def _named_for_user(exc: OSError, staging: Path, out_dir: Path) -> OSError:
    """An error in the temporary folder names the file the user asked for."""
    if exc.filename and Path(os.fsdecode(exc.filename)).is_relative_to(staging):
        return OSError(exc.errno, exc.strerror, str(out_dir / Path(os.fsdecode(exc.filename)).relative_to(staging)))
    return exc

