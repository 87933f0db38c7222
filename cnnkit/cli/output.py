"""Printing results on stdout: tables for people, JSON and bare paths for scripts."""

from __future__ import annotations

import os

from cnnkit.cli.common import print_json, stdout_console
from cnnkit.reporting import Reporter


def _percent(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def print_run_summary(summary: dict, *, json_output: bool, quiet: bool) -> None:
    """The run's summary table, then the run directory as the last line (alone with --quiet)."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    summary = with_tutorial_numbers(summary)
    if json_output:
        print_json(summary)
        return
    if not quiet:
        from rich.table import Table

        if summary.get("already_finished") and not summary.get("stopped_early"):  # an early stop said so itself
            Reporter().note(f"run already finished ({summary['epochs']} epochs); pass --epochs N to train further")
        table = Table(title=f"{summary['model']} on {summary['dataset']}", show_header=False)
        rows = [
            ("epochs", str(summary["epochs"])),
            ("validation accuracy", f"{_percent(summary['val_acc'])} (best {_percent(summary['best_val_acc'])}, on {summary['validated_on']})"),
            ("validation loss", "-" if summary["val_loss"] is None else f"{summary['val_loss']:.4f}"),
            ("train accuracy", _percent(summary["train_acc"])),
            ("training time", f"{summary['train_seconds']:.1f}s at {summary['images_per_s'] or 0:,.0f} images/s"),
            ("precision", "bf16 autocast" if summary.get("amp") else "float32"),
        ]
        balanced, more = _feedback_rows(summary)
        rows[2:2] = balanced
        rows += more
        for key, label in (("skipped_images", "skipped images"), ("global_batch", "global batch")):
            if summary.get(key) and (key != "global_batch" or summary.get("processes", 1) > 1):
                rows.append((label, str(summary[key])))
        for key, value in rows:
            table.add_row(key, value)
        stdout_console().print(table)
        print_tutorial_numbers(summary.get("tutorial"))
    print(summary["run_dir"], flush=True)


# ---- a recipe run beside the tutorial's printed numbers ----
def with_tutorial_numbers(summary: dict) -> dict:
    """The summary, with `tutorial` (the recipe's printed val accuracy per epoch beside the run's) for a recipe run."""
    from cnnkit.engine.recipes import run_beside_tutorial

    beside = run_beside_tutorial(summary["run_dir"]) if summary.get("run_dir") else None
    return {**summary, "tutorial": beside} if beside else summary


def print_tutorial_numbers(beside: dict | None) -> None:
    """On stderr, with the progress: the table on stdout stays the run's own."""
    if not beside:
        return
    from rich.table import Table

    from cnnkit.cli.common import _stderr_console

    title = f"recipe {beside['recipe']}: {beside['tutorial']}" + (f" ({beside['note']})" if beside["note"] else "")
    table = Table(title=title)
    for column in ("epoch", "tutorial val acc", "this run"):
        table.add_column(column, justify="right")
    for row in beside["epochs"]:
        table.add_row(str(row["epoch"]), _percent(row["tutorial_val_acc"]), _percent(row["run_val_acc"]))
    _stderr_console().print(table)
# ---- balanced accuracy, early stop and device in the run summary --------------------------------
def _feedback_rows(summary: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(the row after validation accuracy, the rows at the end)."""
    balanced = [("balanced accuracy", f"{_percent(summary.get('val_bal_acc'))} (mean per-class recall)")]
    rows = []
    stop = summary.get("stopped_early")
    if stop:
        rows.append(("stopped early", f"after epoch {stop['epoch']} (--patience {stop['patience']}; best at epoch {stop['best_epoch']})"))
    if summary.get("device"):
        rows.append(("device", summary["device"]))
    return balanced, rows
