"""Transfer learning on pets-sample: how much a backbone's features know about cats and dogs.

    python benchmarks/pets_transfer.py [--folder tests/data/pets-sample] [--seeds 0,1,2] [--pretrain-epochs 20]

For each backbone, `cnnkit finetune --mode features`'s own extraction (the
weights' preprocessing, a frozen ResNet18) runs over every photo, and a linear
head is scored by 10-fold cross-validation: each photo is predicted once, by a
head that never saw it. Backbones:

- imagenet: torchvision's ImageNet weights, if `cnnkit download --weights
  resnet18` has put them in the torch hub cache;
- cifar10-sample: ResNet18 trained from scratch on the 400 photos of
  tests/data/cifar10-sample at 32x32, one per seed (the "brief training on
  another labelled set" of issue #5's learning test);
- random: the same architecture with random weights, one per seed.

It prints correct/total and the one-sided binomial p-value against chance
(50%). Without real pretrained weights the two offline backbones score alike,
around chance: see the README's Performance section.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
import torch
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

from cnnkit.data.resolve import load_dataset
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.setup import prepare
from cnnkit.reporting import Reporter
from cnnkit.models import get_spec
from cnnkit.models.backbones import weights_path

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def backbone_features(folder: Path, weights: Path, out: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every photo (train and validation splits together) through cnnkit's features mode."""
    config = TrainConfig(model="resnet18", dataset=str(folder), command="finetune", finetune_mode="features", weights=str(weights), val_split=0.2,
                         head_epochs=1, epochs=1, memory_budget="0", out=str(out), device="cpu")
    setup = prepare(config, Reporter(quiet=True))  # memory budget 0: nothing is cached beside the photos
    parts = (setup.train_batches, setup.val_batches)
    return torch.cat([b.images for b in parts]).float(), torch.cat([b.labels for b in parts])


def cross_validated_correct(features: torch.Tensor, labels: torch.Tensor, folds: int = 10, l2: float = 1e-2) -> int:
    """Photos predicted right by an L2-regularised logistic head trained on the other folds."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    fold = torch.arange(len(labels)) % folds
    correct = 0
    for k in range(folds):
        test = fold == k
        head = torch.nn.Linear(x.shape[1], int(labels.max()) + 1)
        optimizer = torch.optim.LBFGS(head.parameters(), max_iter=100)

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = F.cross_entropy(head(x[~test]), labels[~test]) + l2 * head.weight.square().sum()
            value.backward()
            return value

        optimizer.step(loss)
        correct += int((head(x[test]).argmax(1) == labels[test]).sum())
    return correct


def pretrain_on_cifar_sample(epochs: int, seed: int, path: Path) -> Path:
    """ResNet18 (ImageNet-shaped: 1000 outputs, labels 0-9) trained on cifar10-sample's 400 photos at 32x32."""
    torch.manual_seed(seed)
    copy = path.parent / "cifar10-sample"  # the decode cache goes beside the copy, not into the repository
    if not copy.exists():
        shutil.copytree(ROOT / "tests" / "data" / "cifar10-sample", copy)
    data = load_dataset(str(copy))
    images = torch.cat([data.splits["train"].images, data.splits["test"].images]).float() / 255
    labels = torch.cat([data.splits["train"].labels, data.splits["test"].labels])
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    images = (images - mean) / std
    augment = v2.Compose([v2.RandomResizedCrop(32, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    model = torchvision.models.resnet18()
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=5e-4)
    steps_per_epoch = -(-len(labels) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), 32):
            batch = order[start : start + 32]
            x = torch.stack([augment(image) for image in images[batch]])
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    torch.save(model.state_dict(), path)
    return path


def p_value(correct: int, total: int) -> float:
    """P(at least `correct` of `total` right by coin flips)."""
    return sum(math.comb(total, k) for k in range(correct, total + 1)) / 2**total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "tests" / "data" / "pets-sample")
    parser.add_argument("--seeds", default="0,1,2", help="comma list: one offline backbone of each kind per seed")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backbones: list[tuple[str, Path]] = []
        imagenet = weights_path(get_spec("resnet18"))
        if imagenet.is_file():
            backbones.append(("imagenet", imagenet))
        for seed in seeds:
            torch.manual_seed(seed)
            torch.save(torchvision.models.resnet18().state_dict(), tmp / f"random-{seed}.pth")
            backbones.append((f"random, seed {seed}", tmp / f"random-{seed}.pth"))
            print(f"pretraining on cifar10-sample, seed {seed} ...", flush=True)
            weights = pretrain_on_cifar_sample(args.pretrain_epochs, seed, tmp / f"cifar-{seed}.pth")
            backbones.append((f"cifar10-sample, seed {seed}", weights))
        print(f"\n{'backbone':<26} {'10-fold CV accuracy':>20} {'p vs chance':>12}")
        for name, weights in backbones:
            features, labels = backbone_features(args.folder, weights, tmp / "runs")
            correct = cross_validated_correct(features, labels)
            print(f"{name:<26} {correct:>8}/{len(labels)} = {correct / len(labels):5.1%} {p_value(correct, len(labels)):>12.3f}")


if __name__ == "__main__":
    main()
