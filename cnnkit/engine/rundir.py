"""Run directories: naming, metrics.csv and config.json."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fileio import atomic_write_text

METRIC_COLUMNS = ("epoch", "step", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


def new_run_dir(out: str | Path, model: str, dataset_name: str, name: str | None) -> Path:
    """checkpoints/<model>-<dataset>[-N]/, or out/NAME; checked writable before training starts."""
    out = Path(out)
    if name:
        run = out / name
        if (run / "last.pt").exists():
            raise CnnkitError(f"run directory {run} already holds a run", f"resume it with --resume {run}, or pick another --name")
    else:
        base = f"{_slug(model)}-{_slug(dataset_name)}"
        run, n = out / base, 1
        while run.exists() and any(run.iterdir()):
            n += 1
            run = out / f"{base}-{n}"
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        remove_stale_temporaries(run)
    except OSError as exc:
        raise CnnkitError(f"cannot write to run directory {run}: {exc.strerror}", "choose a writable place with --out") from None
    return run


RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.json")


def remove_stale_temporaries(run: Path) -> None:
    """Delete the hidden temporary files a killed run left mid-write (one can be as big as a checkpoint).

    Only the process that owns the run writes in it, so any such file is dead.
    """
    for name in RUN_FILES:
        for stale in run.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def check_writable(run: Path) -> None:
    if not os.access(run, os.W_OK):
        raise CnnkitError(f"run directory {run} is not writable", "fix its permissions or copy the run elsewhere")


def write_metrics(run: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run / "metrics.csv", buffer.getvalue())


def write_config(run: Path, config: dict) -> None:
    atomic_write_text(run / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
