"""cnnkit export-idx: write a dataset as MNIST-format IDX files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import (
    CacheDirOption, CacheOption, DataDirOption, JsonOption, QuietOption, SeedOption, Split, handle_errors, print_json,
)


@app.command(
    "export-idx",
    epilog="Examples:\n"
    '  cnnkit export-idx mnist-sample --out mnist-idx\n'
    '  cnnkit export-idx ./photos --out photos-idx --resize 28 --grayscale --gzip\n'
    '  cnnkit train cnn --dataset mnist-idx',
)
@handle_errors
def export_idx(
    dataset: Annotated[str, typer.Argument(help="Catalog name, image folder or IDX directory.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the IDX files into.", show_default=False)],
    split: Annotated[Literal[Split.train, Split.test, Split.all], typer.Option("--split", case_sensitive=False, help="Which split(s) to write (train -> train-*, test -> t10k-*).")] = Split.all,
    gzip: Annotated[bool, typer.Option("--gzip", help="Write .gz files, as MNIST is distributed.")] = False,
    resize: Annotated[Optional[int], typer.Option("--resize", min=1, max=4096, help="Resize images to N x N.", show_default=False)] = None,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Convert colour images to grey (IDX3, readable by torchvision's MNIST).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Write only N images of each split, taken across the classes in a random order (--seed).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the export already in --out, all of its IDX files (swapped in once the new one is complete).")] = False,
    seed: SeedOption = 0,
    cache_dir: CacheDirOption = None,
    cache: CacheOption = True,
    data_dir: DataDirOption = Path("data"),
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write train-*/t10k-* images-idx and labels-idx files plus classes.txt; prints the paths written."""
    from cnnkit.data.export_idx import export_idx as write_all, refuse_to_overwrite
    from cnnkit.data.resolve import load_dataset
    from cnnkit.hub.install import fetch_missing
    from cnnkit.reporting import Reporter

    reporter = Reporter(quiet=quiet or json_output)
    splits = ["train", "test"] if split is Split.all else [split.value]
    if not force:  # refuse before spending time on decoding
        refuse_to_overwrite(out, splits)
    data = load_dataset(dataset, data_dir, image_size=resize, reporter=reporter, on_missing=fetch_missing,
                        cache_dir=cache_dir, cache=cache)
    if split is Split.all:
        splits = [name for name in splits if name in data.splits]

    def report(record: dict) -> None:
        shape = "x".join(map(str, record["shape"]))
        reporter.note(f"wrote {record['path']} ({shape}, {record['bytes']:,} bytes)")

    written = write_all(data, out, splits, compress=gzip, resize=resize, grayscale=grayscale, limit=limit, force=force, on_file=report, seed=seed)
    if json_output:
        print_json({"dataset": data.spec, "out": str(out), "classes": data.classes, "files": written})
    else:
        for record in written:
            print(record["path"])
