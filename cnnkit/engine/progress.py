"""Progress on stderr: rich bars on a terminal, one plain line per epoch in a log."""

from __future__ import annotations

import sys
import time

from rich.console import Console


def label_column():
    """The bar's label column. A label holds user text (a folder, an archive's name): never read it as markup."""
    from rich.progress import TextColumn

    return TextColumn("{task.description}", markup=False)


class Reporter:
    """Prints notes, warnings and per-epoch progress for the engine."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self._progress = None
        self._task = None
        self._last_refresh = 0.0

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    # Per-epoch bar -----------------------------------------------------------------
    def start(self, label: str, total: int, completed: int = 0) -> None:
        self._label = label
        self._started = time.perf_counter()
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            label_column(), BarColumn(), MofNCompleteColumn(),
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
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if not self.quiet:
            self.console.print(line, markup=False)


class NullProgress:
    """A do-nothing context used where a caller wants no progress bar."""

    def __enter__(self):
        return lambda n=1: None

    def __exit__(self, *exc):
        return False


def task_progress(console_quiet: bool = False):
    """Factory for simple counted tasks (decoding, scanning): `with factory(label, total) as advance:`."""
    import contextlib

    @contextlib.contextmanager
    def factory(label: str, total: int):
        console = Console(file=sys.stderr)
        if console_quiet or not console.is_terminal:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        with Progress(label_column(), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda n=1: progress.update(task, advance=n)

    return factory
