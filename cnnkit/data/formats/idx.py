"""A directory holding an IDX pair (`*images-idx3-ubyte[.gz]`, `*labels-idx1-ubyte[.gz]`)."""

from __future__ import annotations

from cnnkit.data.dataset import Dataset, files_fingerprint
from cnnkit.data.idx_dir import idx_dir_files, is_idx_dir, load_idx_dir
from cnnkit.data.spec import DatasetSpec, LoadOptions, directory_format, register_format


def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    splits, classes = load_idx_dir(spec.path)
    dataset = Dataset.of_tensors(spec, splits, classes)
    dataset.fingerprint = files_fingerprint(spec.path, idx_dir_files(spec.path))
    return dataset


register_format(directory_format("idx", is_idx_dir, load))
