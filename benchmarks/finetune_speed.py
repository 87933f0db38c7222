"""Finetune data speed on CPU: decoding cold vs. from the cache, streamed vs. in-memory epochs.

    python benchmarks/finetune_speed.py --folder tests/data/pets-sample --synthetic 600

For each folder it reports: the decode pass (cold: JPEG decode + resize 256 /
crop 224, then the on-disk cache is written) and the warm load from that
cache; then a two-epoch `cnnkit finetune` head phase (frozen backbone, random
ResNet18 weights) with the cache and with --no-cache (DataLoader workers
decode every epoch), reporting images/s of epoch 1 and epoch 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synthetic_folder(root: Path, count: int) -> Path:
    """Photo-sized JPEGs of mixed sizes in two classes (decoded at 224 via resize 256 + center crop)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(500, 375), (375, 500), (640, 480), (320, 240)]
    for i in range(count):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR).save(cls / f"{i:05d}.jpg", quality=90)
    return root


def timed_load(folder: Path) -> tuple[float, int]:
    from cnnkit.data.resolve import load_dataset

    started = time.perf_counter()
    dataset = load_dataset(str(folder), image_size=224, resize_to=256)
    return time.perf_counter() - started, sum(len(s) for s in dataset.splits.values())


def finetune_epochs(folder: Path, weights: Path, out: Path, cache: bool, limit: int) -> list[float]:
    args = [sys.executable, "-m", "cnnkit", "finetune", "resnet18", "--weights", str(weights), "--dataset", str(folder),
            "--head-epochs", "2", "--batch-size", "32", "--limit", str(limit), "--val-split", "0.1",
            "--out", str(out), "--json", "--cache" if cache else "--no-cache"]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    run = Path(json.loads(result.stdout)["run_dir"])
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["images_per_s"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, action="append", default=[])
    parser.add_argument("--synthetic", type=int, default=0, help="also build a synthetic folder of N JPEGs")
    parser.add_argument("--limit", type=int, default=64, help="training images per finetune epoch")
    args = parser.parse_args()

    import torch
    import torchvision

    work = Path(tempfile.mkdtemp(prefix="cnnkit-finetune-speed-"))
    weights = work / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    folders = [shutil.copytree(f, work / f.name) for f in args.folder]
    if args.synthetic:
        folders.append(synthetic_folder(work / f"synthetic-{args.synthetic}", args.synthetic))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for folder in folders:
        cold, n = timed_load(folder)
        warm, _ = timed_load(folder)
        cached = finetune_epochs(folder, weights, work / "runs", True, args.limit)
        streamed = finetune_epochs(folder, weights, work / "runs", False, args.limit)
        print(f"{folder.name}: {n} images | decode cold {n / cold:,.0f} img/s ({cold:.1f}s), "
              f"from cache {n / warm:,.0f} img/s ({warm:.2f}s) | head-phase epochs, in memory: "
              f"{cached[0]:.1f} then {cached[1]:.1f} img/s; streamed (--no-cache): {streamed[0]:.1f} then {streamed[1]:.1f} img/s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
