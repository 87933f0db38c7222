"""The tutorials' own training loops, as a user would run them: one script, one process, no cnnkit.

    python benchmarks/tutorial_loops.py lenet-cifar10 DIR [--epochs N]
    python benchmarks/tutorial_loops.py cnn-mnist IDX_DIR [--epochs N]
    python benchmarks/tutorial_loops.py cnn-photos DIR [--epochs N] [--size 64]

Each prints one line per epoch, `epoch E val_acc A` (flushed), after the tutorial's test loop;
benchmarks/time_to_accuracy.py reads them to stop its clock. Recipes (shared/tutorials/README.md):
- lenet-cifar10 (001 §5.3): an ImageFolder (train/, test/) of 32x32 JPEGs, per item PIL -> ToTensor ->
  Normalize((0.5,)*3, (0.5,)*3), the CIFAR LeNet, SGD lr 0.001 momentum 0.9, batch 14, cross-entropy.
- cnn-mnist (000): MNIST from IDX files, per item PIL -> ToTensor (no Normalize), the 121,514-parameter
  cnn, Adam lr 0.001, batch 64.
- cnn-photos: a folder of photos (train/, test/) read as the MS Learn course reads Cats vs. Dogs
  (ImageFolder, Resize, CenterCrop, ImageNet Normalize) at --size px, trained with tutorial 000's recipe.
It deliberately does not import cnnkit: the models are written out here as the tutorials write them.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torchvision.datasets import ImageFolder

WORKERS = 2  # the tutorials' DataLoaders


def lenet(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 64), nn.ReLU(), nn.Linear(64, classes),
    )


def cnn(channels: int, side: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.Conv2d(32, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, 1, 2), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * (side // 4) * (side // 4), classes),
    )


def read_idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class IdxImages(torch.utils.data.Dataset):
    """MNIST as torchvision's MNIST class serves it: a PIL image per item, then the transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def mnist_sample_splits(folder: Path, transform):
    """mnist-sample's split (cnnkit/data/catalog.py load_mnist_sample): every fifth test image is held out."""
    images = read_idx(next(folder.glob("t10k-images-idx3-ubyte*")))
    labels = read_idx(next(folder.glob("t10k-labels-idx1-ubyte*")))
    test = np.arange(len(labels)) % 5 == 0
    return IdxImages(images[~test], labels[~test], transform), IdxImages(images[test], labels[test], transform)


@torch.no_grad()
def test_accuracy(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    for inputs, targets in loader:
        _, predicted = torch.max(model(inputs), 1)
        total += targets.size(0)
        correct += (predicted == targets).sum().item()
    model.train()
    return correct / max(1, total)


def train(model, train_set, test_set, optimizer, batch_size: int, epochs: int, test_batch: int) -> None:
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=WORKERS)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=test_batch, shuffle=False, num_workers=WORKERS)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, epochs + 1):
        running_loss = 0.0
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # the tutorials print a running loss
        print(f"epoch {epoch} val_acc {test_accuracy(model, test_loader):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("lenet-cifar10", "cnn-mnist", "cnn-photos"))
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.case == "lenet-cifar10":
        transform = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
        train_set, test_set = ImageFolder(args.data / "train", transform), ImageFolder(args.data / "test", transform)
        model = lenet(len(train_set.classes))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        train(model, train_set, test_set, optimizer, batch_size=14, epochs=args.epochs, test_batch=14)
    elif args.case == "cnn-mnist":
        train_set, test_set = mnist_sample_splits(args.data, T.ToTensor())
        model = cnn(1, 28, 10)
        train(model, train_set, test_set, torch.optim.Adam(model.parameters(), lr=0.001), batch_size=64,
              epochs=args.epochs, test_batch=64)
    else:
        transform = T.Compose([T.Resize(args.size), T.CenterCrop(args.size), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        train_set, test_set = ImageFolder(args.data / "train", transform), ImageFolder(args.data / "test", transform)
        model = cnn(3, args.size, len(train_set.classes))
        train(model, train_set, test_set, torch.optim.Adam(model.parameters(), lr=0.001), batch_size=64,
              epochs=args.epochs, test_batch=64)


if __name__ == "__main__":
    main()
