"""A directory of IDX files (as MNIST ships them, or as export-idx writes them) as a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnkit.data.dataset import TensorSplit
from cnnkit.data.idx import read_idx
from cnnkit.errors import DataError

PREFIXES = {"train": "train", "t10k": "test", "test": "test"}
CLASSES_FILE = "classes.txt"


def idx_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and "-idx" in p.name and not p.name.startswith("."))


def _pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in idx_files(folder):
        name = path.name.removesuffix(".gz")
        prefix = name.split("-")[0] if "-" in name else ""
        split = PREFIXES.get(prefix, "train")
        if name.endswith("images-idx3-ubyte") or name.endswith("images-idx4-ubyte"):
            images.setdefault(split, path)
        elif name.endswith("labels-idx1-ubyte"):
            labels.setdefault(split, path)
    pairs = {split: (images[split], labels[split]) for split in images if split in labels}
    lonely = sorted(set(images) ^ set(labels))
    if lonely:
        raise DataError(f"IDX directory {folder} has images or labels without their partner for split: {', '.join(lonely)}")
    return pairs


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
        if len(images) != len(labels):
            raise DataError(f"{image_path.name} has {len(images)} images but {label_path.name} has {len(labels)} labels")
        tensor = torch.from_numpy(images.copy())
        tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
        splits[split] = TensorSplit(tensor, torch.from_numpy(labels.astype(np.int64)))
    if "train" not in splits:  # a lone test pair still trains
        splits = {"train": splits.pop("test"), **splits}
    return splits, _classes(folder, splits)


def _classes(folder: Path, splits: dict[str, TensorSplit]) -> list[str]:
    top = max(int(s.labels.max()) for s in splits.values() if len(s)) if any(len(s) for s in splits.values()) else 0
    if min((int(s.labels.min()) for s in splits.values() if len(s)), default=0) < 0:
        raise DataError(f"IDX labels in {folder} are negative")
    names_file = folder / CLASSES_FILE
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) <= top:
            raise DataError(f"{names_file} names {len(names)} classes but the labels go up to {top}")
        return names
    return [str(i) for i in range(top + 1)]
