"""The built-in datasets: mnist-sample (shipped), and mnist, fashion-mnist, cifar10, cats-dogs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.dataset import TensorSplit
from cnnkit.data.idx import read_idx
from cnnkit.errors import DataError

DIGITS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    source: str


CATALOG = {
    entry.name: entry
    for entry in (
        CatalogEntry("mnist-sample", "MNIST test set shipped with cnnkit: 8,000 train / 2,000 test, 28x28 grey", "package"),
        CatalogEntry("mnist", "MNIST handwritten digits: 60,000 / 10,000, 28x28 grey", "torchvision"),
        CatalogEntry("fashion-mnist", "Fashion-MNIST clothing: 60,000 / 10,000, 28x28 grey", "torchvision"),
        CatalogEntry("cifar10", "CIFAR-10: 50,000 / 10,000, 32x32 RGB, 10 classes", "torchvision"),
        CatalogEntry("cats-dogs", "Kaggle Cats vs. Dogs (PetImages): ~25,000 photos, 2 classes", "kaggle"),
    )
}


def list_datasets() -> list[str]:
    return list(CATALOG)


def sample_dir() -> Path:
    return Path(str(resources.files("cnnkit.data") / "sample"))


def load_mnist_sample() -> tuple[dict[str, TensorSplit], list[str]]:
    """The MNIST test set, split deterministically: every fifth image is held out for test."""
    folder = sample_dir()
    images = torch.from_numpy(read_idx(folder / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    test = torch.arange(len(labels)) % 5 == 0
    return {
        "train": TensorSplit(images[~test], labels[~test]),
        "test": TensorSplit(images[test], labels[test]),
    }, DIGITS


_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _missing_hint(name: str) -> str:
    return (
        f"run `cnnkit download {name}` (or `cnnkit download {name} --from FILE` with files fetched by hand, "
        f"or --mirror URL); datasets live under --data-dir"
    )


def _open_torchvision(name: str, root: Path, train: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass
    # Missing: fetch it the way `cnnkit download` does (torchvision's file list and
    # MD5 sums, .partial files, retries, CNNKIT_MIRROR), so both share one path.
    from cnnkit.hub.install import install_dataset

    install_dataset(name, root, mirror=os.environ.get("CNNKIT_MIRROR") or None)
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError as exc:
        raise DataError(f"dataset '{name}' in {root} cannot be read after download ({exc})", _missing_hint(name)) from None


def load_torchvision(name: str, data_dir: Path) -> tuple[dict[str, TensorSplit], list[str]]:
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        ds = _open_torchvision(name, data_dir, train)
        data = torch.as_tensor(np.asarray(ds.data))
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()
        splits[split] = TensorSplit(images, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long))
        classes = DIGITS if name == "mnist" else list(ds.classes)
    return splits, classes


def cats_dogs_root(data_dir: Path) -> Path:
    root = data_dir / "PetImages"
    if not (root / "Cat").is_dir() or not (root / "Dog").is_dir():
        raise DataError(f"dataset 'cats-dogs' is not in {data_dir} (expected PetImages/Cat and PetImages/Dog)", _missing_hint("cats-dogs"))
    return root
