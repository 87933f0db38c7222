"""Shared pieces of the benchmarks: synthetic datasets on disk and the seed-style reference loop."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn

from cnnkit.data.idx import write_idx


def synthetic_idx_dir(folder: Path, n: int, shape: tuple[int, ...], classes: int = 10, seed: int = 0) -> Path:
    """An IDX directory (what export-idx writes) with random pixels: (n, H, W) grey or (n, H, W, 3) colour."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    test = max(1, n // 10)
    write_idx(folder / "t10k-images-idx3-ubyte", images[:test])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:test])
    return folder


class SeedStyleDataset(torch.utils.data.Dataset):
    """What the tutorials do: a PIL image per item, then ToTensor and Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std):
        self.images, self.labels = images, labels
        self.transform = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def seed_style_train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int, lr: float = 0.001,
                     optimizer: str = "sgd", workers: int = 2, mean=(0.5,), std=(0.5,), max_images: int | None = None) -> float:
    """The tutorial's loop for one epoch; returns images per second."""
    loader = torch.utils.data.DataLoader(SeedStyleDataset(images, labels, mean, std), batch_size=batch_size,
                                         shuffle=True, num_workers=workers)
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, running_loss = 0, 0.0
    started = time.perf_counter()
    for inputs, targets in loader:
        opt.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        opt.step()
        running_loss += loss.item()  # the tutorial reads the loss every batch
        seen += len(targets)
        if max_images and seen >= max_images:
            break
    return seen / (time.perf_counter() - started)


def table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(*headers)
    for row in rows:
        out.add_row(*map(str, row))
    Console().print(out)
