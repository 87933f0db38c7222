"""cnnkit report: write a run's report.html again (training writes it at the end of every run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DeviceOption, QuietOption, handle_errors


@app.command(
    epilog="Examples:\n"
    "  cnnkit report checkpoints/lenet-mnist-sample\n"
    "  cnnkit report run --out lenet-report.html",
)
@handle_errors
def report(
    run: Annotated[Path, typer.Argument(help="A run directory (or its last.pt or best.pt).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the page; default: RUN/report.html.", show_default=False)] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Write RUN/report.html: curves, confusion matrix, per-class table, worst mistakes and config, in one file."""
    from cnnkit.engine.run_report import write_report
    from cnnkit.reporting import Reporter

    path = write_report(run, device=device, out=out)
    Reporter(quiet=quiet).note(f"wrote the run report to {path}")
    print(path)
