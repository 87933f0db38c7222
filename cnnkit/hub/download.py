"""Fetch one file over HTTP(S) into `<dest>.partial`, verify it, and only then move it into place.

- An interrupted transfer resumes with a Range request; a server that ignores
  Range (200 instead of 206) makes it start over.
- Connection errors and 5xx are retried with exponential backoff. A name that does
  not resolve, or a host that refuses twice, means "offline" and fails at once.
- Mirrors: `--mirror BASE` replaces the upstream scheme and host and keeps the
  path; a flat `BASE/<file name>` is tried next. File names never change.
- Proxies come from the usual environment variables (urllib honours them).
- A file may bring no more than its expected size (`RemoteFile.byte_limit`), and has
  an overall deadline besides the read timeout, so neither an endless body nor a
  server that drips a byte at a time holds on forever.
- Every file written here is opened without following links: a link planted at
  NAME.partial is removed, never written through.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cnnkit.data.catalog import RemoteFile
from cnnkit.errors import DownloadError, UsageError
from cnnkit.reporting import QUIET, Reporter

CHUNK = 1 << 20
PARTIAL_SUFFIX = ".partial"
DEADLINE_ENV = "CNNKIT_DOWNLOAD_DEADLINE"
# The default deadline for one file: a floor for small files and slow starts, plus the
# time its byte limit takes at a rate slow enough for any working line (64 KiB/s:
# MNIST's 9.9 MB train images get 12.5 minutes, the 825 MB Cats vs. Dogs zip 4 hours).
DEADLINE_FLOOR_S = 600.0
SLOW_RATE = 64 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per URL, for errors during a transfer and for 5xx
    backoff_s: float = 0.5  # doubles after each failed attempt
    timeout_s: float = 8.0  # connect, and each read that stalls (a stalled read resumes with Range)
    deadline_s: float | None = None  # per file, all URLs and retries together; None: from its size

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """The default policy, with the deadline from CNNKIT_DOWNLOAD_DEADLINE when set (a bad value is refused)."""
        value = os.environ.get(DEADLINE_ENV, "").strip()
        if not value:
            return cls()
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise UsageError(f"{DEADLINE_ENV}={value!r} is not a number of seconds above 0",
                             f"unset it for a deadline from each file's size, or set e.g. {DEADLINE_ENV}=3600")
        return cls(deadline_s=seconds)

    def deadline_for(self, remote: RemoteFile) -> float:
        if self.deadline_s is not None:
            return self.deadline_s
        return DEADLINE_FLOOR_S + remote.byte_limit / SLOW_RATE


class Offline(Exception):
    """The host cannot be reached at all (name resolution failed, refused, unreachable)."""

    def __init__(self, reason: str, retry: bool = True):
        super().__init__(reason)
        self.retry = retry  # a name that does not resolve will not resolve in a second either


class NotFound(Exception):
    """The server answered 4xx: the file is not there."""


class Retryable(Exception):
    """A failure worth retrying: 5xx, a cut connection, a short body."""


class TooLarge(Exception):
    """The server sent (or announced) more than the file's byte limit; the partial was deleted."""


class DeadlinePassed(Exception):
    """The file's overall deadline passed; the partial is kept for a later resume."""


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PARTIAL_SUFFIX)


def candidate_urls(remote: RemoteFile, mirror: str | None) -> list[str]:
    """The URLs to try in order: the upstream ones, or their rewrites onto the mirror."""
    if not mirror:
        return list(remote.urls)
    base = mirror.rstrip("/")
    urls = [base + urlsplit(url).path for url in remote.urls] + [f"{base}/{remote.name}"]
    return list(dict.fromkeys(urls))


def new_file(path: Path):
    """Create `path` afresh and open it for writing (binary).

    Whatever is there already, a link planted there included, is removed, never
    followed; O_EXCL|O_NOFOLLOW then refuse anything that appears in between.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)  # the umask applies
    return os.fdopen(fd, "wb")


def _is_own_file(info: os.stat_result) -> bool:
    """A regular file with no other name: appending to it changes nothing but the partial."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _kept_partial_size(partial: Path) -> int:
    """Bytes an earlier transfer left in `partial` to resume from; 0 for none. A link there is removed."""
    try:
        info = os.lstat(partial)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode) or (stat.S_ISREG(info.st_mode) and not _is_own_file(info)):
        os.unlink(partial)  # a symbolic or hard link: never resume into (or measure) what it points to
        return 0
    if not stat.S_ISREG(info.st_mode):
        raise DownloadError(f"{partial} is in the way of the download and is not a regular file",
                            "move it away and run again")
    return info.st_size


