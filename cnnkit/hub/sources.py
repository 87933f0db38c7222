"""What `cnnkit download` can fetch: the catalog's downloadable datasets and the ImageNet weights.

A dataset's files, sums and layout are its catalog entry's (cnnkit.data.catalog); the
ImageNet weights take their URLs from torchvision's weight enums. The table is a plain
dict built once (`sources()`); tests add or swap entries in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cnnkit.data.catalog import CatalogEntry, RemoteFile, catalog

# torch.hub's rule: the hex digits between the last "-" and the first "." of the
# file name are a prefix of the file's sha256 (hub.HASH_REGEX).
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


@dataclass(frozen=True)
class Source:
    """A weights file, laid out as the catalog entries are (layout "weights"; `folder` is under the torch hub dir)."""

    name: str
    layout: str
    description: str
    files: tuple[RemoteFile, ...]
    folder: str

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


def weights_remote_file(url: str, size: int | None = None) -> RemoteFile:
    """A weights file whose name carries its sha256 prefix, as torch.hub checks it.

    `size` comes from torchvision's `_file_size`, MB rounded to three decimals: approximate.
    """
    name = url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(name)
    return RemoteFile(name, (url,), sha256_prefix=match.group(1) if match and match.group(1) else None, size=size,
                      size_exact=False)


def _weights(model: str) -> Source:
    """The download of a model's ImageNet weights, from its spec's torchvision weights enum."""
    from cnnkit.models import get_spec

    entry = get_spec(model).require_weights()
    megabytes = entry.meta.get("_file_size")
    size = int(megabytes * 1024 * 1024) if megabytes else None
    return Source(f"weights:{model}", "weights", f"{model} ImageNet weights (torchvision)", (weights_remote_file(entry.url, size),), "checkpoints")


_TABLE: dict[str, CatalogEntry | Source] | None = None


def sources() -> dict[str, CatalogEntry | Source]:
    """Everything cnnkit knows how to download, keyed by dataset name or 'weights:<model>'."""
    global _TABLE
    if _TABLE is None:
        from cnnkit.models.registry import pretrained_models

        datasets = [entry for entry in catalog().values() if entry.downloadable]
        _TABLE = {source.name: source for source in [*datasets, *(_weights(model) for model in pretrained_models())]}
    return _TABLE


def dataset_names() -> list[str]:
    return [name for name, source in sources().items() if source.layout != "weights"]


def hub_dir() -> Path:
    """torch.hub's directory (honours TORCH_HOME); weights go to its checkpoints/ folder."""
    import torch.hub

    return Path(torch.hub.get_dir())
