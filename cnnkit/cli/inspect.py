"""cnnkit inspect-dataset: what is in a dataset, before training on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, JsonOption, QuietOption, Split, handle_errors, print_json, stdout_console
from cnnkit.cli.common import CacheDirOption, CacheOption

DEFAULT_SHOW = 16  # images in the grid when --out is given without --show


@app.command(
    "inspect-dataset",
    epilog="Examples:\n"
    '  cnnkit inspect-dataset mnist-sample\n'
    '  cnnkit inspect-dataset ./photos --verify\n'
    '  cnnkit inspect-dataset cifar10 --show 16 --out grid.png\n'
    '  cnnkit inspect-dataset mnist --json',
)
@handle_errors
def inspect_dataset(
    dataset: Annotated[str, typer.Argument(help="Catalog name, image folder or IDX directory.", show_default=False)],
    split: Annotated[Literal[Split.train, Split.test, Split.all], typer.Option("--split", case_sensitive=False, help="Which split to report.")] = Split.all,
    verify: Annotated[bool, typer.Option("--verify", help="Decode every file of an image folder; list corrupt, truncated and non-image files (exit 1 if any).")] = False,
    show: Annotated[Optional[int], typer.Option("--show", min=1, max=256, help="Draw N images, taken across the classes in turn, with their class names (needs --out).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help=f"PNG file for the grid; alone it draws --show {DEFAULT_SHOW}.", show_default=False)] = None,
    augment: Annotated[Optional[str], typer.Option("--augment", help="Draw the --show images augmented as training would (train's --augment syntax, e.g. rotate:15,flip:0.5), seeded by --seed.", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for --augment's draws.")] = 0,
    cache_dir: CacheDirOption = None,
    cache: CacheOption = True,
    data_dir: DataDirOption = Path("data"),
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Sizes, shape, classes and balance, first labels, pixel range, mean/std as a Normalize line."""
    from cnnkit.data.folder import default_workers
    from cnnkit.data.resolve import load_dataset
    from cnnkit.data.parse import image_root, parse_spec
    from cnnkit.data.stats import inspect_dataset as build_report
    from cnnkit.data.verify import verify_folder
    from cnnkit.errors import CnnkitError, DataError, UsageError
    from cnnkit.hub.install import fetch_missing
    from cnnkit.reporting import Reporter
    from cnnkit.viz.grid import plot_sample_grid, samples_across_classes

    if show is not None and out is None:
        raise UsageError("--show needs --out PNG to write the grid to", "e.g. --show 16 --out grid.png")
    if out is not None and show is None:  # a file was asked for: draw it, never exit 0 having written nothing
        show = DEFAULT_SHOW
    if augment is not None:
        from cnnkit.data.transforms import parse_augment

        if show is None:
            raise UsageError("--augment draws the --show images augmented; it needs --show N --out PNG",
                             f"e.g. --show 16 --augment {augment} --out grid.png")
        parse_augment(augment)  # a bad spec fails before the data is read
    reporter = Reporter(quiet=quiet or json_output)
    workers = default_workers()
    spec = parse_spec(dataset)
    root = image_root(spec, data_dir)

    checked = None
    if verify:
        if root is None:
            reporter.note("note: nothing to verify file by file; IDX and catalog tensors are validated when read")
        else:
            checked = verify_folder(root, workers, reporter)
    try:
        data = load_dataset(spec, data_dir, workers=workers, reporter=reporter, on_missing=fetch_missing,
                            cache_dir=cache_dir, cache=cache)
    except CnnkitError:
        if checked is not None and not json_output:
            _print_verify(checked)
        raise
    names = [n for n in ("train", "test") if n in data.splits] if split is Split.all else [split.value]
    report = build_report(data, names, root, workers, reporter)
    if checked is not None:
        report["verify"] = checked.to_dict()
    if show is not None:
        images, labels = samples_across_classes(data.split(names[0]), data.channels, data.size, show)
        title = f"{data.name}: {len(images)} images of {names[0]}, across its classes"
        if augment:
            from cnnkit.data.transforms import augment_uint8

            images, title = augment_uint8(images, augment, seed), f"{title}, --augment {augment}"
            report["augment"] = augment
        report["grid"] = str(plot_sample_grid(images, labels, data.classes, out, title))

    if json_output:
        print_json(report)
    elif quiet:
        _print_essentials(report)
    else:
        _print_report(report)
        if checked is not None:
            _print_verify(checked)
        if "grid" in report:
            print(report["grid"])
    for note in report["notes"]:
        reporter.note(f"note: {note}")
    for warning in report["warnings"]:
        reporter.warn(warning + ("; --verify lists them" if "skipped" in warning and checked is None else ""))
    if checked is not None and not checked.ok:
        raise DataError(
            f"{len(checked.problems)} bad file(s) in {checked.root}",
            "remove or replace them; training skips unreadable images with a warning",
        )


