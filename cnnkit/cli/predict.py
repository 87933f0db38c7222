"""cnnkit predict: top-k classes for image files, folders and glob patterns."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DeviceOption, ModelFileOption, JsonOption, handle_errors, print_json, stdout_console

CSV_COLUMNS = ("path", "rank", "label", "index", "probability", "error")


@app.command(
    epilog="Examples:  cnnkit predict digit.png --model checkpoints/cnn-mnist-sample  |  "
    "cnnkit predict photos/ 'more/**/*.jpg' --model run/best.pt --top-k 3 --csv > predictions.csv  |  "
    "cnnkit predict cat.jpg --model mobilenet_v2 --json",
)
@handle_errors
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, directories (searched recursively) and glob patterns.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="A checkpoint, a run directory, or the name of a model with ImageNet weights (`cnnkit summary --list` shows them).", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many classes to list per image.")] = 5,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV: one row per image and rank.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Processes decoding images ahead of the model; helps with large photos on idle cores. 0: decode in this process.")] = 0,
    model_file: ModelFileOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Predict the top-k classes of images with a trained checkpoint or an ImageNet model."""
    from cnnkit.errors import CnnkitError, UsageError

    if json_output and csv_output:
        raise UsageError("--json and --csv are alternatives; pass one of them")
    from cnnkit.engine.device import resolve_device
    from cnnkit.engine.predict import collect_inputs, open_classifier, plan_batches, predict_files
    from cnnkit.reporting import Reporter

    paths = collect_inputs(inputs)
    classifier = open_classifier(model, resolve_device(device), model_file)
    plan = plan_batches(len(paths), len(classifier.classes), top_k=top_k, batch_size=batch_size, workers=workers)
    reporter = Reporter()
    for note in plan.notes:
        reporter.note(f"note: {note}")

    def warn(failed) -> None:
        reporter.warn(f"cannot read image {failed.path}: {failed.error}")

    predictions = predict_files(classifier, paths, top_k=plan.top_k, batch_size=plan.batch_size, workers=plan.workers,
                                on_error=warn)
    # A reader that leaves early (`| head`) is the app's StdoutGuard's to handle, as for every command.
    records = _write(predictions, classifier.classes, plan.top_k, json_output, csv_output)
    failed = sum("error" in r for r in records)
    if failed:
        raise CnnkitError(f"{failed} of {len(records)} inputs could not be read (see the warnings above)")


def _write(predictions, classes: list[str], top_k: int, json_output: bool, csv_output: bool) -> list[dict]:
    from cnnkit.engine.predict import prediction_record

    records = []
    if csv_output:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
    for prediction in predictions:
        record = prediction_record(prediction, classes)
        records.append(record)
        if csv_output:  # streamed, so a pipe sees rows while a large folder is still running
            writer.writerows(_csv_rows(record))
    if json_output:
        print_json(records)
    elif not csv_output:
        _print_table(records, top_k)
    sys.stdout.flush()
    return records


def _csv_rows(record: dict) -> list[tuple]:
    if "error" in record:
        return [(record["path"], "", "", "", "", record["error"])]
    return [(record["path"], rank, p["label"], p["index"], f"{p['probability']:.6f}", "")
            for rank, p in enumerate(record["predictions"], 1)]


def _print_table(records: list[dict], k: int) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    # Paths get room first; the probability columns are short and wrap well.
    table.add_column("path", overflow="fold", min_width=min(40, max((len(r["path"]) for r in records), default=4)))
    for rank in range(1, k + 1):
        table.add_column(f"top-{rank}")
    for record in records:
        if "error" in record:
            table.add_row(Text(record["path"]), Text(f"error: {record['error']}", style="red"), *[""] * (k - 1))
        else:
            cells = [Text(f"{p['label']} ({p['probability']:.2%})") for p in record["predictions"]]
            table.add_row(Text(record["path"]), *cells)
    stdout_console().print(table)
