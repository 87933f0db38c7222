"""A `.npz` file in Keras' `mnist.npz` layout: `x_train`, `y_train` and optionally `x_test`, `y_test`.

Images are uint8 (N, H, W) or (N, H, W, C); labels are integers (N,) (or (N, 1), as Keras' CIFAR keeps
them). Tutorial 004 reads MNIST this way. Every array's header is read and checked (dtype, shape, size
against cnnkit.limits and the memory budget, and against the bytes the file really holds) before
numpy allocates anything, and nothing is unpickled: an array of Python objects is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, TensorSplit, files_fingerprint, highest_label, tensor_split
from cnnkit.data.spec import DatasetSpec, LoadOptions, register_format, DatasetFormat
from cnnkit.errors import DataError
from cnnkit.limits import MAX_CHANNELS, MAX_SIDE

SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
HINT = "expected Keras' mnist.npz layout: x_train, y_train (and x_test, y_test), images uint8 (N, H, W[, C])"


def claim(text: str) -> DatasetSpec | None:
    path = Path(text).expanduser()
    if path.suffix.lower() == ".npz" and path.is_file():
        path = path.resolve()
        return DatasetSpec("npz", path.stem, path)
    return None


def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    from cnnkit.data.memory import memory_budget

    path = spec.path
    headers = read_headers(path)
    splits_keys = {split: keys for split, keys in SPLITS.items() if keys[0] in headers or keys[1] in headers}
    if "train" not in splits_keys:
        raise DataError(f"{path} has no x_train/y_train (it holds: {', '.join(sorted(headers)) or 'nothing'})", HINT)
    budget = options.budget if options.budget is not None else memory_budget()
    total = 0
    for split, (x_key, y_key) in splits_keys.items():
        for key in (x_key, y_key):
            if key not in headers:
                raise DataError(f"{path} has {x_key if key == y_key else y_key} but no {key}", HINT)
        total += _check_images(path, x_key, headers[x_key]) + _check_labels(path, y_key, headers[y_key], headers[x_key][0][0])
    if total > budget:
        raise DataError(f"{path} holds {total:,} bytes of arrays, more than the memory budget of {budget:,}",
                        "raise --memory-budget (or CNNKIT_MEMORY_BUDGET) if the machine has the memory")
    splits = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for split, (x_key, y_key) in splits_keys.items():
                splits[split] = tensor_split(archive[x_key], archive[y_key])
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} cannot be read as .npz: {exc}", HINT) from None
    classes = _classes(path, splits)
    dataset = Dataset.of_tensors(spec, splits, classes)
    dataset.fingerprint = files_fingerprint(path.parent, [path])
    return dataset


def read_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} from each member's .npy header, checked against the member's real size."""
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise ValueError(f"unknown .npy version {version}")
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _fortran, dtype = read(member, max_header_size=10_000)
                    header_end = member.tell()
                name = info.filename.removesuffix(".npy")
                if dtype.hasobject:
                    raise DataError(f"{path}: {name} holds Python objects (a pickle); cnnkit loads only plain arrays",
                                    "save the arrays with numpy as uint8 images and integer labels")
                if any(side < 0 for side in shape) or info.file_size != header_end + int(np.prod(shape, dtype=object)) * dtype.itemsize:
                    raise DataError(f"{path}: {name}'s header says {shape} {dtype}, which is not the size of the data it holds",
                                    "the file is truncated or damaged")
                out[name] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})", HINT) from None
    return out


def _check_images(path: Path, key: str, header) -> int:
    shape, dtype = header
    ok = dtype == np.uint8 and len(shape) in (3, 4) and (len(shape) == 3 or shape[3] in (1, 3))
    if not ok:
        raise DataError(f"{path}: {key} is {dtype} of shape {shape}; expected uint8 (N, H, W) or (N, H, W, 1|3)", HINT)
    if max(shape[1:3]) > MAX_SIDE or (len(shape) == 4 and shape[3] > MAX_CHANNELS) or min(shape[1:3]) < 1:
        raise DataError(f"{path}: {key} images are {shape[1]}x{shape[2]}; cnnkit takes sides of 1 to {MAX_SIDE} pixels")
    return int(np.prod(shape, dtype=object))


def _check_labels(path: Path, key: str, header, images: int) -> int:
    shape, dtype = header
    if not np.issubdtype(dtype, np.integer) or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise DataError(f"{path}: {key} is {dtype} of shape {shape}; class labels are integers of shape (N,)", HINT)
    if shape[0] != images:
        raise DataError(f"{path}: {key} has {shape[0]} labels for {images} images")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _classes(path: Path, splits: dict[str, TensorSplit]) -> list[str]:
    return [str(i) for i in range(highest_label(splits, f"the labels in {path}", "labels array") + 1)]


register_format(DatasetFormat("npz", claim, load))
