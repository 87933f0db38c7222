"""Install a source (dataset or weights) where cnnkit and torchvision look for it.

How each layout is installed (the folders and files are the catalog entry's, cnnkit.data.catalog):
- "idx-gz" (mnist, fashion-mnist): the .gz files, each also decompressed beside it,
  which is what torchvision's MNIST class checks for.
- "cifar-tar" (cifar10): the archive extracted, each member checked against its MD5;
  the archive is removed afterwards.
- "pets-zip" (cats-dogs): the zip's class folders; undecodable images moved to
  <name>-quarantine/; <name>.json records the zip's size and the sha256 the first
  download saw.
- "weights": <torch hub dir>/checkpoints/<torchvision's file name>.

What is present and verifies is not fetched again unless `force` is set. Nothing here
writes through a link that was already in the data folder: files are created afresh
(`download.new_file`), folders are extracted into a new temporary folder and renamed
into place, and what they replace is renamed or unlinked, never followed.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import gzip
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.data.catalog import CatalogEntry, RemoteFile
from cnnkit.hub import sources as tables
from cnnkit.hub.archives import extracted, move_into_place, remove_entry
from cnnkit.hub.download import (CHUNK, RetryPolicy, checksum_matches, fetch, file_digest, install_verified,
                                  mismatch_error, new_file, partial_path)
from cnnkit.hub.sources import Source
from cnnkit.errors import DataError, DownloadError
from cnnkit.fileio import atomic_file, atomic_write_text
from cnnkit.reporting import Reporter, human_bytes

SHIPPED_NOTE = "ships inside the cnnkit package; nothing to download"


@dataclass
class InstallOptions:
    data_dir: Path
    mirror: str | None = None
    force: bool = False
    reporter: Reporter = field(default_factory=Reporter)
    policy: RetryPolicy = field(default_factory=RetryPolicy.from_env)  # a bad deadline is refused up front


@dataclass
class InstallResult:
    name: str
    action: str  # "downloaded", "imported", "already present", "shipped"
    path: Path | None
    quarantined: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "action": self.action, "path": str(self.path) if self.path else None,
            "quarantined": [{"path": q.path, "reason": q.reason} for q in self.quarantined], "notes": self.notes,
        }


# Resolving names -------------------------------------------------------------------------


def dataset_source(name: str) -> CatalogEntry:
    key = name.strip().lower()
    table = tables.sources()
    if key in table and table[key].layout != "weights":
        return table[key]
    names = tables.dataset_names()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"downloadable datasets: {', '.join(names)}"
    raise DataError(f"unknown dataset '{name}'", hint)


def weights_source(model: str) -> Source:
    from cnnkit.models import get_spec

    spec = get_spec(model)  # an unknown name is a ModelError listing close matches
    source = tables.sources().get(f"weights:{spec.name}")
    if source is None:
        spec.require_weights()  # raises "has no pretrained weights" for the tutorial models
        raise DataError(f"no download is known for {spec.name}'s weights")
    return source


def target_dir(source: CatalogEntry | Source, data_dir: Path) -> Path:
    if source.layout == "weights":
        return tables.hub_dir() / source.folder
    return Path(data_dir) / source.folder


# Status (for --list and for idempotence) -----------------------------------------------------


def status(source: CatalogEntry | Source, data_dir: Path) -> str:
    """'verified', 'missing', 'corrupt', 'unverified' or 'partial (N MiB)'."""
    folder = target_dir(source, data_dir)
    if source.layout in ("idx-gz", "weights"):
        states = [_file_state(folder / f.name, f) for f in source.files]
        if source.layout == "idx-gz" and all(s == "verified" for s in states):
            if not all((folder / _gunzipped(f.name)).is_file() for f in source.files):
                return "unverified"
        return _combine(states, [partial_path(folder / f.name) for f in source.files])
    partials = [partial_path(Path(data_dir) / f.name) for f in source.files]
    if source.layout == "cifar-tar":
        states = [
            "missing" if not (folder / rel).is_file() else ("verified" if file_digest(folder / rel, "md5") == md5 else "corrupt")
            for rel, md5 in source.extracted
        ]
        return _combine(states, partials)
    return _pets_state(source, data_dir, partials)


def _file_state(path: Path, remote: RemoteFile) -> str:
    if not path.is_file():
        return "missing"
    return "verified" if checksum_matches(path, remote)[0] else "corrupt"


def _combine(states: list[str], partials: list[Path]) -> str:
    if all(s == "verified" for s in states):
        return "verified"
    if "corrupt" in states:
        return "corrupt"
    kept = sum(p.lstat().st_size for p in partials if p.is_file() and not p.is_symlink())
    if kept:
        return f"partial ({human_bytes(kept)})"
    return "missing" if all(s == "missing" for s in states) else "incomplete"


def _has_class_folders(entry: CatalogEntry, root: Path) -> bool:
    return all((root / name).is_dir() for name in entry.classes)


def _pets_state(entry: CatalogEntry, data_dir: Path, partials: list[Path]) -> str:
    from cnnkit.hub.quarantine import count_images

    root = Path(data_dir) / entry.folder
    if not _has_class_folders(entry, root):
        return _combine(["missing"], partials)
    record = _read_record(entry, Path(data_dir))
    if record is None:
        return "unverified"
    return "verified" if record.get("images") == count_images(root) else "corrupt"


# Installing ---------------------------------------------------------------------------------


def install(source: CatalogEntry | Source, options: InstallOptions, imports: dict[str, Path] | None = None) -> InstallResult:
    """Make `source` present and verified. `imports` maps file names to files given with --from."""
    imports = imports or {}
    installer = {"idx-gz": _install_idx, "cifar-tar": _install_cifar, "pets-zip": _install_pets, "weights": _install_weights}
    return installer[source.layout](source, options, imports)


def fetch_missing(entry: CatalogEntry, data_dir: Path) -> InstallResult:
    """The `on_missing` of commands that need a catalog dataset (train, evaluate, ...): install it.

    It fetches through the same code as `cnnkit download` (the entry's files and sums,
    .partial files, retries), from CNNKIT_MIRROR when set.
    """
    import os

    name = entry.name
    options = InstallOptions(Path(data_dir), mirror=os.environ.get("CNNKIT_MIRROR") or None, reporter=Reporter())
    try:
        return install(dataset_source(name), options)
    except DownloadError as exc:
        # Train has no --mirror/--from of its own: point at the download command.
        raise DownloadError(
            f"dataset '{name}' is not in {data_dir} and could not be downloaded: {exc.message}",
            f"run `cnnkit download {name} --mirror URL` (or set CNNKIT_MIRROR), or "
            f"`cnnkit download {name} --from FILE` with the files fetched by hand",
        ) from None


def match_imports(sources: list[CatalogEntry | Source], paths: list[Path]) -> list[dict[str, Path]]:
    """Assign each --from file to the source file it stands for: by name, else by MD5.

    A source with a single file takes a single leftover file whatever its name, so a
    wrong file is reported as a checksum mismatch rather than as "not used".
    """
    files = []
    folders = {}  # each --from folder and the names found in it
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            wanted = {f.name for s in sources for f in s.files}
            found = [p for p in sorted(path.iterdir()) if p.name in wanted]
            if not found:
                raise DataError(f"--from {path}: the folder holds none of {', '.join(sorted(wanted))}")
            files.extend(found)
            folders[path] = {p.name for p in found}
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"--from {path}: no such file or folder")
    assigned: list[dict[str, Path]] = [{} for _ in sources]
    left = list(files)
    for index, source in enumerate(sources):
        for remote in source.files:
            hit = next((p for p in left if p.name == remote.name), None)
            if hit is not None:
                assigned[index][remote.name] = hit
                left.remove(hit)
    for index, source in enumerate(sources):
        for remote in source.files:
            if remote.name in assigned[index] or remote.md5 is None:
                continue
            hit = next((p for p in left if file_digest(p, "md5") == remote.md5), None)
            if hit is not None:
                assigned[index][remote.name] = hit
                left.remove(hit)
    single = [i for i, s in enumerate(sources) if len(s.files) == 1 and not assigned[i]]
    if len(left) == 1 and len(single) == 1:
        assigned[single[0]][sources[single[0]].files[0].name] = left.pop()
    if left:
        names = ", ".join(f.name for s in sources for f in s.files)
        raise DataError(
            f"--from {left[0]} matches none of the files wanted ({names})",
            "pass the file under its upstream name, or check that it is the right file",
        )
    _refuse_partial_folders(sources, assigned, folders)
    return assigned


def _refuse_partial_folders(sources, assigned: list[dict[str, Path]], folders: dict[Path, set[str]]) -> None:
    """A --from folder that holds some of a dataset's files but not all: name the missing one.

    Otherwise the missing file would be downloaded, and offline that fails as a network error
    when the user's mistake is a file left out of the folder.
    """
    for source, got in zip(sources, assigned):
        for folder, names in folders.items():
            if not names & {f.name for f in source.files}:
                continue
            missing = [f.name for f in source.files if f.name not in got]
            if missing:
                raise DataError(
                    f"--from {folder}: the folder has {len(got)} of the {len(source.files)} files of "
                    f"{source.name}; missing: {', '.join(missing)}",
                    "copy the missing file(s) into the folder, or pass each with --from",
                )


def _obtain(remote: RemoteFile, dest: Path, options: InstallOptions, imported: Path | None,
            copy: bool = True) -> tuple[Path, str]:
    """Make a verified copy of `remote` available; returns (path, action).

    With `copy=False` an imported file is verified where it lies and used from there
    (archives that are only read once, so no second copy of a large file is made).
    """
    if imported is not None:
        if not copy:
            ok, actual = checksum_matches(imported, remote)
            if not ok:
                raise mismatch_error(remote, str(imported), actual)
            return imported, "imported"
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(dest)
        with open(imported, "rb") as source, new_file(partial) as copy:
            shutil.copyfileobj(source, copy, CHUNK)
        install_verified(partial, dest, remote, str(imported))
        return dest, "imported"
    if dest.is_file() and not options.force and checksum_matches(dest, remote)[0]:
        return dest, "already present"
    fetch(remote, dest, mirror=options.mirror, reporter=options.reporter, policy=options.policy)
    return dest, "downloaded"


def _merge_action(actions: list[str]) -> str:
    for action in ("downloaded", "imported"):
        if action in actions:
            return action
    return "already present"


def _gunzipped(name: str) -> str:
    return name[: -len(".gz")] if name.endswith(".gz") else name


def _install_idx(source: CatalogEntry, options: InstallOptions, imports: dict[str, Path]) -> InstallResult:
    folder = target_dir(source, options.data_dir)
    actions = []
    # Files given with --from first: a bad one is reported before anything is downloaded.
    for remote in sorted(source.files, key=lambda f: f.name not in imports):
        path, action = _obtain(remote, folder / remote.name, options, imports.get(remote.name))
        actions.append(action)
        plain = folder / _gunzipped(remote.name)
        if action != "already present" or not plain.is_file():
            try:
                with gzip.open(path, "rb") as packed, atomic_file(plain) as out:
                    shutil.copyfileobj(packed, out, 1 << 20)
            except (OSError, EOFError) as exc:
                raise DownloadError(f"cannot decompress {path}: {exc}", "the file is damaged; run again with --force") from None
    return InstallResult(source.name, _merge_action(actions), folder.parent)


def _install_cifar(source: CatalogEntry, options: InstallOptions, imports: dict[str, Path]) -> InstallResult:
    data_dir = Path(options.data_dir)
    folder = target_dir(source, data_dir)
    if not options.force and not imports and status(source, data_dir) == "verified":
        return InstallResult(source.name, "already present", folder)
    remote = source.files[0]
    archive, action = _obtain(remote, data_dir / remote.name, options, imports.get(remote.name), copy=False)
    with extracted(archive, data_dir, reporter=options.reporter) as temp:
        new = temp / source.folder
        for rel, md5 in source.extracted:
            if not (new / rel).is_file():
                raise DownloadError(f"{archive.name} has no {source.folder}/{rel}", "the archive is not the one expected")
            actual = file_digest(new / rel, "md5")
            if actual != md5:
                raise DownloadError(
                    f"checksum mismatch for {source.folder}/{rel} inside {archive.name}: expected md5 {md5}, got {actual}",
                    "nothing was installed; the archive is not the one expected",
                )
        move_into_place(new, folder)
    if action != "imported":
        archive.unlink()  # the batches are verified one by one; the 170 MB archive is not needed
    return InstallResult(source.name, action, folder)


def _record_name(entry: CatalogEntry) -> str:
    """What the first download saw of an archive without a published checksum: <name>.json in the data root."""
    return f"{entry.name}.json"


def _quarantine_name(entry: CatalogEntry) -> str:
    return f"{entry.name}-quarantine"


def _read_record(entry: CatalogEntry, data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / _record_name(entry)).read_text())
    except (OSError, ValueError):
        return None


def _install_pets(source: CatalogEntry, options: InstallOptions, imports: dict[str, Path]) -> InstallResult:
    from cnnkit.hub.quarantine import count_images, quarantine_corrupt

    data_dir = Path(options.data_dir)
    folder = target_dir(source, data_dir)
    quarantine_name = _quarantine_name(source)
    if not options.force and not imports and status(source, data_dir) == "verified":
        record = _read_record(source, data_dir) or {}
        return InstallResult(source.name, "already present", folder, _quarantined_from(record))
    remote = source.files[0]
    imported = imports.get(remote.name)
    archive, action = _obtain(remote, data_dir / remote.name, options, imported, copy=False)
    sha256 = _check_first_seen(source, archive, data_dir, drop=action == "downloaded")
    with extracted(archive, data_dir, reporter=options.reporter) as temp:
        new = temp / source.folder
        if not _has_class_folders(source, new):
            wanted = " and ".join(f"{source.folder}/{name}" for name in source.classes)
            raise DownloadError(f"{archive.name} has no {wanted}", "the archive is not the one expected")
        quarantined = quarantine_corrupt(new, temp / quarantine_name, reporter=options.reporter)
        images = count_images(new)
        move_into_place(new, folder)
        old_quarantine = data_dir / quarantine_name
        if quarantined:
            move_into_place(temp / quarantine_name, old_quarantine)
        else:
            remove_entry(old_quarantine)
    previous = _read_record(source, data_dir) or {}
    record = {
        "file": remote.name, "url": remote.urls[0], "size": archive.stat().st_size, "sha256": sha256,
        "first_seen": previous.get("first_seen") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images": images, "quarantine": quarantine_name,
        "quarantined": [{"path": q.path, "reason": q.reason} for q in quarantined],
    }
    atomic_write_text(data_dir / _record_name(source), json.dumps(record, indent=2) + "\n")
    if action != "imported":
        archive.unlink()  # 800 MB; the images are extracted and the record keeps its sha256
    notes = [f"{len(quarantined)} undecodable image(s) moved to {data_dir / quarantine_name}"] if quarantined else []
    return InstallResult(source.name, action, folder, quarantined, notes)


def _quarantined_from(record: dict) -> list:
    from cnnkit.hub.quarantine import Quarantined

    return [Quarantined(q["path"], q["reason"]) for q in record.get("quarantined", [])]


def _check_first_seen(entry: CatalogEntry, archive: Path, data_dir: Path, drop: bool) -> str:
    """No checksum is published for the archive: trust the first sha256 seen, then hold to it."""
    sha256 = file_digest(archive, "sha256")
    record = _read_record(entry, data_dir)
    if record and record.get("sha256") and record["sha256"] != sha256:
        if drop:
            archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.name} has sha256 {sha256}, but the first download recorded {record['sha256']} "
            f"in {data_dir / _record_name(entry)}",
            f"the file changed upstream or is damaged; if the change is expected, delete {_record_name(entry)} and run again",
        )
    return sha256


def _install_weights(source: Source, options: InstallOptions, imports: dict[str, Path]) -> InstallResult:
    remote = source.files[0]
    dest = target_dir(source, options.data_dir) / remote.name
    path, action = _obtain(remote, dest, options, imports.get(remote.name))
    return InstallResult(source.name, action, path)
