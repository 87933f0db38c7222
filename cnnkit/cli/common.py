"""What every command shares: the error wrapper, common options and output helpers.

This module must stay cheap to import: `cnnkit --help` loads it, and must not
load torch.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import sys
from pathlib import Path
from enum import Enum
from typing import Annotated, Any, Callable, Optional

import typer

DEBUG_ENV = "CNNKIT_DEBUG"
INTERRUPTED_CODES = (130, 143)  # 128 + SIGINT, 128 + SIGTERM: a stop the user asked for, not an error


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print the one-line error (and hint) and return the Exit to raise.

    The message is printed as plain text: paths and lists in brackets must not be
    read as rich markup.
    """
    from rich.text import Text

    err = _stderr_console()
    label = ("interrupted:", "yellow") if code in INTERRUPTED_CODES else ("error:", "bold red")
    err.print(Text.assemble(label, " ", _one_line(message)))
    if hint:
        err.print(Text.assemble(("hint:", "yellow"), " ", _one_line(hint)))
    return typer.Exit(code)


def _one_line(text: str) -> str:
    # A name the user typed (or an exception's text) may hold line breaks; the error stays one line.
    return text.strip().replace("\r", "\\r").replace("\n", "\\n")


def _describe_os_error(exc: OSError) -> tuple[str, str | None]:
    where = f": {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}", "free some space; the previous files were left as they were"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}", "check the file's permissions, or choose another path"
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return f"{exc.strerror}{where}", "choose another path, or move what is in the way"
    if exc.errno == errno.EROFS:
        return f"read-only file system{where}", "choose a writable directory with --out or --data-dir"
    return f"{exc.strerror or exc}{where}", None


# ---- standard output ---------------------------------------------------------------------------
# A failed write to stdout is not a failed write to a file: no file was touched, and the right
# words are "cannot write to standard output". The entry point (cnnkit.cli.app) wraps sys.stdout
# in StdoutGuard, so such a failure arrives as StdoutFailed, whichever code was printing.

SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what the shell reports for `yes | head -1`'s yes


class StdoutFailed(Exception):
    """Writing to standard output failed with `cause` (an OSError): a closed pipe, a full disk, a closed fd.

    Deliberately not an OSError: Click turns an EPIPE OSError into its own exit 1, and
    handle_errors would describe an OSError as a file's.
    """

    def __init__(self, cause: OSError):
        super().__init__(cause.strerror or str(cause))
        self.cause = cause


class StdoutGuard:
    """sys.stdout, with an OSError from write or flush raised as StdoutFailed."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutFailed(exc) from None

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as exc:
            raise StdoutFailed(exc) from None

    def __getattr__(self, name):  # fileno, isatty, encoding...: those of the real stream
        return getattr(self._stream, name)


def stdout_failure_exit(failure: StdoutFailed) -> int:
    """Say what went wrong with stdout (nothing for a reader that left) and return the exit code.

    Whatever is still buffered for stdout goes to /dev/null, as Python's docs advise for
    EPIPE: otherwise the interpreter's last flush fails again and prints a second error.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    if failure.cause.errno == errno.EPIPE:  # `| head`: the reader has what it wanted; not an error
        return SIGPIPE_EXIT
    fail(f"cannot write to standard output: {failure}")
    return 1


def _flush_stdout() -> None:
    # Buffered output must fail here, inside the wrapper, and not in the interpreter's exit.
    if sys.stdout is not None:
        sys.stdout.flush()


def handle_errors(func: Callable) -> Callable:
    """Turn cnnkit's errors into `error:`/`hint:` lines and exit codes, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cnnkit.errors import CnnkitError

        try:
            result = func(*args, **kwargs)
            _flush_stdout()
            return result
        except (typer.Exit, StdoutFailed):  # StdoutFailed: for the entry point, which says it once
            raise
        except CnnkitError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(exc.message, exc.hint, exc.exit_code) from None
        except KeyboardInterrupt as exc:  # a second Ctrl-C or SIGTERM carries its signal's exit code
            _stderr_console().print("interrupted", markup=False)
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None
        except OSError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(*_describe_os_error(exc)) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            if os.environ.get(DEBUG_ENV):
                raise
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda's, named without importing torch here
                raise fail("the device ran out of memory", "use a smaller --batch-size, or --device cpu") from None
            raise fail(
                f"unexpected {type(exc).__name__}: {exc}",
                f"this is a bug in cnnkit; rerun with {DEBUG_ENV}=1 to see the traceback",
            ) from None

    return wrapper


def print_json(document: Any) -> None:
    """Write one JSON document to stdout: strict JSON, so NaN and infinities (a diverged loss) are null."""
    sys.stdout.write(json.dumps(finite_or_null(document), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def finite_or_null(value: Any) -> Any:
    """`value` with every float that is NaN or infinite replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def stdout_console():
    """The console for tables and reports on stdout.

    Markup and emoji codes are off: the strings printed hold paths and class names, and a
    folder named `[/x]` or `:cat:` is printed as it is named. Styles come from rich Text objects.
    """
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


# Options shared across commands. Their names are public interface: scripts call them (README, "Commands").
DataDirOption = Annotated[
    Path,
    typer.Option("--data-dir", envvar="CNNKIT_DATA", help="Root for downloaded datasets.", show_default=True),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.", show_default=True)
]
# Bounds checked at parse time, before anything is allocated: past them a value is a typo
# or an attack, never a plan. numpy's legacy seed takes 0..2**32-1 (torch offsets it per rank).
MAX_SEED = 2**32 - 1
MAX_BATCH_SIZE = 65_536
MAX_WORKERS = 256  # processes
SeedOption = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed for weights, data order and augmentation.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result on stdout; no progress.")]


class Split(str, Enum):
    """The split names `--split` takes; each command accepts its subset as a Literal of these members."""

    train = "train"
    val = "val"  # training's validation split
    test = "test"
    all = "all"  # every split the dataset has


# ---- the cache directory: every command that decodes image folders takes both --------------------
CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Where decoded folders are cached; default: $CNNKIT_CACHE, else "
                 "$XDG_CACHE_HOME/cnnkit or ~/.cache/cnnkit (total kept under $CNNKIT_CACHE_SIZE, default 10G).",
                 show_default=False),
]
CacheOption = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Read and write the decode cache (--no-cache: decode every time).")
]

# A checkpoint of a user's model is rebuilt from its recorded file; --model-file names another one.
ModelFileOption = Annotated[Optional[Path], typer.Option("--model-file", help="For a checkpoint of your own model: import it from this .py file (instead of the recorded one, which must be unchanged).", show_default=False)]
