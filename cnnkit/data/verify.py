"""`inspect-dataset --verify`: decode every file of an image folder and list the bad ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.data import folder
from cnnkit.data.images import JUNK_NAMES, ImageReadError, is_image_file, load_image
from cnnkit.reporting import QUIET, Reporter


@dataclass
class VerifyResult:
    root: Path
    checked: int = 0  # files with an image extension that were decoded
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), sorted
    ignored: list[str] = field(default_factory=list)  # system files such as Thumbs.db

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "checked": self.checked,
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "ignored": self.ignored,
        }


def split_files(root: Path) -> dict[str, list[Path]]:
    """Every file under the class folders of each split (not only image extensions)."""
    dirs = folder.find_split_dirs(root) or {"train": root}
    found: dict[str, list[Path]] = {}
    for split, directory in dirs.items():
        files = []
        for class_dir in folder.class_folders(directory):
            for path in sorted(class_dir.rglob("*")):
                parts = path.relative_to(class_dir).parts
                if path.is_file() and not any(part.startswith(".") for part in parts[:-1]):
                    files.append(path)
        found[split] = files
    return found


def verify_folder(root: Path, workers: int = 4, reporter: Reporter = QUIET) -> VerifyResult:
    """Decode every image-named file fully; report unreadable ones and stray non-image files."""
    result = VerifyResult(root)
    to_decode = []
    for files in split_files(root).values():
        for path in files:
            if path.name.lower() in JUNK_NAMES or path.name.startswith("."):
                result.ignored.append(str(path))
            elif is_image_file(path):
                to_decode.append(path)
            else:
                suffix = path.suffix or "no extension"
                result.problems.append((str(path), f"not an image file ({suffix}); the loader skips it"))

    def check(path: Path) -> tuple[str, str] | None:
        try:
            # Channels 3 decodes every mode fully; a truncated file fails here, not at training.
            load_image(path, 3)
            return None
        except ImageReadError as exc:
            return str(path), exc.reason
        finally:
            advance(1)

    with reporter.task(f"verifying {root.name}", len(to_decode)) as advance, ThreadPoolExecutor(workers) as pool:
        result.problems.extend(p for p in pool.map(check, to_decode) if p is not None)
    result.checked = len(to_decode)
    result.problems.sort()
    return result
