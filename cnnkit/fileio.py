"""Atomic file writes: a reader (or a crash) never sees half a file under the final name."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    # Name the user's path, not the temporary file or a bare "File exists", when the place is wrong.
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a directory is in the way of the file", str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of the directory", str(parent))
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # read-only, full, no permission: name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp_path)) and exc.errno:
            # A failed write() names no file (a full disk): say which file could not be written.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Run `writer(tmp_path)` (e.g. torch.save) and move the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    """torch.save through atomic_save, with a full disk reported as OSError(ENOSPC).

    torch's zip writer turns a failed write into a RuntimeError ("unexpected pos
    ... vs ..."), which would read as a bug; callers expect the OSError a
    plain file write gives.
    """
    import torch

    def writer(tmp: Path) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            raise _write_failure(Path(path), exc) from None

    atomic_save(path, writer)


def _write_failure(path: Path, exc: RuntimeError) -> Exception:
    import shutil

    target = str(path)
    try:
        full = shutil.disk_usage(path.parent).free < (1 << 20)
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, "No space left on device", target)
    if "unexpected pos" in str(exc) or "write" in str(exc).lower():
        return OSError(errno.EIO, f"writing failed ({str(exc).splitlines()[0][:120]})", target)
    return exc



def corrupt_zip_member(path: str | os.PathLike) -> str | None:
    """The first member of a zip file (torch.save's format) whose CRC fails, or None.

    torch.load does not check the CRCs, so a flipped bit on disk would load as
    silently wrong tensors. Raises what zipfile raises for a file that is not a zip.
    """
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


def load_cache(path: str | os.PathLike):
    """A cache file written by atomic_torch_save, or None if it is missing or damaged in any way.

    A cache is only ever a shortcut: the caller rebuilds what it holds.
    """
    import torch

    try:
        if corrupt_zip_member(path) is not None:
            return None
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
