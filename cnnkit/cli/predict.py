"""cnnkit predict: top-k classes for image files, folders and glob patterns."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DeviceOption, ModelFileOption, JsonOption, handle_errors, print_json, stdout_console

CSV_COLUMNS = ("path", "rank", "label", "index", "probability", "error")
LOG_LINES = 4  # without a terminal: a line at each quarter of the inputs, for runs of more than LOG_MIN_BATCHES
LOG_MIN_BATCHES = 4


@app.command(
    epilog="Examples:\n"
    '  cnnkit predict digit.png --model checkpoints/cnn-mnist-sample\n'
    "  cnnkit predict photos/ 'more/**/*.jpg' --model run/best.pt --top-k 3 --csv \\\n"
    '      > predictions.csv\n'
    '  cnnkit predict cat.jpg --model mobilenet_v2 --json',
)
@handle_errors
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, directories (searched recursively) and glob patterns.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="A checkpoint, a run directory, or the name of a model with ImageNet weights (`cnnkit summary --list` shows them).", show_default=False)],
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, help="How many classes to list per image (default 5; with --csv 1: one row per image, its top class).", show_default=False)] = None,
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
    from cnnkit.engine.predict import (
        DEFAULT_TOP_K, collect_inputs, open_classifier, plan_batches, predict_files, prediction_record,
    )
    from cnnkit.reporting import Reporter

    paths = collect_inputs(inputs)
    classifier = open_classifier(model, resolve_device(device), model_file)
    if top_k is None:  # the default is no request: no note that a 2-class model has fewer than 5 classes
        # (CSV gives one row per image, its top class, unless --top-k is given)
        top_k = 1 if csv_output else min(DEFAULT_TOP_K, len(classifier.classes))
    plan = plan_batches(len(paths), len(classifier.classes), top_k=top_k, batch_size=batch_size, workers=workers)
    reporter = Reporter()
    for note in plan.notes:
        reporter.note(f"note: {note}")

    def warn(failed) -> None:
        reporter.warn(f"cannot read image {failed.path}: {failed.error}")

    predictions = predict_files(classifier, paths, top_k=plan.top_k, batch_size=plan.batch_size, workers=plan.workers,
                                on_error=warn)
    # A reader that leaves early (`| head`) is the app's StdoutGuard's to handle, as for every command.
    with reporter.task(f"predicting {len(paths):,} images", len(paths)) as advance:
        shown = _with_progress(predictions, len(paths), plan.batch_size, reporter, advance)
        records = _write_csv(shown, classifier.classes) if csv_output else [
            prediction_record(prediction, classifier.classes) for prediction in shown]
    if json_output:  # tables and JSON come whole, after the bar has gone
        print_json(records)
    elif not csv_output:
        _print_table(records, plan.top_k)
    failed = sum("error" in r for r in records)
    if failed:
        raise CnnkitError(f"{failed} of {len(records)} inputs could not be read (see the warnings above)")


def _with_progress(predictions, total: int, batch_size: int, reporter, advance):
    """Each prediction, advancing the bar on a terminal; in a log, a plain line at each quarter of a long run.

    On stderr only: stdout is the table, JSON or CSV a script reads.
    """
    started = time.perf_counter()
    marks = {round(total * i / LOG_LINES) for i in range(1, LOG_LINES + 1)}
    log = not reporter.live and total > LOG_MIN_BATCHES * batch_size
    for done, prediction in enumerate(predictions, 1):
        yield prediction
        advance()
        if log and done in marks:
            seconds = time.perf_counter() - started
            reporter.note(f"predicted {done:,} of {total:,} images ({done / total:.0%}) in {seconds:.1f}s")


def _write_csv(predictions, classes: list[str]) -> list[dict]:
    """Rows as each prediction comes (a pipe sees them while a large folder is still running); returns the records."""
    import csv

    from cnnkit.engine.predict import prediction_record

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    records = []
    for prediction in predictions:
        record = prediction_record(prediction, classes)
        records.append(record)
        writer.writerows(_csv_rows(record))
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
