"""Graceful stop: the first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current batch.

SIGTERM is what `kill`, `timeout`, systemd, Docker and batch schedulers send before they
kill: it gets the same treatment as Ctrl-C (last.pt saved, resume command printed), and
the exit status is the shell's convention for the signal, 128 + its number (130, 143).
"""

from __future__ import annotations

import signal
import threading

from cnnkit.errors import CnnkitError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int) -> int:
    return 128 + int(signum)


class TrainingInterrupted(CnnkitError):
    """Raised after last.pt is saved on Ctrl-C or SIGTERM; the CLI exits 130 or 143."""

    def __init__(self, message: str, hint: str | None = None, signum: int = signal.SIGINT):
        super().__init__(message, hint)
        self.exit_code = exit_code_for(signum)


class Aborted(KeyboardInterrupt):
    """A second signal: stop at once, without saving. The CLI exits with the signal's code."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = exit_code_for(signum)


class StopRequest:
    def __init__(self, on_first=None):
        self.requested = False
        self.signum = None  # the signal that asked, once one has
        self._on_first = on_first
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C (or SIGTERM) aborts at once
            raise Aborted(signum)
        self.requested = True
        self.signum = signum
        if self._on_first:
            self._on_first(signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self._previous = {}
        return False
