"""Load a dataset spec (catalog name, image folder, IDX directory, ...) into a Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cnnkit.data.dataset import Dataset
from cnnkit.data.parse import get_format, parse_spec
from cnnkit.data.spec import DatasetSpec, LoadOptions
from cnnkit.reporting import QUIET, Reporter
from cnnkit.sizes import SizeLike


def load_dataset(
    spec: str | DatasetSpec,
    data_dir: str | Path = "data",
    *,
    image_size: SizeLike | None = None,
    channels: int | None = None,
    resize_to: int | None = None,
    budget: int | None = None,
    workers: int | None = None,
    reporter: Reporter = QUIET,
    max_size: SizeLike | None = None,
    on_missing: Callable | None = None,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    decode: bool = True,
) -> Dataset:
    """Parse the spec and let its format load it; the options are described on LoadOptions.

    A catalog dataset that is not in `data_dir` raises DatasetMissing unless `on_missing`
    (e.g. cnnkit.hub.install.fetch_missing) installs it.
    """
    parsed = parse_spec(spec)
    options = LoadOptions(Path(data_dir), image_size, channels, resize_to, budget, workers, reporter, max_size,
                          on_missing, None if cache_dir is None else str(cache_dir), cache, decode)
    return get_format(parsed.kind).load(parsed, options)
