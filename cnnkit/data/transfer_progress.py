"""Download progress on stderr: a rich bar (bytes, rate, ETA) on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class TransferProgress:
    """What download/install report to; `quiet` silences everything but warnings."""

    def __init__(self, quiet: bool = False, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    def file(self, name: str, url: str, total: int | None, already: int = 0):
        if self.live:
            return _RichBar(self.console, name, total, already)
        return _PlainLines(self, name, url, total, already)

    def tasks(self):
        """A task_progress factory for counted steps (extracting, checking images)."""
        from cnnkit.engine.progress import task_progress

        return task_progress(self.quiet)


class _RichBar:
    def __init__(self, console, name, total, already):
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        from cnnkit.engine.progress import label_column

        self.console = console
        self.progress = Progress(
            label_column(), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(name, total=total, completed=already)

    def advance(self, n: int) -> None:
        self.progress.update(self.task, advance=n)

    def interrupted(self, partial: Path) -> None:
        self.progress.stop()
        self.console.print(f"kept {partial} ({human_bytes(partial.stat().st_size)}); run again to resume", markup=False)

    def close(self) -> None:
        self.progress.stop()


class _PlainLines:
    """One line at the start, one per quarter, one at the end: readable in a log file."""

    def __init__(self, reporter: TransferProgress, name, url, total, already):
        self.reporter = reporter
        self.name = name
        self.total = total
        self.done = already
        self.started = time.perf_counter()
        self.fresh = 0
        self.next_quarter = 1
        resume = f", resuming at {human_bytes(already)}" if already else ""
        reporter.note(f"downloading {name} ({human_bytes(total)}) from {url}{resume}")

    def advance(self, n: int) -> None:
        self.done += n
        self.fresh += n
        if self.total and self.next_quarter < 4 and self.done >= self.total * self.next_quarter / 4:
            self.reporter.note(f"  {self.name}: {25 * self.next_quarter}% at {self._rate()}")
            while self.next_quarter < 4 and self.done >= self.total * self.next_quarter / 4:
                self.next_quarter += 1

    def _rate(self) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-6)
        return f"{human_bytes(int(self.fresh / seconds))}/s"

    def interrupted(self, partial: Path) -> None:
        self.reporter.note(f"kept {partial} ({human_bytes(partial.stat().st_size)}); run again to resume")

    def close(self) -> None:
        if self.total is None or self.done >= self.total:
            seconds = time.perf_counter() - self.started
            self.reporter.note(f"  {self.name}: {human_bytes(self.done)} in {seconds:.1f} s ({self._rate()})")
