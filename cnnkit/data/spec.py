"""What a dataset format is, and the registry formats join.

A spec is what `--dataset` says: a catalog name, or a directory in one of the
formats (IDX, ImageFolder, ...). A new format is one module in cnnkit/data/formats/
that calls `register_format`, plus its import in cnnkit/data/formats/__init__.py;
cnnkit.data.parse turns a spec into a `DatasetSpec` by asking the registered formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cnnkit.reporting import QUIET, Reporter
from cnnkit.sizes import SizeLike

if TYPE_CHECKING:
    from cnnkit.data.dataset import Dataset

# Priorities: lower is asked first. Catalog names win over a folder of the same name
# (`--dataset mnist` beside a ./mnist folder means the catalog); the ImageFolder
# format claims any directory, so it is asked last.
CATALOG_PRIORITY = 0
DEFAULT_PRIORITY = 50
FALLBACK_PRIORITY = 100


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec: which format reads it, its short name and, for directory formats, where it is."""

    kind: str  # the format's name: "catalog", "idx", "folder", ...
    name: str  # a catalog name, or the directory's own name (for run directories)
    path: Path | None = None  # the absolute directory; None for catalog names

    @property
    def text(self) -> str:
        """The spec as checkpoints record it: a catalog name or an absolute path."""
        return str(self.path) if self.path is not None else self.name


@dataclass
class LoadOptions:
    """How to load a dataset, whatever its format.

    `image_size` (one side or (H, W)) is the size folders of mixed image sizes are decoded
    to (the model's input size). `channels` forces grey (1) or RGB (3) for folders.
    `max_size` (one side or (H, W)): a folder of one image size larger than this in both
    height and width is decoded to it (training passes the model's input size; export-idx
    and inspect keep the images as they are). `on_missing(entry, data_dir)` is called when a catalog dataset is not in
    the data root and may install it; without it a missing dataset raises DatasetMissing.
    `cache_dir`, `cache` and `decode` are described where they are declared.
    """

    data_dir: Path = Path("data")
    image_size: SizeLike | None = None
    channels: int | None = None
    resize_to: int | None = None
    budget: int | None = None
    workers: int | None = None
    reporter: Reporter = QUIET
    max_size: SizeLike | None = None
    on_missing: Callable | None = None
    cache_dir: str | None = None  # None: CNNKIT_CACHE, else the XDG cache (cnnkit.data.cache.cache_root)
    cache: bool = True  # False (--no-cache): decode every time, read and write no cache
    decode: bool = True  # False: folders come back as FileSplits and Dataset.decoder decodes the chosen parts


@dataclass(frozen=True)
class DatasetFormat:
    """One way a spec names a dataset: `claim` recognises it, `load` reads it.

    `claim(text)` returns a DatasetSpec when the spec is this format's, else None.
    `image_root(spec, data_dir)` is the folder of image files behind it, for
    `inspect-dataset --verify`; None for formats held as tensors.
    """

    name: str
    claim: Callable[[str], DatasetSpec | None]
    load: Callable[[DatasetSpec, LoadOptions], "Dataset"]
    image_root: Callable[[DatasetSpec, Path], Path | None] = field(default=lambda spec, data_dir: None)
    priority: int = DEFAULT_PRIORITY


_FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    if fmt.name in _FORMATS:
        raise ValueError(f"dataset format '{fmt.name}' is registered twice")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    _FORMATS.pop(name, None)


def directory_format(name: str, detect: Callable[[Path], bool], load, *, image_root=None,
                     priority: int = DEFAULT_PRIORITY) -> DatasetFormat:
    """A format that reads a directory `detect` accepts; the spec records its absolute path."""

    def claim(text: str) -> DatasetSpec | None:
        path = Path(text).expanduser()
        if path.is_dir() and detect(path):
            path = path.resolve()
            return DatasetSpec(name, path.name, path)
        return None

    return DatasetFormat(name, claim, load, image_root or (lambda spec, data_dir: None), priority)


def registered() -> list[DatasetFormat]:
    """The registered formats in the order a spec is offered to them."""
    return sorted(_FORMATS.values(), key=lambda fmt: fmt.priority)  # stable: ties keep registration order


def registered_format(name: str) -> DatasetFormat:
    return _FORMATS[name]