def _append_to_partial(partial: Path, have: int):
    """Open the kept partial for appending, only if it is still our regular file of `have` bytes."""
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOENT):
            raise
        fd = None  # replaced by a link (ELOOP) or gone since it was measured
    if fd is not None:
        info = os.fstat(fd)
        if _is_own_file(info) and info.st_size == have:
            return os.fdopen(fd, "ab")
        os.close(fd)
    _drop(partial)
    raise _RangeRestart()


def _drop(partial: Path) -> None:
    partial.unlink(missing_ok=True)  # a link is removed as a link


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checksum_matches(path: Path, remote: RemoteFile) -> tuple[bool, str | None]:
    """(matches, actual hex). A file with nothing published to match always matches."""
    expected = remote.expected
    if expected is None:
        return True, None
    algorithm, want = expected
    actual = file_digest(path, algorithm)
    return actual.startswith(want) if algorithm == "sha256" else actual == want, actual


def mismatch_error(remote: RemoteFile, origin: str, actual: str) -> DownloadError:
    algorithm, want = remote.expected
    what = "sha256 prefix" if algorithm == "sha256" else algorithm
    return DownloadError(
        f"checksum mismatch for {remote.name} from {origin}: expected {what} {want}, got {actual}",
        "nothing was installed and any previous copy is untouched; the file is corrupt or not the "
        "one expected: fetch it again, or check the mirror or the file passed with --from",
    )


def install_verified(source_file: Path, dest: Path, remote: RemoteFile, origin: str) -> None:
    """Check `source_file` (a .partial) and rename it over `dest`; on mismatch delete it and raise."""
    ok, actual = checksum_matches(source_file, remote)
    if not ok:
        source_file.unlink(missing_ok=True)
        raise mismatch_error(remote, origin, actual)
    os.replace(source_file, dest)


def fetch(remote: RemoteFile, dest: Path, *, mirror: str | None = None, reporter: Reporter = QUIET,
          policy: RetryPolicy | None = None) -> str:
    """Download `remote` to `dest` (verified); returns the URL it came from."""
    policy = RetryPolicy.from_env() if policy is None else policy
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(dest)
    urls = candidate_urls(remote, mirror)
    failures: list[tuple[str, Exception]] = []
    unreachable: set[str] = set()  # a host found offline is not asked again for another path
    seconds = policy.deadline_for(remote)
    deadline = time.monotonic() + seconds
    try:
        for url in urls:
            if urlsplit(url).netloc in unreachable:
                continue
            try:
                resumed = _fetch_with_retries(url, partial, remote, reporter, policy, deadline)
            except (Offline, NotFound, Retryable, TooLarge) as exc:
                failures.append((url, exc))
                if isinstance(exc, Offline):
                    unreachable.add(urlsplit(url).netloc)
                continue
            if resumed and not checksum_matches(partial, remote)[0]:
                # The kept .partial may have come from another file; one clean try before failing.
                _drop(partial)
                try:
                    _fetch_with_retries(url, partial, remote, reporter, policy, deadline)
                except (Offline, NotFound, Retryable, TooLarge) as exc:
                    raise _failure_error(remote, [(url, exc)], mirror) from None
            install_verified(partial, dest, remote, url)
            return url
    except DeadlinePassed as exc:
        raise DownloadError(
            f"gave up on {remote.name} after the {seconds:g} s deadline for the file: {exc}",
            f"the server is too slow; {partial.name} is kept, so running again resumes it; the deadline "
            f"({DEADLINE_ENV}, seconds) is set from the file's size by default; or use --mirror or --from",
        ) from None
    raise _failure_error(remote, failures, mirror)


def _fetch_with_retries(url, partial: Path, remote: RemoteFile, reporter: Reporter, policy: RetryPolicy, deadline: float) -> bool:
    """Transfer into `partial`, retrying until `deadline` (time.monotonic); True when the last one resumed."""
    refused = 0
    for attempt in range(policy.attempts):
        left = _time_left(deadline, partial)
        try:
            # A read may stall for the timeout, but not past the deadline.
            return _transfer(url, partial, remote, reporter, min(policy.timeout_s, left), deadline)
        except Offline as exc:
            refused += 1
            if refused >= 2 or not exc.retry:
                raise
        except Retryable as exc:
            if attempt == policy.attempts - 1:
                raise
            reporter.note(f"{remote.name}: {exc}; retrying in {policy.backoff_s * 2 ** attempt:.1f} s")
        except _RangeRestart:
            continue
        time.sleep(min(policy.backoff_s * 2 ** attempt, _time_left(deadline, partial)))
    raise Retryable("gave up")


def _time_left(deadline: float, partial: Path) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        kept = partial.lstat().st_size if partial.is_file() and not partial.is_symlink() else 0
        raise DeadlinePassed(f"{kept:,} bytes arrived")
    return left


