"""Memory: a folder too large for the memory budget streams from disk, and resident memory stays flat.

    python benchmarks/memory_stream.py [--images 20000] [--epochs 3] [--memory-budget 1M] [--keep DIR]

It writes a synthetic ImageFolder of 224x224 JPEGs (train/ and a small test/),
trains on the CPU through cnnkit's engine with a memory budget low enough to
force streaming, and samples resident memory (RSS) through every epoch: the
main process at each epoch's end, and the peak of the main process plus its
DataLoader workers during the epoch. Flat means the end-of-epoch RSS does not
climb from one epoch to the next. LeNet (fed at 32x32, resized on the device)
keeps the run bound by JPEG decoding, which is what streaming is about.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads, for both loops alike)
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Context, Row, cnnkit_train, memory_with_workers, mib, rss_bytes  # noqa: E402

from cnnkit.data.batches import StreamBatches  # noqa: E402
from cnnkit.engine.config import TrainConfig  # noqa: E402

SIDE = 224
CLASSES = 10
FLAT_TOLERANCE = 32 * 2**20  # end-of-epoch RSS may wander this much (allocator noise) and still count as flat


def write_folder(root: Path, images: int, seed: int = 0, workers: int = 4) -> Path:
    """train/<class>/*.jpg (98%) and test/<class>/*.jpg (2%, at least one per class): smooth, small JPEGs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    # One smooth pattern per class (stripes at a class-specific angle and colour), so files stay small.
    templates = []
    for c in range(CLASSES):
        angle = np.pi * c / CLASSES
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (np.cos(angle) * xx + np.sin(angle) * yy))
        colour = rng.uniform(0.3, 1.0, 3)
        templates.append((wave[..., None] * colour * 255).astype(np.uint8))
    test_count = max(CLASSES, images // 50)
    jobs = []
    for i in range(images):
        split = "test" if i < test_count else "train"
        jobs.append((root / split / f"class{i % CLASSES}" / f"{i:06d}.jpg", i % CLASSES, int(rng.integers(0, SIDE)), int(rng.integers(-40, 40))))
    for split in ("train", "test"):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)

    def write(job) -> None:
        path, label, shift, brightness = job
        pixels = np.clip(np.roll(templates[label], shift, axis=1).astype(np.int16) + brightness, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=85)

    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while encoding
        list(pool.map(write, jobs))
    return root


class EpochSampler:
    """Samples memory in a thread; `cut()` returns (peak PSS of main + workers since the last cut, main RSS now)."""

    def __init__(self, every_s: float = 0.05):
        self.every_s, self.peak = every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, memory_with_workers())

    def __enter__(self) -> "EpochSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        self._thread.join()
        return False

    def cut(self) -> tuple[int, int]:
        peak, self.peak = max(self.peak, memory_with_workers()), 0
        return peak, rss_bytes()


def measure(folder: Path, out: Path, epochs: int = 3, memory_budget: str = "1M", workers: int = 2, model: str = "lenet") -> dict:
    """Train on the folder; per-epoch RSS figures, the rate and whether the data really streamed."""
    config = TrainConfig(model=model, dataset=str(folder), epochs=epochs, memory_budget=memory_budget, workers=workers,
                         out=str(out), device="cpu")
    epochs_seen: list[dict] = []
    with EpochSampler() as sampler:
        def on_epoch(trainer) -> None:
            peak, now = sampler.cut()
            row = trainer.state.history[-1]
            epochs_seen.append({"epoch": row["epoch"], "rss_end": now, "rss_peak": peak, "images_per_s": row["images_per_s"]})

        run = cnnkit_train(config, torch.device("cpu"), on_epoch)
    ends = [e["rss_end"] for e in epochs_seen]
    batches = run.trainer.s.train_batches
    count = len(batches.dataset) if isinstance(batches, StreamBatches) else len(batches.labels)
    return {
        "epochs": epochs_seen,
        "streamed": isinstance(run.trainer.s.train_batches, StreamBatches),
        "images": count,
        "growth": ends[-1] - ends[0],
        "flat": ends[-1] - ends[0] <= FLAT_TOLERANCE,
        "rate": sorted(e["images_per_s"] for e in epochs_seen)[len(epochs_seen) // 2],
        "decoded_bytes": count * 3 * SIDE * SIDE,
    }


def report_lines(result: dict) -> list[str]:
    per_epoch = ", ".join(f"{mib(e['rss_end'])} (peak PSS with workers {mib(e['rss_peak'])})" for e in result["epochs"])
    return [
        f"streamed from disk: {'yes' if result['streamed'] else 'NO'}; {result['images']:,} training images would take "
        f"{mib(result['decoded_bytes'])} decoded",
        f"RSS at the end of each epoch: {per_epoch}",
        f"growth from the first epoch's end to the last: {result['growth'] / 2**20:+.1f} MiB -> "
        f"{'flat' if result['flat'] else 'NOT flat'} (tolerance {mib(FLAT_TOLERANCE)})",
    ]


def case(ctx: Context) -> list[Row]:
    """For run.py: a smaller folder under --quick, the full 20,000 otherwise. It runs in a fresh process,
    so the RSS it reports is the streaming run's own, not what earlier cases left behind (CPU only)."""
    images = 1000 if ctx.quick else 20000
    done = subprocess.run([sys.executable, __file__, "--images", str(images), "--json"], capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Row(f"6. streamed 224px folder, {images:,} JPEGs", notes=[f"memory_stream.py failed: {tail}"])]
    result = json.loads(done.stdout)
    ends = " -> ".join(f"{e['rss_end'] / 2**20:,.0f}" for e in result["epochs"])
    row = Row(f"6. streamed 224px folder, {images:,} JPEGs, budget 1M, lenet", cnnkit=f"{result['rate']:,.0f} img/s",
              cnnkit_mem=f"RSS {ends} MiB: {'flat' if result['flat'] else 'NOT flat'}")
    row.notes.extend(report_lines(result))
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="JPEGs in the synthetic folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--memory-budget", default="1M", help="cnnkit's --memory-budget; low enough to force streaming")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the folder here instead of a temporary one")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnkit-memory-") as tmp:
        folder = args.keep or Path(tmp) / "photos"
        if not (folder / "train").is_dir():
            print(f"writing {args.images:,} JPEGs of {SIDE}x{SIDE} to {folder}...", file=sys.stderr, flush=True)
            write_folder(folder, args.images)
        result = measure(folder, Path(tmp) / "runs", args.epochs, args.memory_budget, args.workers, args.model)
    if args.json:
        print(json.dumps(result))
        sys.exit(0 if result["flat"] and result["streamed"] else 1)
    print(f"{args.model} on {result['images']:,} streamed {SIDE}x{SIDE} JPEGs, {args.epochs} epochs, "
          f"--memory-budget {args.memory_budget}, {args.workers} workers, median {result['rate']:,.0f} img/s")
    print("\n".join(report_lines(result)))
    sys.exit(0 if result["flat"] and result["streamed"] else 1)


if __name__ == "__main__":
    main()
