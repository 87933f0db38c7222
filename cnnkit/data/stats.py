"""Dataset statistics computed streaming: one batch of images in memory at a time.

Pixel figures are reported as ToTensor() would see them (uint8 / 255, so in
[0, 1]); the per-channel mean and std are what `transforms.Normalize` wants.
Sums are kept as exact integers, so the figures do not depend on batch size.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from cnnkit.data.dataset import Dataset, FileSplit, Split, TensorSplit
from cnnkit.data.images import ImageReadError, load_image, probe_image
from cnnkit.reporting import QUIET, Reporter

BATCH_IMAGES = 1024
FILE_BATCH = 256
# Largest class over smallest class above which the balance deserves a warning.
IMBALANCE_RATIO = 2.0
FIRST_LABELS = 10


@dataclass
class PixelStats:
    """Running per-channel sums of uint8 pixels; exact, order-independent."""

    channels: int
    count: int = 0  # pixels per channel seen so far
    total: torch.Tensor = field(init=False)
    squares: torch.Tensor = field(init=False)
    low: int = 255
    high: int = 0

    def __post_init__(self) -> None:
        self.total = torch.zeros(self.channels, dtype=torch.int64)
        self.squares = torch.zeros(self.channels, dtype=torch.int64)

    def update(self, batch: torch.Tensor) -> None:
        """Add a uint8 batch (N, C, H, W)."""
        if batch.numel() == 0:
            return
        wide = batch.to(torch.int64)
        self.total += wide.sum(dim=(0, 2, 3))
        self.squares += (wide * wide).sum(dim=(0, 2, 3))
        self.count += batch.shape[0] * batch.shape[2] * batch.shape[3]
        self.low = min(self.low, int(batch.min()))
        self.high = max(self.high, int(batch.max()))

    def merge(self, other: "PixelStats") -> "PixelStats":
        merged = PixelStats(self.channels)
        merged.total = self.total + other.total
        merged.squares = self.squares + other.squares
        merged.count = self.count + other.count
        merged.low, merged.high = min(self.low, other.low), max(self.high, other.high)
        return merged

    @property
    def mean(self) -> list[float]:
        return [float(s) / self.count / 255.0 for s in self.total.tolist()] if self.count else []

    @property
    def std(self) -> list[float]:
        """Population standard deviation of the [0, 1] pixel values."""
        if not self.count:
            return []
        out = []
        for s, q in zip(self.total.tolist(), self.squares.tolist()):
            # Exact integer numerator: n*Q - S^2 = n^2 * var (in uint8 units).
            var = (self.count * q - s * s) / (self.count * self.count)
            out.append(max(var, 0.0) ** 0.5 / 255.0)
        return out


def iter_batches(split: Split, channels: int, size: tuple[int, int], workers: int = 4,
                 on_batch: Callable[[int], None] | None = None,
                 skipped: list[tuple[str, str]] | None = None) -> Iterator[torch.Tensor]:
    """uint8 batches of a split; files are decoded a batch at a time (unreadable ones skipped,
    and appended to `skipped` as (path, reason))."""
    if isinstance(split, TensorSplit):
        for start in range(0, len(split), BATCH_IMAGES):
            batch = split.images[start:start + BATCH_IMAGES]
            yield batch
            if on_batch:
                on_batch(len(batch))
        return

    def decode(path: Path) -> torch.Tensor | None:
        try:
            return load_image(path, channels, size, split.resize_to)
        except ImageReadError as exc:
            if skipped is not None:
                skipped.append((str(path), exc.reason))
            return None

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(split), FILE_BATCH):
            chunk = split.files[start:start + FILE_BATCH]
            images = [im for im in pool.map(decode, chunk) if im is not None]
            if images:
                yield torch.stack(images)
            if on_batch:
                on_batch(len(chunk))


def first_images(split: Split, channels: int, size: tuple[int, int], count: int) -> tuple[torch.Tensor, list[int]]:
    """The first `count` readable images of a split and their labels."""
    if isinstance(split, TensorSplit):
        return split.images[:count], split.labels[:count].tolist()
    images, labels = [], []
    for path, label in zip(split.files, split.labels.tolist()):
        if len(images) == count:
            break
        try:
            images.append(load_image(path, channels, size, split.resize_to))
            labels.append(label)
        except ImageReadError:
            continue
    empty = torch.empty((0, channels, *size), dtype=torch.uint8)
    return (torch.stack(images) if images else empty), labels


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist() if len(labels) else [0] * num_classes


def imbalance_ratio(counts: list[int]) -> float | None:
    """Largest class count over smallest; None when a class is empty (infinitely imbalanced)."""
    present = [c for c in counts if c]
    if not present or len(present) < len(counts):
        return None
    return max(present) / min(present)


def imbalance_warning(split_name: str, ratio: float | None) -> str:
    """The one wording of the imbalance warning (inspect-dataset and train both say it)."""
    detail = "some class has no samples" if ratio is None else f"the largest class is {ratio:.2f}x the smallest"
    return f"the {split_name} split is imbalanced: {detail}"


def is_imbalanced(ratio: float | None) -> bool:
    return ratio is None or ratio > IMBALANCE_RATIO


def split_report(split: Split, dataset: Dataset, workers: int, on_batch=None,
                 skipped: list[tuple[str, str]] | None = None) -> tuple[dict, PixelStats]:
    stats = PixelStats(dataset.channels)
    for batch in iter_batches(split, dataset.channels, dataset.size, workers, on_batch, skipped):
        stats.update(batch)
    counts = class_counts(split.labels, len(dataset.classes))
    ratio = imbalance_ratio(counts)
    report = {
        "samples": len(split),
        "shape": [dataset.channels, *dataset.size],
        "dtype": "uint8",
        "storage": "decoded in memory" if isinstance(split, TensorSplit) else "streamed from files",
        "class_counts": dict(zip(dataset.classes, counts)),
        "imbalance_ratio": None if ratio is None else round(ratio, 4),
        "imbalanced": is_imbalanced(ratio),
        "first_labels": split.labels[:FIRST_LABELS].tolist(),
        "min": stats.low / 255.0 if stats.count else None,
        "max": stats.high / 255.0 if stats.count else None,
        "mean": [round(m, 6) for m in stats.mean],
        "std": [round(s, 6) for s in stats.std],
    }
    return report, stats


def image_file_stats(files: list[Path], workers: int = 4) -> dict:
    """Image sizes and Pillow modes from the file headers (no decoding)."""
    with ThreadPoolExecutor(workers) as pool:
        probes = [p for p in pool.map(probe_image, files) if p is not None]
    if not probes:
        return {"files": len(files), "readable_headers": 0}
    widths = [w for (w, _), _ in probes]
    heights = [h for (_, h), _ in probes]
    sizes = Counter(f"{w}x{h}" for (w, h), _ in probes)
    return {
        "files": len(files),
        "readable_headers": len(probes),
        "width": {"min": min(widths), "max": max(widths), "mean": round(sum(widths) / len(widths), 1)},
        "height": {"min": min(heights), "max": max(heights), "mean": round(sum(heights) / len(heights), 1)},
        "distinct_sizes": len(sizes),
        "common_sizes": sizes.most_common(5),
        "modes": dict(Counter(mode for _, mode in probes).most_common()),
    }


def inspect_dataset(dataset: Dataset, split_names: list[str], root: Path | None = None,
                    workers: int = 4, reporter: Reporter = QUIET) -> dict:
    """Everything `inspect-dataset` reports, as one JSON-ready dict."""
    from cnnkit.data.verify import split_files

    report: dict = {
        "dataset": dataset.spec, "name": dataset.name, "kind": dataset.kind,
        "classes": dataset.classes, "channels": dataset.channels, "size": list(dataset.size),
        "splits": {}, "warnings": [], "notes": list(dataset.notes),
        "skipped": [{"path": p, "reason": r} for p, r in dataset.skipped],
    }
    pixel_stats = {}
    skipped = list(dataset.skipped)  # decoded in memory: found at load; streamed: found just now
    for name in split_names:
        split = dataset.split(name)
        if isinstance(split, FileSplit):  # read now; a split in memory was decoded at load
            with reporter.task(f"reading {name}", len(split)) as advance:
                report["splits"][name], pixel_stats[name] = split_report(split, dataset, workers, advance, skipped)
        else:
            report["splits"][name], pixel_stats[name] = split_report(split, dataset, workers, skipped=skipped)
        part = report["splits"][name]
        if part["imbalanced"]:
            report["warnings"].append(imbalance_warning(name, part["imbalance_ratio"]))
    # Normalise with the figures of the split a model trains on.
    source = "train" if "train" in pixel_stats else split_names[0]
    report["normalize"] = {
        "from": source,
        "mean": [round(m, 4) for m in pixel_stats[source].mean],
        "std": [round(s, 4) for s in pixel_stats[source].std],
    }
    if root is not None:
        files = split_files(root)
        report["files"] = {name: image_file_stats(files[name], workers) for name in split_names if name in files}
    skipped = sorted(set(skipped))
    report["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    # One line per image, naming it (a bomb or a damaged file is something to go and remove).
    report["warnings"].extend(f"unreadable image {path} left out: {reason}" for path, reason in skipped)
    if skipped:
        report["warnings"].append(f"{len(skipped)} unreadable image(s) were skipped")
    return report
