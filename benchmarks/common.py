"""Shared pieces of the benchmarks: synthetic datasets on disk and the seed-style reference loop."""

from __future__ import annotations

import time
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads, for both loops alike)
import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn

from cnnkit.data.idx import write_idx

# What a tutorial script runs with: torch's own default thread count. cnnkit's engine sets the process-wide
# count for its runs (one thread for tiny models on CPU), so each reference loop puts the default back first.
TUTORIAL_THREADS = torch.get_num_threads()


def tutorial_threads() -> None:
    torch.set_num_threads(TUTORIAL_THREADS)


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
                     optimizer: str = "sgd", workers: int = 2, mean=(0.5,), std=(0.5,), max_images: int | None = None,
                     device: torch.device | str | None = None) -> float:
    """The tutorial's loop for one epoch; returns images per second. `device`: move each batch there, as the GPU tutorials do."""
    tutorial_threads()
    loader = torch.utils.data.DataLoader(SeedStyleDataset(images, labels, mean, std), batch_size=batch_size,
                                         shuffle=True, num_workers=workers)
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, running_loss = 0, 0.0
    started = time.perf_counter()
    for inputs, targets in loader:
        if device is not None:
            inputs, targets = inputs.to(device), targets.to(device)
        opt.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        opt.step()
        running_loss += loss.item()  # the tutorial reads the loss every batch
        seen += len(targets)
        if max_images and seen >= max_images:
            break
    return seen / (time.perf_counter() - started)



@torch.no_grad()
def seed_style_evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int, workers: int = 2,
                        mean=(0.5,), std=(0.5,), device: torch.device | str | None = None) -> tuple[float, float]:
    """The tutorial's test loop (no_grad, argmax, `.item()` per batch); returns (accuracy, images per second)."""
    tutorial_threads()
    loader = torch.utils.data.DataLoader(SeedStyleDataset(images, labels, mean, std), batch_size=batch_size,
                                         shuffle=False, num_workers=workers)
    model.eval()
    correct = total = 0
    started = time.perf_counter()
    for inputs, targets in loader:
        if device is not None:
            inputs, targets = inputs.to(device), targets.to(device)
        _, predicted = torch.max(model(inputs), 1)
        total += targets.size(0)
        correct += (predicted == targets).sum().item()
    seconds = time.perf_counter() - started
    model.train()
    return correct / max(1, total), total / seconds


def tensor_resident_train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                          device: torch.device | str, lr: float = 0.001, mean=(0.5,), std=(0.5,)) -> float:
    """A bare loop over uint8 images already on the device, at torch's default threads and memory format.

    No metrics, no progress, no host synchronisation until the end; one epoch, images per second.
    """
    tutorial_threads()
    device = torch.device(device)
    images, labels = images.to(device), labels.to(device)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    order = torch.randperm(len(labels), device=device)
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        x = (images[index].float() / 255 - mean_t) / std_t
        opt.zero_grad(set_to_none=True)
        criterion(model(x), labels[index]).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(labels) / (time.perf_counter() - started)

def table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(*headers)
    for row in rows:
        out.add_row(*map(str, row))
    Console().print(out)
