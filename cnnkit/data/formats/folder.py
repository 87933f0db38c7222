"""A directory in ImageFolder layout: class folders, directly or under train/ and test/ (or val/).

It claims any directory no other format claims, so it is asked last.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnkit.data import folder
from cnnkit.data.cache import usable_cache_dir
from cnnkit.data.dataset import Dataset, FileSplit, files_fingerprint
from cnnkit.data.memory import memory_budget
from cnnkit.data.spec import FALLBACK_PRIORITY, DatasetSpec, LoadOptions, directory_format, register_format
from cnnkit.errors import DataError
from cnnkit.reporting import human_bytes
from cnnkit.sizes import pair, size_text

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
    max_size = pair(options.max_size) if options.max_size is not None else None
    if size is None:
        size = pair(options.image_size or 224)
        if len(sizes) > 1:
            notes.append(f"images come in {len(sizes)} sizes; decoding them to {size_text(size)}")
    elif max_size is not None and size[0] > max_size[0] and size[1] > max_size[1]:
        # Photos all of one large size: held at full resolution they would take GBs for a
        # 32x32 model. Decode each straight to the model's size, as mixed sizes are.
        notes.append(f"decoding {size_text(size)} images at {size_text(max_size)}, the model's input size")
        size = max_size
    else:
        resize_to = None  # images of one small size are kept as they are; the device resizes batches
    dataset = Dataset(spec.text, spec.name, classes, channels, size, {}, spec.kind, resize_to, [], notes,
                      files_fingerprint(root, all_files), root=root)
    files = {split: FileSplit(files, torch.tensor(labels, dtype=torch.long), resize_to)
             for split, (files, labels) in scanned.items()}
    if not options.decode:
        # The caller picks first (--limit) and decodes only what it picked, through dataset.decoder.
        dataset.splits = files
        dataset.decoder = lambda chosen: decode_chosen(dataset, chosen, options, workers, roles=True)
        return dataset
    dataset.splits = decode_chosen(dataset, files, options, workers, labels=split_dirs)
    return dataset


def decode_chosen(dataset: Dataset, chosen: dict, options: LoadOptions, workers: int, *, roles: bool = False,
                  labels: dict | None = None) -> dict:
    """Each chosen FileSplit decoded into memory (through the cache), or kept streamed over the memory budget.

    Notes and unreadable files are added to the dataset's. `roles`: the splits are parts --limit chose
    from one folder, so each gets a cache of its own name.
    """
    size, channels = dataset.size, dataset.channels
    decoded_bytes = sum(len(split) for split in chosen.values()) * channels * size[0] * size[1]
    in_memory = decoded_bytes <= (options.budget if options.budget is not None else memory_budget())
    if not in_memory:
        dataset.notes.append(f"{human_bytes(decoded_bytes)} decoded is over the memory budget; streaming from disk")
    use_cache = in_memory and options.cache  # --no-cache, or a stream: no cache
    cache_dir = usable_cache_dir(options.cache_dir, options.reporter, "decode", "decoding") if use_cache else None
    written = []  # (images, bytes) of each new cache
    splits = {}
    for name, split in chosen.items():
        where = (labels or {}).get(name, dataset.root)
        label = f"{dataset.name} ({name})" if roles else where.name
        data, bad, _ = folder.load_folder_split(label, split.files, split.labels.tolist(), channels, size,
                                                split.resize_to, in_memory, workers, options.reporter, cache_dir,
                                                role=name if roles else "", on_cached=lambda *w: written.append(w))
        if len(data) == 0:
            raise DataError(f"no readable images in {where}", "every file failed to decode; run `cnnkit inspect-dataset --verify`")
        splits[name] = data
        dataset.skipped.extend(bad)
    if written:  # said once per load, however many splits: the disk it took, and where
        images, size_on_disk = (sum(column) for column in zip(*written))
        dataset.notes.append(f"cached {images:,} decoded images ({human_bytes(size_on_disk)}) in {cache_dir}")
    return splits


def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    return load_image_folder(spec.path, spec, options, channels=options.channels, resize_to=options.resize_to)


register_format(directory_format("folder", lambda path: True, load, image_root=lambda spec, data_dir: spec.path,
                                 priority=FALLBACK_PRIORITY))
