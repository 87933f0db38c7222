"""A directory in ImageFolder layout: class folders, directly or under train/ and test/ (or val/).

It claims any directory no other format claims, so it is asked last.
"""

from __future__ import annotations

from pathlib import Path

from cnnkit.data import folder
from cnnkit.data.dataset import Dataset, files_fingerprint
from cnnkit.data.memory import memory_budget
from cnnkit.data.spec import FALLBACK_PRIORITY, DatasetSpec, LoadOptions, directory_format, register_format
from cnnkit.errors import DataError

GREY_MODES = {"L", "1", "I;16", "I", "I;16B", "I;16L"}


def load_image_folder(root: Path, spec: DatasetSpec, options: LoadOptions, *, channels: int | None,
                      resize_to: int | None) -> Dataset:
    """Scan the class folders under `root`, then decode them into memory or stream them, as the budget allows."""
    workers = options.workers or folder.default_workers()
    split_dirs = folder.find_split_dirs(root) or {"train": root}
    scanned = {}
    classes = None
    for split, directory in split_dirs.items():
        classes, files, labels = folder.scan_classes(directory, classes)
        scanned[split] = (files, labels)
    all_files = [f for files, _ in scanned.values() for f in files]
    size, sizes, modes = folder.common_size(all_files, workers)
    if channels is None:
        channels = 1 if modes and set(modes) <= GREY_MODES else 3
    notes = []
    max_side = options.max_side
    if size is None:
        side = options.image_size or 224
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
    in_memory = decoded_bytes <= (options.budget if options.budget is not None else memory_budget())
    if not in_memory:
        notes.append(f"{decoded_bytes / 2**30:.1f} GiB decoded is over the memory budget; streaming from disk")
    splits, skipped = {}, []
    for split, (files, labels) in scanned.items():
        data, bad, _ = folder.load_folder_split(root, files, labels, channels, size, resize_to, in_memory, workers,
                                                options.reporter)
        if len(data) == 0:
            raise DataError(f"no readable images in {split_dirs[split]}", "every file failed to decode; run `cnnkit inspect-dataset --verify`")
        splits[split] = data
        skipped.extend(bad)
    return Dataset(spec.text, spec.name, classes, channels, size, splits, spec.kind, resize_to, skipped, notes,
                   files_fingerprint(root, all_files), root=root)


def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    return load_image_folder(spec.path, spec, options, channels=options.channels, resize_to=options.resize_to)


register_format(directory_format("folder", lambda path: True, load, image_root=lambda spec, data_dir: spec.path,
                                 priority=FALLBACK_PRIORITY))
