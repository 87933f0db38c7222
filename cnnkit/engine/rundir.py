"""Run directories: naming, creating and locking them, metrics.csv and config.json."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Iterator

from cnnkit.errors import CheckpointError, CnnkitError, UsageError
from cnnkit.fileio import atomic_write_text

METRIC_COLUMNS = ("epoch", "step", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
                  "val_bal_acc")  # new columns go at the end: readers by position keep working


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


def check_run_name(name: str | None) -> None:
    """--name is one folder name inside --out: a path there would write anywhere on disk."""
    if name is None:
        return
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if name in ("", ".", "..") or "\0" in name or any(sep in name for sep in separators):
        raise UsageError(f"--name {name!r} is not a folder name", "--name is one folder name inside --out (choose the place with --out)")


def new_run_dir(out: str | Path, model: str, dataset_name: str, name: str | None) -> Path:
    """Create and lock out/NAME, or checkpoints/<model>-<dataset>[-N]/ (the first number free).

    A run directory is made by mkdir, which fails if the name exists, so two runs started together never
    share one; an existing folder is only taken if it is empty (a stale lock file at most).
    """
    check_run_name(name)
    out, run = Path(out), None
    try:
        out.mkdir(parents=True, exist_ok=True)
        if name is not None:
            run = out / name
            _claim_named(run)
        else:
            base = f"{_slug(model)}-{_slug(dataset_name)}"
            run, n = out / base, 1
            while not _claim(run):
                n += 1
                run = out / f"{base}-{n}"
        remove_stale_temporaries(run)
    except OSError as exc:
        if run is not None:
            release_run_lock(run)
        raise CnnkitError(f"cannot write to run directory {run if run is not None else out}: {exc.strerror}",
                          "choose a writable place with --out") from None
    return run


def _claim_named(run: Path) -> None:
    if _claim(run, busy_is_error=True):
        return
    if run.is_symlink() or not run.is_dir():
        raise CnnkitError(f"--name {run.name}: {run} exists and is not a folder cnnkit made", "pick another --name")
    if (run / "last.pt").exists():
        raise CnnkitError(f"run directory {run} already holds a run", f"resume it with --resume {run}, or pick another --name")
    raise CnnkitError(f"{run} already exists and is not empty",
                      "pick another --name; cnnkit writes only into a new or empty folder, or --resume's own run")


def _claim(run: Path, busy_is_error: bool = False) -> bool:
    """Make `run` (or take it, empty) and lock it; False if the name is someone else's."""
    try:
        run.mkdir()
    except FileExistsError:
        if run.is_symlink() or not run.is_dir() or _holds_files(run):
            return False
        try:
            lock_run_dir(run)
        except RunDirInUse:
            if busy_is_error:
                raise
            return False
        if _holds_files(run):  # filled between the look and the lock
            release_run_lock(run)
            return False
        return True
    lock_run_dir(run)
    return True


def _holds_files(run: Path) -> bool:
    return any(entry.name != LOCK_FILE for entry in os.scandir(run))


def claim_for_resume(run: Path) -> None:
    """Lock a run directory to continue it, then clear what a killed writer left."""
    try:
        lock_run_dir(run)
    except OSError as exc:
        raise CnnkitError(f"cannot lock run directory {run}: {exc.strerror}", "fix its permissions or copy the run elsewhere") from None
    remove_stale_temporaries(run)


def resumable_run_dir(checkpoint_path: str | Path) -> Path:
    """The run directory a checkpoint belongs to: --resume writes the run's files beside its last.pt.

    Only a run's own last.pt or best.pt names one; any other .pt could sit in any folder (a download
    folder, a home directory), and resuming there would scatter run files into it.
    """
    path = Path(checkpoint_path)
    if path.name not in ("last.pt", "best.pt"):
        raise CheckpointError(
            f"{path} is not a run's last.pt or best.pt; --resume continues a run in its own directory",
            "pass the run directory cnnkit wrote; to continue from a copied checkpoint, put it as last.pt "
            "in a folder of its own",
        )
    return path.parent


class RunDirInUse(CnnkitError):
    """Another process holds the run directory's lock."""


LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # run directory -> descriptor of its locked .lock


def lock_run_dir(run: Path) -> None:
    """Take `run`'s exclusive lock (flock on run/.lock) for this process, or raise RunDirInUse.

    The kernel drops a flock when its holder exits, however it exits: kill -9 leaves no stale lock.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): run without the lock
        return
    path = run / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        fd = os.open(path, flags, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(f"run directory {run} is in use by another cnnkit process",
                              "wait for it to finish, or start another run with --name") from None
        try:  # the previous holder unlinks the file as it lets go: lock the file that is there now
            current = os.stat(path, follow_symlinks=False)
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                _held[Path(run)] = fd
                return
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_locks_released() -> Iterator[None]:
    """Let go, on the way out, of the run locks taken inside the block (a run's whole life, failures too)."""
    before = set(_held)
    try:
        yield
    finally:
        for run in set(_held) - before:
            release_run_lock(run)


def release_run_lock(run: Path) -> None:
    """Let go of this process's lock of `run`, if it holds it."""
    fd = _held.pop(Path(run), None)
    if fd is None:
        return
    import fcntl

    with contextlib.suppress(OSError):
        os.unlink(Path(run) / LOCK_FILE)  # while still holding it, so no one locks a file about to vanish
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)  # forked workers share the descriptor: unlock, not just close
    os.close(fd)


RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "val_steps.csv", "curves.png", "config.json", "report.html")


def remove_stale_temporaries(run: Path) -> None:
    """Delete the hidden temporary files a killed run left mid-write (one can be as big as a checkpoint).

    Called only with the run's lock held: the one process that writes in the run, so any such file is dead.
    """
    for name in RUN_FILES:
        for stale in run.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def check_writable(run: Path) -> None:
    if not os.access(run, os.W_OK):
        raise CnnkitError(f"run directory {run} is not writable", "fix its permissions or copy the run elsewhere")


def write_metrics(run: Path, history: list[dict]) -> None:
    _write_csv(run / "metrics.csv", METRIC_COLUMNS, history)


# ---- --val-every results: one row per validation inside an epoch, beside metrics.csv's epoch rows
VAL_STEP_COLUMNS = ("epoch", "step", "val_loss", "val_acc", "val_bal_acc")


def write_val_steps(run: Path, val_history: list[dict]) -> None:
    _write_csv(run / "val_steps.csv", VAL_STEP_COLUMNS, val_history)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def write_config(run: Path, config: dict) -> None:
    atomic_write_text(run / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
