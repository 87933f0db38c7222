"""What the data layer hands to the engine: splits of uint8 tensors or of files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


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
    kind: str  # "catalog", "folder", "idx"
    resize_to: int | None = None  # short side folders were scaled to before a center crop, if any
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)

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
    train = dataset.split("train")
    if val_split is None and "test" in dataset.splits:
        return train, dataset.splits["test"], "test"
    fraction = 0.2 if val_split is None else val_split
    train_idx, val_idx = validation_indices(len(train), fraction, seed)
    return train.subset(train_idx), train.subset(val_idx), f"{fraction:.0%} of train"
