"""cnnkit against the tools a user would pick instead: a plain timm loop and fastai, on CPU, same data, epochs, batch.

Run it from its own environment, never cnnkit's (timm and fastai are not cnnkit dependencies):

    python -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.14.1 torchvision==0.29.1 timm fastai
    /tmp/peers/bin/python benchmarks/peers.py --data DIR [--epochs 3] [--batch-size 64] [--target 0.5]

DIR is a CIFAR-10 folder (train/ and test/, one folder per class); cnnkit is imported from this repository.
Models: the CIFAR LeNet (one small CNN, cnnkit's `lenet` module for all three) and ResNet18 at 32 px
(torchvision's, for all three; fastai's row is `vision_learner(resnet18, pretrained=False)`, which puts
fastai's own head on it). Each contender gets AdamW at cnnkit's default learning rate with a one-cycle
schedule: cnnkit's defaults, a timm loop (timm.data.create_loader, timm.optim.create_optimizer_v2, torch's
OneCycleLR) and fastai's Learner.fit_one_cycle. Printed: seconds per epoch, time from the contender's
start (data set-up included) to the first epoch whose test accuracy reaches the target, final accuracy.
On tests/data/cifar10-sample (400 images) the figures time the tools; they are no measure of accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import cnnkit  # noqa: E402,F401  (first: OMP_WAIT_POLICY=PASSIVE for every contender alike)
import torch  # noqa: E402
import torchvision  # noqa: E402

from cnnkit.engine.config import TrainConfig, label_smoothing_for  # noqa: E402
from cnnkit.models import get_model  # noqa: E402

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def build(model: str, classes: int) -> torch.nn.Module:
    if model == "lenet":
        return get_model("lenet", in_channels=3, num_classes=classes, image_size=32)
    return torchvision.models.resnet18(weights=None, num_classes=classes)


def summarise(started: float, epoch_ends: list[float], accs: list[float], target: float) -> dict:
    reached = next((end - started for end, acc in zip(epoch_ends, accs) if acc >= target), None)
    per_epoch = [b - a for a, b in zip([started, *epoch_ends], epoch_ends)]
    return {"per_epoch": sum(per_epoch[1:]) / max(1, len(per_epoch) - 1) if len(per_epoch) > 1 else per_epoch[0],
            "to_target": reached, "final": accs[-1] if accs else None}


# ---- cnnkit -----------------------------------------------------------------------------
def run_cnnkit(model: str, args, tmp: Path) -> dict:
    from harness import cnnkit_train

    ends, accs = [], []
    config = TrainConfig(model=model, dataset=str(args.data), epochs=args.epochs, batch_size=args.batch_size,
                         out=str(tmp / "cnnkit"), device="cpu", image_size=[32, 32] if model == "resnet18" else None)
    started = time.perf_counter()
    cnnkit_train(config, CPU, lambda trainer: (ends.append(time.perf_counter()),
                                               accs.append(trainer.state.history[-1]["val_acc"])))
    return summarise(started, ends, accs, args.target)


# ---- timm -------------------------------------------------------------------------------
def run_timm(model_name: str, args, tmp: Path) -> dict:
    import timm.data
    import timm.optim

    started = time.perf_counter()
    common = dict(input_size=(3, 32, 32), batch_size=args.batch_size, mean=MEAN, std=STD, num_workers=2,
                  use_prefetcher=False, device=CPU, crop_pct=1.0, persistent_workers=False)
    train_set = timm.data.create_dataset("", root=str(args.data / "train"))
    test_set = timm.data.create_dataset("", root=str(args.data / "test"))
    train_loader = timm.data.create_loader(train_set, is_training=True, no_aug=True, **common)
    test_loader = timm.data.create_loader(test_set, is_training=False, **common)
    model = build(model_name, len(train_set.reader.class_to_idx)).to(memory_format=torch.channels_last)
    optimizer = timm.optim.create_optimizer_v2(model, "adamw", lr=TrainConfig().lr, weight_decay=TrainConfig().weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, TrainConfig().lr, epochs=args.epochs,
                                                   steps_per_epoch=len(train_loader))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing_for(TrainConfig()))
    ends, accs = [], []
    for _ in range(args.epochs):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
            optimizer.step()
            schedule.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
                total += len(y)
        ends.append(time.perf_counter())
        accs.append(correct / total)
    return summarise(started, ends, accs, args.target)


# ---- fastai -----------------------------------------------------------------------------
def run_fastai(model_name: str, args, tmp: Path) -> dict:
    from fastai.callback.core import Callback
    from fastai.vision.all import ImageDataLoaders, Learner, Normalize, accuracy, resnet18, vision_learner

    ends, accs = [], []

    class EpochTimes(Callback):
        order = 90  # after the Recorder has its metrics

        def after_epoch(self):
            ends.append(time.perf_counter())
            accs.append(float(self.learn.recorder.values[-1][-1]))

    started = time.perf_counter()
    dls = ImageDataLoaders.from_folder(args.data, train="train", valid="test", bs=args.batch_size, num_workers=2,
                                       device=CPU, batch_tfms=[Normalize.from_stats(MEAN, STD)])
    if model_name == "resnet18":
        learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy, cbs=[EpochTimes()])
    else:
        learn = Learner(dls, build(model_name, dls.c), metrics=accuracy, cbs=[EpochTimes()])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, TrainConfig().lr)
    return summarise(started, ends, accs, args.target)


def text(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "data" / "cifar10-sample")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--models", default="lenet,resnet18")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    images = sum(1 for _ in (args.data / "train").rglob("*.*"))
    print(f"data {args.data} ({images:,} training images{'; a sample: no measure of accuracy' if images < 50_000 else ''}); "
          f"{args.epochs} epochs, batch {args.batch_size}; nproc {len(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    contenders = {"cnnkit": run_cnnkit, "timm loop": run_timm, "fastai fit_one_cycle": run_fastai}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnkit-peers-") as tmp:
        for model in args.models.split(","):
            for name, run in contenders.items():
                torch.manual_seed(0)
                result = run(model, args, Path(tmp))
                rows.append((model, name, f"{result['per_epoch']:.1f} s", text(result["to_target"]),
                             f"{result['final']:.1%}"))
                print(f"{model} / {name}: {rows[-1][2:]}; load average {os.getloadavg()[0]:.2f}", flush=True)
    headers = ("model", "trained by", "time per epoch", f"time to {args.target:.0%}", "final test accuracy")
    print("\n| " + " | ".join(headers) + " |\n|" + " --- |" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