def wide_console():
    """stdout console that does not wrap tables at 80 columns when piped into a file."""
    console = stdout_console()
    if not console.is_terminal:
        console.width = 160
    return console


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + (",)" if len(values) == 1 else ")")


def _spaced(values: list[float]) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def _print_essentials(report: dict) -> None:
    """--quiet: the dataset in one line, the Normalize line and the grid's path; no tables."""
    channels, (height, width) = report["channels"], report["size"]
    samples = ", ".join(f"{name} {part['samples']:,}" for name, part in report["splits"].items())
    norm = report["normalize"]
    print(f"{report['dataset']}: {len(report['classes'])} classes, {channels}x{height}x{width}, {samples}")
    print(f"Normalize(mean={_floats(norm['mean'])}, std={_floats(norm['std'])})")
    if "grid" in report:
        print(report["grid"])


def _print_report(report: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    console = wide_console()
    channels, (height, width) = report["channels"], report["size"]
    console.print(Text.assemble(
        (report["dataset"], "bold"),
        f" ({report['kind']}): {len(report['classes'])} classes, "
        f"images {channels}x{height}x{width} uint8 (ToTensor gives float32 in [0, 1])",
    ))
    splits = report["splits"]
    table = Table(title="splits")
    for column in ("split", "samples", "min", "max", "mean", "std"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, part in splits.items():
        low = "-" if part["min"] is None else f"{part['min']:.1f}"
        high = "-" if part["max"] is None else f"{part['max']:.1f}"
        table.add_row(name, f"{part['samples']:,}", low, high, _spaced(part["mean"]), _spaced(part["std"]))
    console.print(table)

    classes = Table(title="classes")
    classes.add_column("label", justify="right")
    classes.add_column("class")
    for name in splits:
        classes.add_column(name, justify="right")
    for label, class_name in enumerate(report["classes"]):
        classes.add_row(str(label), class_name, *(f"{splits[n]['class_counts'][class_name]:,}" for n in splits))
    console.print(classes)
    for name, part in splits.items():
        console.print(f"first labels ({name}): {part['first_labels']}")
    for name, info in report.get("files", {}).items():
        console.print(_describe_files(name, info))
    norm = report["normalize"]
    console.print(f"# per-channel mean/std of the {norm['from']} split, for transforms.Normalize")
    console.print(f"Normalize(mean={_floats(norm['mean'])}, std={_floats(norm['std'])})")


def _describe_files(split: str, info: dict) -> str:
    if not info.get("readable_headers"):
        return f"files ({split}): {info['files']}, none readable as images"
    width, height = info["width"], info["height"]
    if info["distinct_sizes"] == 1:
        sizes = f"all {info['common_sizes'][0][0]}"
    else:
        common = ", ".join(f"{size} ({count})" for size, count in info["common_sizes"][:3])
        sizes = (
            f"{info['distinct_sizes']} sizes, width {width['min']}-{width['max']} (mean {width['mean']}), "
            f"height {height['min']}-{height['max']} (mean {height['mean']}); most common {common}"
        )
    modes = ", ".join(f"{mode} {count}" for mode, count in info["modes"].items())
    return f"files ({split}): {info['files']}; sizes: {sizes}; modes: {modes}"


def _print_verify(result) -> None:
    console = wide_console()
    if result.ok:
        console.print(f"verify: all {result.checked} image files in {result.root} decode")
        return
    console.print(f"verify: {len(result.problems)} bad file(s) of {result.checked} image files in {result.root}:")
    for path, reason in result.problems:
        console.print(f"  {path}: {reason}")
