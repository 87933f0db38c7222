"""Everything cnnkit tells the user on stderr: notes, warnings and progress, through one Reporter.

A Reporter has one of three modes, fixed when it is made:
- terminal (stderr is a tty): rich bars for epochs, counted tasks and byte transfers;
- log (stderr is a file or a pipe): plain lines only (one per epoch, a few per download), never a bar;
- quiet (--quiet, --json, ranks other than 0): no notes and no progress; warnings still print.
Messages and bar labels hold user text (folder, file and class names): they are printed as text,
never read as rich markup or :emoji: codes.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rich.console import Console

Advance = Callable[..., None]  # advance(n=1): n more items of a counted task are done


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _label_column():
    from rich.progress import TextColumn

    return TextColumn("{task.description}", markup=False)


def _ignore(n: int = 1) -> None:
    pass


class Reporter:
    """Notes, warnings, per-epoch bars, counted tasks and transfers, for every layer of cnnkit."""

    def __init__(self, quiet: bool = False, stream=None):
        # Without a stream the console writes to whatever sys.stderr is at the time (pytest and
        # CliRunner swap it), so a Reporter made at import time still prints where it should.
        self.console = Console(file=stream, stderr=stream is None, highlight=False, soft_wrap=True, emoji=False)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self._progress = None
        self._task = None
        self._last_refresh = 0.0

    # Messages ----------------------------------------------------------------------
    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    def skipped(self, images: Iterable[tuple[str, str]]) -> None:
        """One warning line per image left out, naming it: `images` holds (path, reason) pairs."""
        for path, reason in images:
            self.warn(f"skipped unreadable image {path}: {reason}")

    # Per-epoch bar -----------------------------------------------------------------
    def start(self, label: str, total: int, completed: int = 0) -> None:
        self._label = label
        self._started = time.perf_counter()
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            _label_column(), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}", markup=False), TimeRemainingColumn(), console=self.console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=completed, stats="")

    def advance(self, stats_fn=None) -> None:
        """One batch done. `stats_fn` reads device metrics; it is called at most twice a second."""
        if self._progress is None:
            return
        now = time.perf_counter()
        fields = {}
        if stats_fn is not None and now - self._last_refresh > 0.5:
            self._last_refresh = now
            fields["stats"] = stats_fn()
        self._progress.update(self._task, advance=1, **fields)

    def finish(self, line: str) -> None:
        """End the epoch's bar; its summary line is what a log gets, one per epoch."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if not self.quiet:
            self.console.print(line, markup=False)

    # Counted tasks (decoding, scanning, extracting) ---------------------------------
    @contextlib.contextmanager
    def task(self, label: str, total: int) -> Iterator[Advance]:
        """`with reporter.task("decoding photos", n) as advance:` a bar on a terminal, silence in a log.

        `advance` may be called from worker threads.
        """
        if not self.live:
            yield _ignore
            return
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        # The bar is drawn on stderr; stdout stays the command's result (predict's CSV rows come during the bar),
        # so rich must not redirect it onto the bar's console.
        with Progress(_label_column(), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                      console=self.console, transient=True, redirect_stdout=False) as progress:
            task = progress.add_task(label, total=total)
            yield lambda n=1: progress.update(task, advance=n)

    # Byte transfers ----------------------------------------------------------------
    def transfer(self, name: str, url: str, total: int | None, already: int = 0) -> _TransferBar | _TransferLines:
        """The display of one download: call advance(n) per block, then close() or interrupted(partial)."""
        if self.live:
            return _TransferBar(self.console, name, total, already)
        return _TransferLines(self, name, url, total, already)


def _kept(partial: Path) -> str:
    return f"kept {partial} ({human_bytes(partial.stat().st_size)}); run again to resume"


class _TransferBar:
    """Bytes, rate and ETA on a terminal."""

    def __init__(self, console: Console, name: str, total: int | None, already: int):
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self.console = console
        self.progress = Progress(
            _label_column(), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(name, total=total, completed=already)

    def advance(self, n: int) -> None:
        self.progress.update(self.task, advance=n)

    def interrupted(self, partial: Path) -> None:
        self.progress.stop()
        self.console.print(_kept(partial), markup=False)

    def close(self) -> None:
        self.progress.stop()


class _TransferLines:
    """One line at the start, one per quarter, one at the end: readable in a log file."""

    def __init__(self, reporter: Reporter, name: str, url: str, total: int | None, already: int):
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
        self.reporter.note(_kept(partial))

    def close(self) -> None:
        if self.total is None or self.done >= self.total:
            seconds = time.perf_counter() - self.started
            self.reporter.note(f"  {self.name}: {human_bytes(self.done)} in {seconds:.1f} s ({self._rate()})")


# The default where a caller passes no reporter: no notes, no bars (a library call stays silent).
QUIET = Reporter(quiet=True)
