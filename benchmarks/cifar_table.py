"""The seed tutorial's CIFAR-10 table: LeNet, SGD(lr 0.001, momentum 0.9), batch 14, 3 epochs.

    python benchmarks/cifar_table.py [--dataset cifar10] [--data-dir data]

The tutorial reports about 39%, 49% and 52% validation accuracy after epochs
1-3 on the full dataset (`cnnkit download cifar10` first). Without it, the
script runs on the 400-image CIFAR-10 sample in tests/data, where the figures
only show that the recipe runs: 300 training images are far too few to learn CIFAR.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import table

from cnnkit.engine.config import TrainConfig
from cnnkit.reporting import Reporter
from cnnkit.engine.runner import start_training

TUTORIAL = [0.39, 0.49, 0.52]
SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "cifar10-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="default: cifar10 if it is in --data-dir, else the sample")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dataset = args.dataset or ("cifar10" if (Path(args.data_dir) / "cifar-10-batches-py").is_dir() else None)
    with tempfile.TemporaryDirectory() as out:
        if dataset is None:  # a copy, so the decode cache is not written into the repository
            dataset = shutil.copytree(SAMPLE, Path(out) / "cifar10-sample")
        config = TrainConfig(model="lenet", dataset=str(dataset), data_dir=args.data_dir, epochs=3, batch_size=14,
                             optimizer="sgd", lr=0.001, momentum=0.9, schedule="none", out=out, device=args.device)
        summary = start_training(config, Reporter())
        import torch

        history = torch.load(Path(summary["run_dir"]) / "last.pt", weights_only=True)["train"]["history"]
    rows = [(row["epoch"], f"{TUTORIAL[i]:.0%}", f"{row['val_acc']:.1%}", f"{row['images_per_s']:,.0f}") for i, row in enumerate(history)]
    print(f"dataset: {dataset}")
    table(rows, ("epoch", "tutorial val acc", "cnnkit val acc", "images/s"))


if __name__ == "__main__":
    main()
