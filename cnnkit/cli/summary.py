"""cnnkit summary: a model's layers, output shapes and parameter counts (torchinfo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.limits import MAX_CLASSES
from cnnkit.cli.common import DataDirOption, JsonOption, ModelFileOption, handle_errors, print_json


@app.command(
    epilog="Examples:\n"
    '  cnnkit summary lenet\n'
    '  cnnkit summary cnn --dataset cifar10\n'
    '  cnnkit summary vgg16 --input-size 3,224,224 --classes 2 --freeze-backbone\n'
    '  cnnkit summary lenet --input-size 1,28,28 --explain\n'
    '  cnnkit summary --list',
)
@handle_errors
def summary(
    model: Annotated[Optional[str], typer.Argument(help="Model name or alias; not needed with --checkpoint or --list.", show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Summarise at this dataset's input size and class count.", show_default=False)] = None,
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="Input as C,H,W, e.g. 3,224,224.", show_default=False)] = None,
    classes: Annotated[Optional[int], typer.Option("--classes", min=1, max=MAX_CLASSES, help="Output classes (default: the dataset's, else 10).", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Summarise a trained model (checkpoint or run directory).", show_default=False)] = None,
    depth: Annotated[int, typer.Option("--depth", min=0, max=10, help="Nesting depth of the table.")] = 3,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="New head, frozen backbone: the counts finetune trains with.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Walk the conv and pool layers with (W - F + 2P) / S + 1 filled in.")] = False,
    list_all: Annotated[bool, typer.Option("--list", help="List the built-in models; `--list torchvision` or `--list timm` lists that zoo.")] = False,
    model_file: ModelFileOption = None,
    data_dir: DataDirOption = Path("data"),
    json_output: JsonOption = False,
) -> None:
    """Torchinfo's table for a model at the right input size: shapes, params, mult-adds, trainable vs frozen."""
    from cnnkit.errors import ModelError, UsageError
    from cnnkit.models import summary as core
    from cnnkit.reporting import Reporter

    if list_all:
        if model is not None:  # `--list torchvision`: the flag takes no value, so the zoo is MODEL
            rows = core.zoo_models(model.lower())
            print_json(rows) if json_output else _print_zoo(model.lower(), rows)
            return
        rows = core.registered_models()
        print_json(rows) if json_output else _print_models(rows)
        return
    if dataset is not None and input_size is not None:
        raise UsageError("--dataset and --input-size both set the input; give one of them")
    if checkpoint is not None:
        if dataset is not None or classes is not None:
            raise UsageError("a checkpoint knows its input and classes; drop --dataset/--classes", "override the input with --input-size C,H,W")
        fed = core.parse_input_size(input_size) if input_size else None
        from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

        saved = load_checkpoint(checkpoint)
        target = core.checkpoint_target(saved, model_from_checkpoint(saved, model_file), fed, freeze_backbone, model_file)
        if model is not None and core.get_spec(model).name != target.name:
            raise UsageError(f"the checkpoint holds '{target.name}', not '{model}'", "leave MODEL out with --checkpoint")
    elif model is None:
        raise UsageError("missing MODEL", "e.g. `cnnkit summary lenet`; list models with `cnnkit summary --list`")
    else:
        data_shape = None
        if dataset is not None:
            from cnnkit.data.resolve import load_dataset
            from cnnkit.hub.install import fetch_missing

            # budget=0: a folder is only scanned (headers), never decoded, for its shape.
            data = load_dataset(dataset, data_dir, budget=0, on_missing=fetch_missing)
            data_shape = (data.channels, tuple(data.size))
            classes = classes or len(data.classes)
        target = core.registry_target(model, core.parse_input_size(input_size) if input_size else None, data_shape, classes, freeze_backbone)

    channels, height, width = target.input_size
    walk = core.shape_walk(target.build((height, width)), target.input_size)
    document = {"explain": walk.to_dict()} if explain else {}
    if walk.problem is not None:
        side = core.working_side(target, channels, height)
        works = f"{channels}x{side}x{side} works (--input-size {channels},{side},{side})" if side else "no square input size up to 4x this one works"
        if explain:
            fixed = core.shape_walk(target.build(side), (channels, side, side)) if side else None
            if json_output:
                print_json({"model": target.name, **document, "working_input_size": [channels, side, side] if side else None})
            else:
                _print_walk(target.name, walk)
                if fixed is not None:
                    print(f"\nAt {side}x{side} every layer fits:")
                    _print_walk(target.name, fixed)
        raise ModelError(
            f"{target.name} cannot take a {channels}x{height}x{width} input: {walk.problem}",
            works + ("" if explain else "; add --explain to see the size at every layer"),
        )
    reporter = Reporter()
    for note in target.notes:
        reporter.note(f"note: {note}")
    stats = core.run_torchinfo(target.build((height, width)), target.input_size, depth)
    if json_output:
        print_json({**core.summary_document(target, stats), **document})
        return
    if explain:
        _print_walk(target.name, walk)
        print()
    print(core.table_text(stats))


def _print_walk(name: str, walk) -> None:
    """Plain aligned columns: a learner reads it in a terminal or a log, never wrapped."""
    from cnnkit.models.summary import FORMULA

    channels, height, width = walk.input_size
    rows = [("layer", "", "in", "out", "formula")]
    for step in walk.steps:
        out = "does not fit" if step.out_shape is None else "x".join(map(str, step.out_shape))
        rows.append((step.title, step.layer, "x".join(map(str, step.in_shape)), out, step.formula))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"{name} at {channels}x{height}x{width}: {FORMULA}")
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    if walk.problem:
        print(f"mismatch: {walk.problem}")


def _print_models(rows: list[dict]) -> None:
    from rich.table import Table

    from cnnkit.cli.inspect import wide_console

    table = Table(title="registered models")
    for column in ("model", "aliases", "native input", "params (at default input)", "pretrained weights"):
        table.add_column(column, justify="right" if column.startswith("params") else "left")
    for row in rows:
        native = f"{row['native_size']}x{row['native_size']}" if row["native_size"] else "any"
        default = "x".join(map(str, row["default_input"]))
        table.add_row(row["name"], ", ".join(row["aliases"]) or "-", native, f"{row['params']:,} ({default})", row["weights"] or "-")
    wide_console().print(table)
    print(OTHER_SOURCES)


OTHER_SOURCES = ("also: torchvision:NAME (`cnnkit summary --list torchvision`), timm:NAME (`--list timm`, "
                 'needs `pip install "cnnkit[timm]"`), and your own FILE.py:NAME or package.module:NAME')


def _print_zoo(zoo: str, rows: list[dict]) -> None:
    from rich.table import Table

    from cnnkit.cli.inspect import wide_console

    table = Table(title=f"{zoo} models ({len(rows)})")
    if zoo == "torchvision":
        for column in ("model", "native input", "params", "ImageNet acc@1", "weights"):
            table.add_column(column, justify="right" if column in ("params", "ImageNet acc@1") else "left")
        for row in rows:
            table.add_row(row["name"], f"{row['native_size']}x{row['native_size']}", f"{row['params']:,}" if row["params"] else "-",
                          f"{row['imagenet_acc1']}" if row["imagenet_acc1"] else "-", row["weights"])
    else:
        table.add_column("model")
        table.add_column("pretrained weights (tags)")
        for row in rows:
            table.add_row(row["name"], ", ".join(row["pretrained_tags"]) or "-")
    wide_console().print(table)
