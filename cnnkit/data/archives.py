"""Safe extraction of tar and zip archives.

Every member is checked before anything is written: an absolute path, a `..`
component, a link that points outside the target, a device or FIFO, or a total
declared size far beyond what the archive could honestly hold (a zip bomb) makes
the whole archive unsafe. Extraction goes into a fresh temporary folder beside the
destination, so a failure leaves no half dataset behind; the caller moves what it
needs into place with `move_into_place`.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from cnnkit.errors import DownloadError

# Declared uncompressed bytes allowed per archive byte, with a floor for small archives.
# Image and pickle archives are close to 1:1; a 20x claim is already suspicious.
MAX_EXPANSION = 20
MIN_BUDGET = 64 * 2**20


class UnsafeArchive(DownloadError):
    def __init__(self, archive: Path, reason: str):
        super().__init__(
            f"unsafe archive {archive.name}: {reason}; nothing was extracted",
            "the archive is damaged or malicious: get it again from the upstream source",
        )


def default_budget(archive: Path) -> int:
    return max(archive.stat().st_size * MAX_EXPANSION, MIN_BUDGET)


def _bad_name(name: str) -> str | None:
    """Why a member name may not be extracted, or None."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a '..' component"
    return None


def _link_escapes(member_name: str, target: str) -> bool:
    """Does a link stored at `member_name` and pointing at `target` leave the archive root?"""
    target = target.replace("\\", "/")
    if target.startswith("/"):
        return True
    depth = 0
    for part in (*PurePosixPath(member_name).parent.parts, *PurePosixPath(target).parts):
        depth = depth - 1 if part == ".." else depth + (part not in ("", "."))
        if depth < 0:
            return True
    return False


def _check_budget(archive: Path, declared: int, budget: int | None) -> None:
    budget = default_budget(archive) if budget is None else budget
    if declared > budget:
        raise UnsafeArchive(
            archive,
            f"its members declare {declared / 2**20:,.0f} MiB uncompressed, over the limit of "
            f"{budget / 2**20:,.0f} MiB for a {archive.stat().st_size / 2**20:,.1f} MiB archive (a zip bomb?)",
        )


def check_tar(archive: Path, tar: tarfile.TarFile, budget: int | None) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        reason = _bad_name(member.name)
        # A symlink's target is relative to its folder, a hard link's to the archive root.
        if reason is None and (member.issym() or member.islnk()) and (
            _link_escapes(member.name if member.issym() else "", member.linkname)
        ):
            reason = f"a link to '{member.linkname}' outside the target"
        if reason is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            reason = "a device, FIFO or other special file"
        if reason:
            raise UnsafeArchive(archive, f"member '{member.name}' is {reason}")
        try:  # Python's own 'data' filter, for whatever the checks above might miss
            tarfile.data_filter(member, "/nonexistent-cnnkit-root")
        except tarfile.FilterError as exc:
            raise UnsafeArchive(archive, f"member '{member.name}': {exc}") from None
    _check_budget(archive, sum(m.size for m in members if m.isfile()), budget)
    return members


def check_zip(archive: Path, zf: zipfile.ZipFile, budget: int | None) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        reason = _bad_name(info.filename)
        if reason is None and _is_zip_link(info):
            target = zf.read(info).decode("utf-8", "replace")
            if _link_escapes(info.filename, target):
                reason = f"a link to '{target}' outside the target"
        if reason:
            raise UnsafeArchive(archive, f"member '{info.filename}' is {reason}")
    _check_budget(archive, sum(info.file_size for info in members), budget)
    return members


def _is_zip_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


@contextlib.contextmanager
def extracted(archive: Path, workdir: Path, *, budget: int | None = None,
              progress: Callable | None = None) -> Iterator[Path]:
    """Check and extract `archive` into a temporary folder inside `workdir`; yield that folder.

    The folder is removed afterwards whatever happens; move what you keep out of it.
    `progress(label, total)` is a task_progress factory, advanced once per member.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".cnnkit-extract-", dir=workdir))
    try:
        _extract(archive, temp, budget, progress)
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _extract(archive: Path, target: Path, budget: int | None, progress) -> None:
    from cnnkit.engine.progress import NullProgress

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = check_zip(archive, zf, budget)
                with (progress(f"extracting {archive.name}", len(members)) if progress else NullProgress()) as advance:
                    for info in members:
                        _extract_zip_member(zf, info, target)
                        advance(1)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                members = check_tar(archive, tar, budget)
                with (progress(f"extracting {archive.name}", len(members)) if progress else NullProgress()) as advance:
                    for member in members:
                        tar.extract(member, target, filter="data")
                        advance(1)
        else:
            raise DownloadError(f"{archive.name} is neither a zip nor a tar archive", "check that the file is the one expected")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile, zlib.error, gzip.BadGzipFile) as exc:
        # A bad CRC, a truncated stream or a broken header: the download is damaged.
        raise DownloadError(
            f"corrupt archive {archive.name}: {exc}; nothing was extracted",
            "the file is truncated or damaged: download it again (with --force)",
        ) from None


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    if _is_zip_link(info):  # zipfile would write the link as a text file; make the link
        path = target / info.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(zf.read(info).decode("utf-8"), path)
        return
    zf.extract(info, target)  # reads the whole member, so zipfile checks its CRC


def move_into_place(source: Path, dest: Path) -> None:
    """Replace `dest` (file or folder) by `source`; the old one goes only once the new one is in."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    try:
        os.replace(source, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