class _RangeRestart(Exception):
    """The server could not satisfy the resume request; the partial was dropped."""


def _open(url: str, have: int, timeout: float):
    from cnnkit.version import __version__

    headers = {"User-Agent": f"cnnkit/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            raise
        if exc.code >= 500 or exc.code == 429:
            raise Retryable(f"HTTP {exc.code} {exc.reason}") from None
        raise NotFound(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _classify_connect_error(exc.reason) from None
    except (TimeoutError, socket.timeout):
        raise Offline("connection timed out", retry=False) from None
    except ConnectionError as exc:
        raise Offline(_describe(exc)) from None


def _classify_connect_error(reason) -> Exception:
    if isinstance(reason, socket.gaierror):
        return Offline(f"name resolution failed: {reason.strerror or reason}", retry=False)
    if isinstance(reason, (TimeoutError, socket.timeout)):  # a silent firewall: waiting again would double the wait
        return Offline("connection timed out", retry=False)
    if isinstance(reason, ConnectionRefusedError) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED)
    ):
        return Offline(_describe(reason))
    if isinstance(reason, (ConnectionError, OSError)):
        return Retryable(_describe(reason))
    return NotFound(str(reason))


def _describe(exc) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _transfer(url: str, partial: Path, remote: RemoteFile, reporter: Reporter, timeout: float, deadline: float) -> bool:
    """One HTTP request; appends to the partial on 206. True when it resumed."""
    have = _kept_partial_size(partial)
    try:
        response = _open(url, have, timeout)
    except urllib.error.HTTPError:  # 416: the partial is not a prefix of what the server has
        _drop(partial)
        raise _RangeRestart() from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206 and (have == 0 or _range_start(response) != have):
            _drop(partial)  # a range we did not ask for: appending it would corrupt the file
            raise _RangeRestart()
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        limit = remote.byte_limit
        if length is not None and have + length > limit:
            _drop(partial)
            raise TooLarge(f"the server announced {have + length:,} bytes, more than the {limit:,} bytes expected")
        total = have + length if length is not None else remote.size
        bar = reporter.transfer(remote.name, url, total, have)
        received = 0
        try:
            with (_append_to_partial(partial, have) if resumed else new_file(partial)) as out:
                while True:
                    try:
                        block = response.read1(CHUNK)  # what has arrived, so a .partial grows as data comes
                    except (ConnectionError, TimeoutError, socket.timeout, OSError) as exc:
                        raise Retryable(f"connection lost after {have + received} bytes ({_describe(exc)})") from None
                    except Exception as exc:  # http.client.IncompleteRead and friends
                        raise Retryable(f"connection lost after {have + received} bytes ({type(exc).__name__})") from None
                    if not block:
                        break
                    if have + received + len(block) > limit:  # an endless body would fill the disk
                        raise TooLarge(f"the server sent more than the {limit:,} bytes expected; "
                                       f"stopped reading and deleted {partial.name}")
                    out.write(block)
                    received += len(block)
                    bar.advance(len(block))
                    if time.monotonic() > deadline:  # a server dripping bytes never trips the read timeout
                        raise DeadlinePassed(f"{have + received:,} bytes arrived")
        except KeyboardInterrupt:
            bar.interrupted(partial)
            raise
        except TooLarge:
            _drop(partial)
            raise
        finally:
            bar.close()
        if length is not None and received < length:
            raise Retryable(f"connection cut after {have + received} of {have + length} bytes")
    return resumed


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _failure_error(remote: RemoteFile, failures, mirror: str | None) -> DownloadError:
    tried = ", ".join(url for url, _ in failures)
    if all(isinstance(exc, Offline) for _, exc in failures):
        hosts = ", ".join(dict.fromkeys(urlsplit(url).netloc for url, _ in failures))
        reason = failures[-1][1]
        return DownloadError(
            f"no network: cannot reach {hosts} for {remote.name} ({reason})",
            f"on a machine without internet use --mirror URL (env CNNKIT_MIRROR) for a local mirror, "
            f"or fetch {remote.urls[0]} by hand and pass it with --from FILE",
        )
    # The most telling failure: an oversized answer, then a missing file, else the last one.
    url, exc = next(((u, e) for kind in (TooLarge, NotFound) for u, e in failures if isinstance(e, kind)), failures[-1])
    where = "on the mirror" if mirror else "upstream"
    return DownloadError(
        f"cannot download {remote.name} {where}: {exc} (tried {tried})",
        "check the --mirror URL (it replaces the upstream host; file names stay the same), "
        "or fetch the file by hand and pass it with --from FILE",
    )
