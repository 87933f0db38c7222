"""Resolve a dataset spec (catalog name, image folder, IDX directory) into a Dataset."""

from __future__ import annotations

import difflib
from pathlib import Path

from cnnkit.data import catalog, folder
from cnnkit.data.dataset import Dataset, files_fingerprint
from cnnkit.data.idx_dir import idx_dir_files, is_idx_dir, load_idx_dir
from cnnkit.data.memory import memory_budget
from cnnkit.errors import DataError, UsageError
from cnnkit.reporting import QUIET, Reporter


def checked_spec(spec: str) -> str:
    """The spec, refused when empty: `--dataset "$DATA"` with DATA unset would mean the current folder."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(
            "the dataset is an empty string",
            "name a catalog dataset, an image folder or an IDX directory (an unset shell variable gives ''); "
            "for the current folder write .",
        )
    return spec


def load_dataset(
    spec: str,
    data_dir: str | Path = "data",
    *,
    image_size: int | None = None,
    channels: int | None = None,
    resize_to: int | None = None,
    budget: int | None = None,
    workers: int | None = None,
    reporter: Reporter = QUIET,
    max_side: int | None = None,
) -> Dataset:
    """Load a dataset spec.

    `image_size` is the side folders of mixed image sizes are decoded to (the
    model's input size). `channels` forces grey (1) or RGB (3) for folders.
    `max_side`: a folder of one image size larger than this on both sides is decoded
    to max_side x max_side instead of held at full resolution (training passes the
    model's input size; export-idx and inspect keep the images as they are).
    """
    data_dir = Path(data_dir)
    key = checked_spec(spec).strip().lower()
    if key in catalog.CATALOG:
        return _load_catalog(key, data_dir, image_size, budget, workers, reporter, max_side)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path.resolve()
        if is_idx_dir(path):
            splits, classes = load_idx_dir(path)
            dataset = _tensor_dataset(str(path), path.name, "idx", splits, classes)
            dataset.fingerprint = files_fingerprint(path, idx_dir_files(path))
            return dataset
        return _load_folder(path, str(path), path.name, image_size, channels, resize_to, budget, workers, reporter,
                            max_side)
    if path.exists():
        raise DataError(f"dataset '{spec}' is a file, not a directory or catalog name", "pass a folder of images, an IDX directory or a catalog name")
    close = difflib.get_close_matches(key, catalog.list_datasets(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"use a folder, an IDX directory or one of: {', '.join(catalog.list_datasets())}"
    raise DataError(f"unknown dataset '{spec}': not a catalog name and no such directory", hint)


def _tensor_dataset(spec, name, kind, splits, classes) -> Dataset:
    first = splits["train"].images
    return Dataset(spec, name, classes, int(first.shape[1]), (int(first.shape[2]), int(first.shape[3])), splits, kind)


def _load_catalog(key, data_dir, image_size, budget, workers, reporter, max_side) -> Dataset:
    if key == "mnist-sample":
        splits, classes = catalog.load_mnist_sample()
        return _tensor_dataset(key, key, "catalog", splits, classes)
    if key == "cats-dogs":
        root = catalog.cats_dogs_root(data_dir)
        dataset = _load_folder(root, key, key, image_size, None, None, budget, workers, reporter, max_side)
        dataset.kind = "catalog"
        return dataset
    splits, classes = catalog.load_torchvision(key, data_dir)
    return _tensor_dataset(key, key, "catalog", splits, classes)


def _load_folder(root, spec, name, image_size, channels, resize_to, budget, workers, reporter,
                 max_side=None) -> Dataset:
    workers = workers or folder.default_workers()
    split_dirs = folder.find_split_dirs(root) or {"train": root}
    scanned = {}
    classes = None
    for split, directory in split_dirs.items():
        classes, files, labels = folder.scan_classes(directory, classes)
        scanned[split] = (files, labels)
    all_files = [f for files, _ in scanned.values() for f in files]
    size, sizes, modes = folder.common_size(all_files, workers)
    if channels is None:
        channels = 1 if modes and set(modes) <= {"L", "1", "I;16", "I", "I;16B", "I;16L"} else 3
    notes = []
    if size is None:
        side = image_size or 224
        size = (side, side)
        if len(sizes) > 1:
            notes.append(f"images come in {len(sizes)} sizes; decoding them to {side}x{side}")
    elif max_side is not None and min(size) > max_side:
        # Photos all of one large size: held at full resolution they would take GBs for a
        # 32x32 model. Decode each straight to the model's size, as mixed sizes are.
        notes.append(f"decoding {size[0]}x{size[1]} images at {max_side}x{max_side}, the model's input size")
        size = (max_side, max_side)
    else:
        resize_to = None  # images of one small size are kept as they are; the device resizes batches
    decoded_bytes = len(all_files) * channels * size[0] * size[1]
    in_memory = decoded_bytes <= (budget if budget is not None else memory_budget())
    if not in_memory:
        notes.append(f"{decoded_bytes / 2**30:.1f} GiB decoded is over the memory budget; streaming from disk")
    splits, skipped = {}, []
    for split, (files, labels) in scanned.items():
        data, bad, _ = folder.load_folder_split(root, files, labels, channels, size, resize_to, in_memory, workers, reporter)
        if len(data) == 0:
            raise DataError(f"no readable images in {split_dirs[split]}", "every file failed to decode; run `cnnkit inspect-dataset --verify`")
        splits[split] = data
        skipped.extend(bad)
    return Dataset(spec, name, classes, channels, size, splits, "folder", resize_to, skipped, notes,
                   files_fingerprint(root, all_files))
