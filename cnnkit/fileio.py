"""Atomic file writes: a reader (or a crash) never sees half a file under the final name."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


# O_EXCL refuses any name that exists, a planted symlink included; O_NOFOLLOW says so for a link even where
# O_EXCL alone would do. Mode 0o666 lets the umask decide, as for any file a standard tool creates (mkstemp
# would force 0600).
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_TEMP_ATTEMPTS = 100


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_place(path: Path) -> None:
    # Name the user's path, not the temporary file or a bare "File exists", when the place is wrong.
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(errno.EISDIR, "a directory is in the way of the file", str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of the directory", str(parent))
            break
    path.parent.mkdir(parents=True, exist_ok=True)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file `.NAME.RANDOM.tmp` beside `path`, created by this call and by no one else."""
    for _ in range(_TEMP_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue  # another process's temporary (or a planted name): pick another
        except OSError as exc:  # read-only, full, no permission: name the file asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    raise OSError(errno.EEXIST, "no free temporary name", str(path))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a new binary file beside `path`; on success fsync it and rename it over `path`.

    The one way cnnkit writes a file. The temporary is created with O_EXCL and written through the
    descriptor that created it, never reopened by name; os.replace then swaps the name itself, so a
    symlink planted at `path` or at a temporary name is replaced, never written through.
    """
    path = Path(path)
    _check_place(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


def _discard(tmp: Path, path: Path, exc: BaseException) -> None:
    """Remove the temporary of a write that failed; an OSError about it is raised again naming `path`."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    if isinstance(exc, OSError) and exc.filename in (None, str(tmp)) and exc.errno:
        # A failed write() names no file (a full disk): say which file could not be written.
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the name of a new empty temporary file beside `path`, for writers that need a name.

    Prefer atomic_file. The temporary is created like atomic_file's; before it replaces `path`, it must
    still be the file that was created (not a link or another file swapped in meanwhile).
    """
    path = Path(path)
    _check_place(path)
    fd, tmp = _create_temporary(path)
    try:
        yield tmp
        now = os.stat(tmp, follow_symlinks=False)
        made = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (made.st_dev, made.st_ino):
            raise OSError(errno.EEXIST, "the temporary file was replaced while it was written", str(path))
        os.fsync(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    with atomic_file(path) as f:
        f.write(payload)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> None:
    """Run `writer(file)` (e.g. fig.savefig, torch.save) on the new file and move the result into place."""
    with atomic_file(path) as f:
        writer(f)


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    """torch.save through atomic_save, with a full disk reported as OSError(ENOSPC).

    torch's zip writer turns a failed write into a RuntimeError ("unexpected pos
    ... vs ..."), which would read as a bug; callers expect the OSError a
    plain file write gives.
    """
    import torch

    def writer(f: BinaryIO) -> None:
        try:
            torch.save(obj, f)
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
