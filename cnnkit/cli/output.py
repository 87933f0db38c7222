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
    if json_output:
        print_json(summary)
        return
    if not quiet:
        from rich.table import Table

        if summary.get("already_finished"):
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
        for key, label in (("skipped_images", "skipped images"), ("global_batch", "global batch")):
            if summary.get(key) and (key != "global_batch" or summary.get("processes", 1) > 1):
                rows.append((label, str(summary[key])))
        for key, value in rows:
            table.add_row(key, value)
        stdout_console().print(table)
    print(summary["run_dir"], flush=True)
