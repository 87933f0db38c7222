"""The one parser of dataset specs: a catalog name or a directory becomes a DatasetSpec.

Each registered format (cnnkit.data.formats, imported here so the built-ins are
registered) is asked in priority order; `load_dataset` (cnnkit.data.resolve) hands
the spec to its format.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import cnnkit.data.formats  # noqa: F401  registers the built-in formats
from cnnkit.data.spec import DatasetFormat, DatasetSpec, registered, registered_format
from cnnkit.errors import DataError, UsageError


def get_format(name: str) -> DatasetFormat:
    return registered_format(name)


def checked_spec(spec: str) -> str:
    """The spec, refused when empty: `--dataset "$DATA"` with DATA unset would mean the current folder."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(
            "the dataset is an empty string",
            "name a catalog dataset, an image folder or an IDX directory (an unset shell variable gives ''); "
            "for the current folder write .",
        )
    return spec


def parse_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """The DatasetSpec for a catalog name or a directory; an unknown spec lists the close catalog names."""
    if isinstance(spec, DatasetSpec):
        return spec
    text = checked_spec(spec)
    for fmt in registered():
        parsed = fmt.claim(text)
        if parsed is not None:
            return parsed
    if Path(text).expanduser().exists():
        raise DataError(f"dataset '{spec}' is a file, not a directory or catalog name",
                        "pass a folder of images, an IDX directory or a catalog name")
    from cnnkit.data.catalog import list_datasets

    names = list_datasets()
    close = difflib.get_close_matches(text.strip().lower(), names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"use a folder, an IDX directory or one of: {', '.join(names)}"
    raise DataError(f"unknown dataset '{spec}': not a catalog name and no such directory", hint)


def parse_recorded_spec(text: str, kind: str | None) -> DatasetSpec:
    """The spec a checkpoint recorded with its format: a directory that has gone is named as such."""
    if kind not in (None, "catalog") and not Path(text).expanduser().exists():  # a directory, or a file (.npz)
        raise DataError(f"the dataset this checkpoint was trained on is no longer at {text}",
                        "pass the dataset with --dataset")
    return parse_spec(text)


def image_root(spec: str | DatasetSpec, data_dir: str | Path) -> Path | None:
    """The folder of image files behind a spec, or None for datasets held as tensors (IDX, MNIST, CIFAR)."""
    parsed = parse_spec(spec)
    return get_format(parsed.kind).image_root(parsed, Path(data_dir))
