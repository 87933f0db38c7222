"""A directory of IDX files (as MNIST ships them, or as export-idx writes them) as a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.data.dataset import TensorSplit, highest_label, tensor_split
from cnnkit.data.idx import read_idx
from cnnkit.errors import DataError

PREFIXES = {"train": "train", "t10k": "test", "test": "test"}
CLASSES_FILE = "classes.txt"
# More classes than any real IDX dataset has; a stray huge label would otherwise build millions of names.


def idx_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and "-idx" in p.name and not p.name.startswith("."))


def idx_dir_files(folder: Path) -> list[Path]:
    """The files an IDX dataset is made of, for its fingerprint."""
    names = folder / CLASSES_FILE
    return idx_files(folder) + ([names] if names.is_file() else [])


def _pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    found: dict[tuple[str, str], list[Path]] = {}
    for path in idx_files(folder):
        name = path.name.removesuffix(".gz")
        prefix = name.split("-")[0] if "-" in name else ""
        split = PREFIXES.get(prefix, "train")
        if name.endswith("images-idx3-ubyte") or name.endswith("images-idx4-ubyte"):
            found.setdefault(("images", split), []).append(path)
        elif name.endswith("labels-idx1-ubyte"):
            found.setdefault(("labels", split), []).append(path)
    chosen = {key: _one_of(paths) for key, paths in found.items()}
    images = {split: path for (kind, split), path in chosen.items() if kind == "images"}
    labels = {split: path for (kind, split), path in chosen.items() if kind == "labels"}
    pairs = {split: (images[split], labels[split]) for split in images if split in labels}
    lonely = sorted(set(images) ^ set(labels))
    if lonely:
        raise DataError(f"IDX directory {folder} has images or labels without their partner for split: {', '.join(lonely)}")
    return pairs


def _one_of(paths: list[Path]) -> Path:
    """The file for one role (e.g. train images); several candidates must hold the same data.

    `X-idx3-ubyte` beside `X-idx3-ubyte.gz` (a half-finished gunzip, or an old copy) would
    otherwise be picked silently by name order.
    """
    first = paths[0]
    if len(paths) > 1:
        reference = read_idx(first)
        for other in paths[1:]:
            data = read_idx(other)
            if data.dtype != reference.dtype or data.shape != reference.shape or not np.array_equal(data, reference):
                raise DataError(
                    f"{first} and {other} are two versions of the same IDX file with different contents",
                    "remove the one that is out of date",
                )
    return first


def is_idx_dir(folder: Path) -> bool:
    return any(p.name.removesuffix(".gz").endswith(("images-idx3-ubyte", "images-idx4-ubyte")) for p in idx_files(folder))


def load_idx_dir(folder: Path) -> tuple[dict[str, TensorSplit], list[str]]:
    pairs = _pairs(folder)
    if not pairs:
        raise DataError(f"no IDX image/label pair in {folder}", "expect *images-idx3-ubyte[.gz] with *labels-idx1-ubyte[.gz]")
    splits = {}
    for split, (image_path, label_path) in sorted(pairs.items()):
        images = read_idx(image_path)
        labels = read_idx(label_path)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise DataError(f"{image_path} holds {images.dtype} of shape {images.shape}; expected uint8 (N, H, W) or (N, H, W, 3)")
        if labels.ndim != 1:
            raise DataError(f"{label_path} holds labels of shape {labels.shape}; expected (N,)")
        if not np.issubdtype(labels.dtype, np.integer):
            # Casting would truncate 1.7 to class 1 without a word.
            raise DataError(f"{label_path} holds {labels.dtype} labels; class labels are integers (IDX dtype ubyte or int)")
        if len(images) != len(labels):
            raise DataError(f"{image_path.name} has {len(images)} images but {label_path.name} has {len(labels)} labels")
        splits[split] = tensor_split(images.copy(), labels)
    # A lone t10k-*/test-* pair is a test split, as its name says (MNIST's test set alone, say): training
    # on it takes --val-split (cnnkit.data.dataset.train_val_splits), and export-idx writes it back as t10k-*.
    return splits, _classes(folder, splits)


def _classes(folder: Path, splits: dict[str, TensorSplit]) -> list[str]:
    top = highest_label(splits, f"IDX labels in {folder}", "labels file")
    names_file = folder / CLASSES_FILE
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) <= top:
            raise DataError(f"{names_file} names {len(names)} classes but the labels go up to {top}")
        return names
    return [str(i) for i in range(top + 1)]
