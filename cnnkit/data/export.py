"""`export-idx`: write dataset splits as MNIST-format IDX files.

Grey images become IDX3 (N, H, W) uint8, the layout of MNIST itself, which
torchvision's MNIST reader and the classic `load_mnist` (struct + np.fromfile)
read unchanged. Colour images become 4-D IDX (N, H, W, 3) under the name
`*-images-idx4-ubyte`, which cnnkit reads back. Every file is written to a
temporary name and renamed, so an interrupted export leaves no half file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cnnkit.data.dataset import Dataset, TensorSplit
from cnnkit.data.idx import write_idx
from cnnkit.data.idx_dir import CLASSES_FILE
from cnnkit.errors import CnnkitError, DataError

PREFIXES = {"train": "train", "test": "t10k"}  # MNIST's own file prefixes
RESIZE_CHUNK = 4096


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


def split_images(split, channels: int, size: tuple[int, int], limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images and labels of a split, decoding files if it is streamed."""
    if limit is not None:
        split = split.subset(torch.arange(min(limit, len(split))))
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
) -> list[dict]:
    """Write each split's images and labels, then classes.txt; return what was written."""
    from cnnkit.fileio import atomic_write_text

    out_dir = Path(out_dir)
    if len(dataset.classes) > 256:
        raise DataError(f"{len(dataset.classes)} classes do not fit IDX ubyte labels (at most 256)")
    if force:
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"--out {out_dir} is a file, not a directory")
    else:
        refuse_to_overwrite(out_dir, splits)
    splits_data = {name: dataset.split(name) for name in splits}  # a missing split fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[dict] = []
    for name, split in splits_data.items():
        images, labels = split_images(split, dataset.channels, dataset.size, limit)
        images = convert(images, resize, grayscale)
        colour = images.shape[1] == 3
        array = images.permute(0, 2, 3, 1).numpy() if colour else images[:, 0].numpy()
        image_name, label_name = output_names(name, colour, compress)
        for file_name, data in ((image_name, array), (label_name, labels.numpy().astype(np.uint8))):
            path = write_idx(out_dir / file_name, data, compress)
            record = {"path": str(path), "split": name, "shape": list(data.shape), "dtype": "uint8", "bytes": path.stat().st_size}
            written.append(record)
            if on_file:
                on_file(record)
        # Old files of another variant (gz or not, grey or colour) would make the folder ambiguous.
        for stale in set(_all_variants(name)) - {image_name, label_name}:
            (out_dir / stale).unlink(missing_ok=True)
    classes_path = out_dir / CLASSES_FILE
    atomic_write_text(classes_path, "".join(f"{c}\n" for c in dataset.classes))
    written.append({"path": str(classes_path), "split": None, "shape": [len(dataset.classes)], "dtype": "text", "bytes": classes_path.stat().st_size})
    return written
