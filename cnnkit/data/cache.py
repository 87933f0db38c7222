"""The one cache directory: where decoded folders (and finetune's features) are kept, and how big it may grow.

Caches never go beside the data: a photo folder may be read-only, shared, or someone
else's, and a 2 GB hidden folder in it is a surprise. They live in one directory of the
user's own (`--cache-dir`, else CNNKIT_CACHE, else $XDG_CACHE_HOME/cnnkit or
~/.cache/cnnkit), created 0700. A path that is a symlink, a file, another user's folder
or a folder every user may write to is refused: a cache is loaded with weights_only=True and
validated, but another user's folder could still fill the disk or swap one valid cache
for another; a folder writable by a group that is not the user's own is refused for the same reason. The total stays under CNNKIT_CACHE_SIZE (default 10 GiB): after each new
cache, the least recently used others go first, never the one just written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cnnkit.errors import UsageError

CACHE_ENV = "CNNKIT_CACHE"
SIZE_ENV = "CNNKIT_CACHE_SIZE"
DEFAULT_BUDGET = 10 << 30
CACHE_PATTERNS = ("decoded-*.pt", "features-*.pt")  # what eviction may remove: only files cnnkit names so


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache directory cnnkit would use (not created): --cache-dir, CNNKIT_CACHE, XDG, ~/.cache."""
    chosen = explicit or os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # the XDG spec ignores relative
    return base / "cnnkit"


def _refuse(root: Path, why: str) -> UsageError:
    return UsageError(f"cache directory {root} {why}",
                      f"point --cache-dir or {CACHE_ENV} at a folder of your own, or pass --no-cache")


def open_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache directory, created 0700 if missing; refused (UsageError) if it is not safely the user's own.

    An OSError (a read-only home, say) propagates: callers decode without a cache then.
    """
    root = cache_root(explicit)
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(root, 0o700)
        except FileExistsError:  # another run created it a moment ago: check it like any existing one
            pass
        info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(root, "is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(root, "is not a directory")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise _refuse(root, "belongs to another user")
    if info.st_mode & 0o002:  # world-writable: any user could plant or swap a cache
        raise _refuse(root, f"may be written by every user (mode {stat.S_IMODE(info.st_mode):o})")
    # Group-writable is common with umask 002 and a group of one's own; a group others share is the same risk.
    if info.st_mode & 0o020 and hasattr(os, "getegid") and info.st_gid != os.getegid():
        raise _refuse(root, f"may be written by the members of group {info.st_gid} (mode {stat.S_IMODE(info.st_mode):o})")
    cache_budget()  # a bad CNNKIT_CACHE_SIZE fails here, before anything is decoded and written
    return root


def usable_cache_dir(explicit: str | os.PathLike | None, reporter, what: str, doing: str) -> Path | None:
    """open_cache_dir, or None when it cannot be created: said once in a note, and the work goes on without it."""
    try:
        return open_cache_dir(explicit)
    except OSError as exc:
        reporter.note(f"note: no {what} cache: cannot create {exc.filename or explicit} "
                      f"({exc.strerror or exc}); {doing} without one")
        return None


def cache_budget() -> int:
    """Bytes all caches together may take: CNNKIT_CACHE_SIZE (like 10G, 500M), else 10 GiB."""
    from cnnkit.data.memory import parse_bytes

    text = os.environ.get(SIZE_ENV)
    if not text:
        return DEFAULT_BUDGET
    try:
        return parse_bytes(text)
    except UsageError as exc:
        raise UsageError(f"{SIZE_ENV}={text}: {exc.message}", f"{exc.hint}, or unset {SIZE_ENV}") from None


def touch(path: Path) -> None:
    """Mark a cache as just used, so eviction (least recently used first) keeps it longest."""
    try:
        os.utime(path)
    except OSError:
        pass


def evict(root: Path, keep: Path, budget: int | None = None) -> list[Path]:
    """Remove the least recently used caches in `root` until the total fits the budget; `keep` stays.

    Returns what was removed. Only regular files named like cnnkit's caches are counted or removed.
    """
    budget = cache_budget() if budget is None else budget
    entries = []
    for pattern in CACHE_PATTERNS:
        for path in root.glob(pattern):
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= budget:
            break
        if path == keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue  # another run removed it first
        total -= size
        removed.append(path)
    return removed
