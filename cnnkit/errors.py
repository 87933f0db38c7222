"""The errors cnnkit raises on purpose.

The CLI turns each of these into one ``error:`` line (and a ``hint:`` line when
one is given) with exit code 1. Anything else that escapes is a bug.
"""

from __future__ import annotations


def first_line(exc: BaseException, skip: tuple[str, ...] = (), limit: int | None = None) -> str:
    """An exception's message for one error: line: its first non-blank line (past lines starting with
    `skip`, e.g. a tool's decorations), cut to `limit` characters; its type's name when it says nothing."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith(skip)]
    text = lines[0] if lines else type(exc).__name__
    return text[:limit] if limit else text


class CnnkitError(Exception):
    """A problem the user can fix: bad data, a missing file, a wrong option value."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CnnkitError):
    """An option value that cannot work; exits 2 like Typer's own usage errors."""

    exit_code = 2


class DataError(CnnkitError):
    """A dataset that is missing, empty or malformed."""


class CheckpointError(CnnkitError):
    """A checkpoint that is missing, truncated, foreign or unsafe."""


class ModelError(CnnkitError):
    """An unknown model, or a model that cannot take the requested input."""


class DownloadError(CnnkitError):
    """A download that failed, did not verify, or an archive that is unsafe."""
