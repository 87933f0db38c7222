"""What the data layer hands to the engine: splits of uint8 tensors or of files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import torch


def tensor_split(images, labels) -> "TensorSplit":
    """A TensorSplit from numpy arrays as IDX and .npz files hold them: uint8 (N, H, W) or (N, H, W, C), integer labels."""
    import numpy as np

    tensor = torch.from_numpy(np.ascontiguousarray(images))
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
    return TensorSplit(tensor, torch.from_numpy(np.asarray(labels).reshape(-1).astype(np.int64)))


def highest_label(splits: dict[str, "TensorSplit"], labels: str, damaged: str) -> int:
    """The largest class label of the splits (0 when empty), checked to count from 0 and to stay under
    MAX_CLASSES. `labels` names them in the errors ("IDX labels in DIR"); `damaged` is the hint's file."""
    from cnnkit.errors import DataError
    from cnnkit.limits import MAX_CLASSES

    filled = [s.labels for s in splits.values() if len(s)]
    low = min((int(values.min()) for values in filled), default=0)
    top = max((int(values.max()) for values in filled), default=0)
    if low < 0:
        raise DataError(f"{labels} are negative ({low}); class labels count from 0")
    if top >= MAX_CLASSES:
        raise DataError(f"{labels} go up to {top}; cnnkit takes at most {MAX_CLASSES} classes",
                        f"the {damaged} is damaged or holds no labels")
    return top


@dataclass
class TensorSplit:
    """Decoded images held in memory: uint8 (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.images[indices], self.labels[indices])


@dataclass
class FileSplit:
    """Images too large for memory: decoded per batch by DataLoader workers."""

    files: list[Path]
    labels: torch.Tensor
    resize_to: int | None = None

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: torch.Tensor) -> "FileSplit":
        idx = indices.tolist()
        return FileSplit([self.files[i] for i in idx], self.labels[indices], self.resize_to)


Split = TensorSplit | FileSplit


@dataclass
class Dataset:
    spec: str  # what the user asked for, normalised: a catalog name or an absolute path
    name: str  # short name for run directories
    classes: list[str]
    channels: int
    size: tuple[int, int]  # (H, W) of the images as stored in the splits
    splits: dict[str, Split]
    kind: str  # its format's name: "catalog", "folder", "idx", ...
    resize_to: int | None = None  # short side folders were scaled to before a center crop, if any
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)
    # sha256 of the sorted relative paths and sizes of the dataset's files (folders and IDX
    # directories); None for catalog tensors, whose files torchvision checks by MD5.
    fingerprint: str | None = None
    root: Path | None = None  # the directory the dataset's files are in (folders, IDX); None for catalog tensors
    # Set when a folder was loaded with decode=False: {name: FileSplit} -> {name: Split}, decoding (through the
    # cache) only the files chosen, so --limit 2000 on 25,000 photos decodes 2,000 and not 25,000.
    decoder: Callable[[dict], dict] | None = field(default=None, repr=False)

    @classmethod
    def of_tensors(cls, spec, splits: dict[str, TensorSplit], classes: list[str]) -> "Dataset":
        """A dataset of splits already decoded to uint8 tensors, for a parsed DatasetSpec (catalog, IDX, npz, ...)."""
        first = next(iter(splits.values())).images  # "train", or a lone "test" (an IDX folder of t10k-* files)
        return cls(spec.text, spec.name, list(classes), int(first.shape[1]), (int(first.shape[2]), int(first.shape[3])),
                   splits, spec.kind, root=spec.path)

    @property
    def streamed(self) -> bool:
        return any(isinstance(s, FileSplit) for s in self.splits.values())

    def split(self, name: str) -> Split:
        from cnnkit.errors import DataError

        if name not in self.splits:
            raise DataError(
                f"dataset '{self.spec}' has no '{name}' split (it has: {', '.join(self.splits)})",
                "use --split with one of those",
            )
        return self.splits[name]


def every_image(dataset: Dataset) -> Split:
    """All of the dataset's splits as one (evaluate --split all): train's images, then test's."""
    splits = list(dataset.splits.values())
    if len(splits) == 1:
        return splits[0]
    labels = torch.cat([s.labels for s in splits])
    if all(isinstance(s, TensorSplit) for s in splits):
        return TensorSplit(torch.cat([s.images for s in splits]), labels)
    if all(isinstance(s, FileSplit) for s in splits):
        return FileSplit([f for s in splits for f in s.files], labels, splits[0].resize_to)
    raise TypeError("the splits of one dataset are all held in memory or all streamed")


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, val) index split under `seed`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * fraction)) if fraction > 0 else 0
    return order[n_val:].sort().values, order[:n_val].sort().values


def train_val_splits(dataset: Dataset, val_split: float | None, seed: int) -> tuple[Split, Split, str]:
    """The training split and the one validated on, and a word saying where it came from.

    With no --val-split, a dataset's own test split is the validation set, as in
    the seed tutorials; a dataset without one holds out 20%.
    """
    if "train" not in dataset.splits and "test" in dataset.splits:
        return _train_on_test(dataset, val_split, seed)
    train = dataset.split("train")
    if val_split is None and "test" in dataset.splits:
        return train, dataset.splits["test"], "test"
    fraction = 0.2 if val_split is None else val_split
    train_idx, val_idx = validation_indices(len(train), fraction, seed)
    return train.subset(train_idx), train.subset(val_idx), f"{fraction:.0%} of train"


def _train_on_test(dataset: Dataset, val_split: float | None, seed: int) -> tuple[Split, Split, str]:
    """A dataset of only a test split (t10k-* IDX files) trains when asked to split it: never silently."""
    from cnnkit.errors import DataError

    if val_split is None:
        raise DataError(f"dataset {dataset.spec} holds only a test split (no train-* files)",
                        "train on it with --val-split 0.2 (it is then split into train and validation), "
                        "or add its train-* files beside it")
    test = dataset.splits["test"]
    train_idx, val_idx = validation_indices(len(test), val_split, seed)
    return test.subset(train_idx), test.subset(val_idx), f"{val_split:.0%} of test"


def files_fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 of each file's path relative to root and its size, in sorted order (bytes: any name works)."""
    import hashlib
    import os

    entries = sorted((os.fsencode(Path(f).relative_to(root)), Path(f).stat().st_size) for f in files)
    digest = hashlib.sha256()
    for name, size in entries:
        digest.update(name + b"\0" + str(size).encode() + b"\n")
    return digest.hexdigest()


def check_same_files(recorded_data: dict, current: str | None, spec: str, action: str, hint: str) -> None:
    """Refuse to re-split a dataset whose files changed since training recorded their fingerprint.

    The validation split is drawn from the file list by seed: a file added, removed or
    resized moves images between train and val, and the figures would silently change.
    Checkpoints written before fingerprints (and catalog datasets) have none: nothing to compare.
    """
    from cnnkit.errors import DataError

    recorded = recorded_data.get("fingerprint")
    if not recorded or not current or recorded == current:
        return
    raise DataError(f"the files of dataset '{spec}' changed since this checkpoint was trained, so {action} "
                    "would split them differently", hint)
