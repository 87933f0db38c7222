"""Safe extraction of tar and zip archives.

Every member is checked before anything is written. A dataset archive holds only
files and folders, so a member that is anything else (a symbolic or hard link, a
device, a FIFO) makes the whole archive unsafe, as do an absolute path, a `..`
component, more members than any catalog dataset has, or a total declared size far
beyond what the archive could honestly hold (a zip bomb). With no links created,
nothing extracted can redirect a later write (a chain `x/l1 -> ..`, `x/l1/l2 -> ..`
would otherwise climb out one link at a time). Extraction goes into a fresh
temporary folder that cnnkit creates beside the destination, so nothing planted in
the destination is written through and a failure leaves no half dataset behind;
the caller moves what it needs into place with `move_into_place`.
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
from typing import Iterator

from cnnkit.errors import DownloadError
from cnnkit.reporting import QUIET, Reporter

# Declared uncompressed bytes allowed per archive byte, with a floor for small archives.
# Image and pickle archives are close to 1:1; a 20x claim is already suspicious.
MAX_EXPANSION = 20
MIN_BUDGET = 64 * 2**20
# Members (files and folders) allowed per archive. The largest catalog archive, Cats vs.
# Dogs, holds 25,000 photos plus a few folders and text files; CIFAR-10 holds 8. Four
# times the largest keeps room for an upstream that grows while refusing archives of
# millions of empty members, which cost an inode and a progress step each.
MAX_MEMBERS = 100_000


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


def _refuse_member(archive: Path, name: str, kind: str | None, link_target: str | None = None) -> None:
    """The one member policy for tar and zip: a safe name, and a regular file or a folder."""
    reason = _bad_name(name)
    if reason is None and kind == "link":
        reason = f"a link (to '{link_target}'); a dataset archive holds only files and folders"
    elif reason is None and kind is not None:
        reason = f"a {kind}; a dataset archive holds only files and folders"
    if reason:
        raise UnsafeArchive(archive, f"member '{name}' is {reason}")


def _check_count(archive: Path, count: int, max_members: int | None) -> None:
    limit = MAX_MEMBERS if max_members is None else max_members
    if count > limit:
        raise UnsafeArchive(archive, f"it holds more than {limit:,} members, more than any dataset archive needs")


def _check_budget(archive: Path, declared: int, budget: int | None) -> None:
    budget = default_budget(archive) if budget is None else budget
    if declared > budget:
        raise UnsafeArchive(
            archive,
            f"its members declare {declared / 2**20:,.0f} MiB uncompressed, over the limit of "
            f"{budget / 2**20:,.0f} MiB for a {archive.stat().st_size / 2**20:,.1f} MiB archive (a zip bomb?)",
        )


def _tar_kind(member: tarfile.TarInfo) -> str | None:
    """None for a regular file or a folder, else what the member is."""
    if member.isfile() or member.isdir():
        return None
    if member.issym() or member.islnk():
        return "link"
    return "device, FIFO or other special file"


def check_tar(archive: Path, tar: tarfile.TarFile, budget: int | None,
              max_members: int | None = None) -> list[tarfile.TarInfo]:
    limit = MAX_MEMBERS if max_members is None else max_members
    members = []
    while (member := tar.next()) is not None:  # one header at a time, so a million members stop at the limit
        members.append(member)
        _check_count(archive, len(members), limit)
        _refuse_member(archive, member.name, _tar_kind(member), member.linkname)
        try:  # Python's own 'data' filter, for whatever the checks above might miss
            tarfile.data_filter(member, "/nonexistent-cnnkit-root")
        except tarfile.FilterError as exc:
            raise UnsafeArchive(archive, f"member '{member.name}': {exc}") from None
    _check_budget(archive, sum(m.size for m in members if m.isfile()), budget)
    return members


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """None for a regular file or a folder, else what the member is (from the Unix mode, when stored)."""
    mode = info.external_attr >> 16
    if info.is_dir() or stat.S_IFMT(mode) in (0, stat.S_IFREG, stat.S_IFDIR):
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "device, FIFO or other special file"


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    if _zip_kind(info) != "link" or info.file_size > 4096:  # a link's data is its target path
        return None
    return zf.read(info).decode("utf-8", "replace")


def zip_member_count(archive: Path) -> int | None:
    """The member count the zip's end record declares, read before zipfile parses the directory."""
    read_end = getattr(zipfile, "_EndRecData", None)  # private but stable since Python 2; skip if it goes
    if read_end is None:
        return None
    with open(archive, "rb") as f:
        end = read_end(f)
    return None if end is None else end[zipfile._ECD_ENTRIES_TOTAL]


def check_zip(archive: Path, zf: zipfile.ZipFile, budget: int | None,
              max_members: int | None = None) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    _check_count(archive, len(members), max_members)
    for info in members:
        _refuse_member(archive, info.filename, _zip_kind(info), _zip_link_target(zf, info))
    _check_budget(archive, sum(info.file_size for info in members), budget)
    return members


@contextlib.contextmanager
def extracted(archive: Path, workdir: Path, *, budget: int | None = None, max_members: int | None = None,
              reporter: Reporter = QUIET) -> Iterator[Path]:
    """Check and extract `archive` into a temporary folder inside `workdir`; yield that folder.

    The folder is removed afterwards whatever happens; move what you keep out of it.
    `reporter` shows a counted task, advanced once per member.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".cnnkit-extract-", dir=workdir))  # new, empty, ours alone (0700)
    try:
        _extract(archive, temp, budget, max_members, reporter)
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _extract(archive: Path, target: Path, budget: int | None, max_members: int | None, reporter: Reporter) -> None:
    try:
        if zipfile.is_zipfile(archive):
            declared = zip_member_count(archive)
            if declared is not None:  # before zipfile builds an object per member
                _check_count(archive, declared, max_members)
            with zipfile.ZipFile(archive) as zf:
                members = check_zip(archive, zf, budget, max_members)
                with reporter.task(f"extracting {archive.name}", len(members)) as advance:
                    for info in members:
                        zf.extract(info, target)  # reads the whole member, so zipfile checks its CRC
                        advance(1)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                members = check_tar(archive, tar, budget, max_members)
                with reporter.task(f"extracting {archive.name}", len(members)) as advance:
                    for member in members:
                        tar.extract(member, target, filter="data")
                        advance(1)
        else:
            raise DownloadError(f"{archive.name} is neither a zip nor a tar archive", "check that the file is the one expected")
    except tarfile.FilterError as exc:  # a TarError too, but an unsafe member, not a damaged file
        raise UnsafeArchive(archive, str(exc)) from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile, zlib.error, gzip.BadGzipFile) as exc:
        # A bad CRC, a truncated stream or a broken header: the download is damaged.
        raise DownloadError(
            f"corrupt archive {archive.name}: {exc}; nothing was extracted",
            "the file is truncated or damaged: download it again (with --force)",
        ) from None


def remove_entry(path: Path) -> None:
    """Remove a file, folder or link if there; a link is removed as a link, what it points to stays."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def move_into_place(source: Path, dest: Path) -> None:
    """Replace `dest` (file, folder or link) by `source`; the old one goes only once the new one is in.

    The old entry is renamed, never followed: a link planted at `dest` is removed as a
    link, and what it pointed at is not touched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    aside = None
    if dest.exists() or dest.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))  # a fresh name nobody planted
        os.replace(dest, aside / dest.name)
    try:
        os.replace(source, dest)
    except BaseException:
        if aside is not None:
            os.replace(aside / dest.name, dest)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)  # rmtree removes links inside it, never what they point to
