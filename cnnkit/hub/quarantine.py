"""Decode every image of a freshly extracted folder once; move the ones that fail aside.

The PetImages archive ships a few files that are not decodable images (the seed
tutorial found Cat/666.jpg and Dog/11702.jpg). They are moved, never deleted, to a
quarantine folder outside the dataset, keeping their relative paths, so training
never meets them and a user can still look at them.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cnnkit.data.images import ImageReadError, is_image_file, load_image
from cnnkit.reporting import QUIET, Reporter


@dataclass(frozen=True)
class Quarantined:
    path: str  # relative to the dataset folder, e.g. "Cat/666.jpg"
    reason: str


def _decode_error(path: Path) -> str | None:
    try:
        load_image(path, channels=3)
    except ImageReadError as exc:
        return exc.reason
    return None


def quarantine_corrupt(root: Path, quarantine_dir: Path, *, workers: int | None = None,
                       reporter: Reporter = QUIET) -> list[Quarantined]:
    """Decode each image under `root`; move undecodable ones to `quarantine_dir`. Returns them, sorted."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    workers = workers or min(8, os.cpu_count() or 1)
    # Pillow releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(workers) as pool, reporter.task("checking images", len(files)) as advance:
        reasons = []
        for reason in pool.map(_decode_error, files):
            reasons.append(reason)
            advance(1)
    found = []
    for path, reason in zip(files, reasons):
        if reason is None:
            continue
        relative = path.relative_to(root)
        target = quarantine_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        found.append(Quarantined(relative.as_posix(), reason))
    return found


def count_images(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and is_image_file(p))
