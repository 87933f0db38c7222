"""Graceful Ctrl-C: the first SIGINT asks the loop to stop after the current batch."""

from __future__ import annotations

import signal
import threading

from cnnkit.errors import CnnkitError


class TrainingInterrupted(CnnkitError):
    """Raised after last.pt is saved on Ctrl-C; the CLI exits 130."""

    exit_code = 130


class StopRequest:
    def __init__(self, on_first=None):
        self.requested = False
        self._on_first = on_first
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.requested = True
        if self._on_first:
            self._on_first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
