"""LeNet on CIFAR-10-shaped data: cnnkit's engine against the seed tutorial's loop, in one run.

    python benchmarks/train_speed.py [--images 10000] [--device cpu|cuda]

Both train one epoch on the same synthetic 32x32 RGB images. The ratio is what
counts; absolute figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads, for both loops alike)
import torch

from common import seed_style_train, synthetic_idx_dir, table

from cnnkit.data.idx import read_idx
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.device import resolve_device, usable_cores
from cnnkit.reporting import Reporter
from cnnkit.engine.runner import start_training
from cnnkit.models import get_model


def cnnkit_rate(data: Path, out: Path, batch_size: int | None, device: str, **overrides) -> float:
    config = TrainConfig(model="lenet", dataset=str(data), epochs=1, out=str(out), device=device,
                         optimizer="sgd", lr=0.001, schedule="none", **overrides)
    if batch_size:
        config.batch_size = batch_size
    return start_training(config, Reporter(quiet=True))["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed-workers", type=int, default=2, help="DataLoader workers of the seed loop (the tutorial uses 2)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic_idx_dir(tmp / "cifar-shaped", args.images, (32, 32, 3))
        images, labels = read_idx(data / "train-images-idx3-ubyte"), read_idx(data / "train-labels-idx1-ubyte")
        rates = {"seed": [], "cnnkit-14": [], "cnnkit-default": []}
        for _ in range(args.rounds):  # interleaved, so a burst of load hits every contender alike
            torch.manual_seed(0)
            model = get_model("lenet", in_channels=3, num_classes=10).to(device)
            rates["seed"].append(seed_style_train(model, images, labels, batch_size=14, workers=args.seed_workers,
                                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
            rates["cnnkit-14"].append(cnnkit_rate(data, tmp / "runs", 14, args.device))
            rates["cnnkit-default"].append(cnnkit_rate(data, tmp / "runs", None, args.device))
        seed = statistics.median(rates["seed"])
        rows = [("seed-style loop, batch 14", f"{seed:,.0f}", "1.0x")]
        for key, label in (("cnnkit-14", "cnnkit, batch 14"), ("cnnkit-default", f"cnnkit, default batch {TrainConfig().batch_size}")):
            ours = statistics.median(rates[key])
            rows.append((label, f"{ours:,.0f}", f"{ours / seed:.1f}x"))
        print(f"LeNet on {args.images:,} CIFAR-10-shaped images, 1 epoch, SGD lr 0.001; {platform.machine()}, "
              f"{usable_cores()} cores, torch {torch.__version__}, device {device}; median of {args.rounds} interleaved rounds")
        table(rows, ("loop", "images/s", "vs seed"))


if __name__ == "__main__":
    main()
