"""Turn a TrainConfig into everything the Trainer needs: data, model, transform, run directory."""

from __future__ import annotations

import math
import os

from pathlib import Path

import torch

from cnnkit.data.batches import make_batches
from cnnkit.data.dataset import Dataset, TensorSplit, train_val_splits
from cnnkit.data.memory import parse_bytes
from cnnkit.data.resolve import load_dataset
from cnnkit.data.transforms import BatchTransform, channel_stats, parse_augment
from cnnkit.engine.config import TrainConfig
from cnnkit.engine import distributed
from cnnkit.engine.device import cpu_threads_for, forward_macs, resolve_device, usable_cores
from cnnkit.engine.distributed import World
from cnnkit.engine.optim import OPTIMIZERS, SCHEDULES
from cnnkit.reporting import Reporter
from cnnkit.engine.rundir import check_run_name, new_run_dir
from cnnkit.engine.state import seed_everything
from cnnkit.engine.trainer import Phase, TrainSetup
from cnnkit.errors import DataError, UsageError
from cnnkit.models import INIT_SCHEMES, get_model, get_spec, initialise
from cnnkit.models.registry import input_channels_for, input_size_for

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MAX_EVAL_BATCH = 512


def validate_config(cfg: TrainConfig) -> None:
    """The core checks its own inputs, so the API fails as clearly as the CLI."""
    checks = [
        (cfg.epochs >= 1 or cfg.mode != "train", "--epochs must be at least 1"),
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (0 < cfg.lr < math.inf, "--lr must be a positive finite number"),  # inf or nan trains to nan silently
        (math.isfinite(cfg.momentum) and math.isfinite(cfg.weight_decay), "--momentum and --weight-decay must be finite"),
        (cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (cfg.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
        (cfg.init in INIT_SCHEMES, f"--init must be one of {', '.join(INIT_SCHEMES)}"),
        (cfg.val_split is None or 0 < cfg.val_split < 1, "--val-split must be between 0 and 1"),
        (0 <= cfg.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (cfg.limit is None or cfg.limit >= 1, "--limit must be at least 1"),
        (cfg.val_every >= 0, "--val-every must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    parse_augment(cfg.augment)
    check_run_name(cfg.name)


def eval_batch_size(batch_size: int) -> int:
    return min(MAX_EVAL_BATCH, 2 * batch_size)


def prepare_data(cfg: TrainConfig, reporter: Reporter, image_size: int, resize_to: int | None = None) -> Dataset:
    from cnnkit.hub.install import fetch_missing

    dataset = load_dataset(
        cfg.dataset, cfg.data_dir, image_size=image_size, resize_to=resize_to, max_side=image_size,
        budget=parse_bytes(cfg.memory_budget) if cfg.memory_budget else None,
        workers=cfg.workers or None, reporter=reporter, on_missing=fetch_missing,
    )
    for note in dataset.notes:
        reporter.note(f"note: {note}")
    reporter.skipped(dataset.skipped)
    return dataset


def limited(split, limit: int | None, seed: int):
    if not limit or limit >= len(split):
        return split
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + 1))[:limit].sort().values
    return split.subset(pick)


def training_splits(cfg: TrainConfig, dataset: Dataset):
    """(train, validation, where validation came from), checked to be something a classifier can learn from."""
    if len(dataset.classes) < 2:
        raise DataError(f"dataset {dataset.name} has {len(dataset.classes)} class ({', '.join(dataset.classes)}); "
                        "a classifier needs at least two", "add a folder of images for each class")
    train_split, val_split, val_source = train_val_splits(dataset, cfg.val_split, cfg.seed)
    if len(train_split) == 0:
        raise DataError(f"dataset {dataset.name} has {len(dataset.split('train'))} training image(s): none left "
                        f"after holding out {val_source} for validation", "add images, or a test/ folder to validate on")
    return limited(train_split, cfg.limit, cfg.seed), val_split, val_source


def batches_for(cfg: TrainConfig, dataset: Dataset, train_split, val_split, device: torch.device, place: World = World()):
    workers = cfg.workers if cfg.workers is not None else 2
    common = dict(channels=dataset.channels, size=dataset.size, device=device, seed=cfg.seed, workers=workers,
                  rank=place.rank, world=place.size)
    train = make_batches(train_split, batch_size=cfg.batch_size, shuffle=True, pad=True, **common)
    val = make_batches(val_split, batch_size=eval_batch_size(cfg.batch_size), shuffle=False, pad=False, **common)
    return train, val


def join_world(cfg: TrainConfig, reporter: Reporter) -> tuple[torch.device, World]:
    """Pick the device and, under torchrun, join the process group; only rank 0 reports."""
    device = resolve_device(cfg.device)
    place = distributed.init(device)
    if place.enabled:
        torch.set_num_threads(max(1, usable_cores() // place.local_size))
        if not place.main:
            reporter.quiet = True
            reporter.live = False
    return device, place


def shared_run_dir(cfg: TrainConfig, model_name: str, dataset_name: str) -> Path:
    """Rank 0 creates (and locks) the run directory; every rank learns its path, or that it failed."""
    return Path(distributed.on_rank_zero(lambda: str(new_run_dir(cfg.out, model_name, dataset_name, cfg.name))))


def normalisation(train_split, channels: int) -> tuple[list[float], list[float]]:
    if isinstance(train_split, TensorSplit):
        return channel_stats(train_split.images)
    # Streamed photos: ImageNet's statistics are the usual stand-in.
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ([0.5], [0.25])


def data_section(dataset: Dataset, cfg: TrainConfig, in_channels: int, input_size: int, mean, std,
                 val_source: str) -> dict:
    return {
        "spec": dataset.spec,
        "name": dataset.name,
        "kind": dataset.kind,
        "data_dir": str(cfg.data_dir),
        "classes": list(dataset.classes),
        "channels": dataset.channels,
        "size": list(dataset.size),
        "input_size": [in_channels, input_size, input_size],
        "mean": list(mean),
        "std": list(std),
        "resize": list(dataset.size) != [input_size, input_size],
        "resize_to": dataset.resize_to,  # what the loader really did, so predict decodes alike
        "val_split": cfg.val_split,
        "val_source": val_source,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "eval_batch_size": eval_batch_size(cfg.batch_size),
        "fingerprint": dataset.fingerprint,  # evaluate --split val and --resume refuse a folder that changed
    }


def use_channels_last(device: torch.device, model: torch.nn.Module) -> bool:
    # oneDNN's CPU convolutions are faster in channels_last too (LeNet 1.2-1.8x, MobileNetV2 1.5x on 2 cores).
    return device.type in ("cuda", "cpu") and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def place_model(model: torch.nn.Module, device: torch.device) -> bool:
    """Move the model to the device, channels_last for conv nets on CUDA and CPU; returns whether it is."""
    model.to(device)
    channels_last = use_channels_last(device, model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    return channels_last


def prepare_training(cfg: TrainConfig, reporter: Reporter, run_dir: Path | None = None) -> TrainSetup:
    validate_config(cfg)
    device, place = join_world(cfg, reporter)
    seed_everything(cfg.seed)
    spec = get_spec(cfg.model)
    dataset = prepare_data(cfg, reporter, spec.native_size or spec.default_size)
    train_split, val_split, val_source = training_splits(cfg, dataset)
    input_size = input_size_for(spec, dataset.size[0])
    in_channels = input_channels_for(spec, dataset.channels)
    if tuple(dataset.size) != (input_size, input_size):
        reporter.note(f"note: resizing {dataset.size[0]}x{dataset.size[1]} images to {input_size}x{input_size} for {spec.name}")
    if in_channels != dataset.channels:
        reporter.note(f"note: repeating the grey channel to {in_channels} channels for {spec.name}")
    model = initialise(get_model(spec.name, in_channels=in_channels, num_classes=len(dataset.classes), image_size=input_size), cfg.init)
    channels_last = place_model(model, device)
    if device.type == "cpu" and not place.enabled and "OMP_NUM_THREADS" not in os.environ:
        # Small models' steps are too short to share across cores: hand-offs cost more than they save.
        torch.set_num_threads(cpu_threads_for(forward_macs(model, (cfg.batch_size, in_channels, input_size, input_size))))
    mean, std = normalisation(train_split, dataset.channels)
    transform = BatchTransform(mean, std, in_channels, input_size, parse_augment(cfg.augment), device, channels_last)
    train_batches, val_batches = batches_for(cfg, dataset, train_split, val_split, device, place)
    run_dir = run_dir or shared_run_dir(cfg, spec.name, dataset.name)
    return TrainSetup(
        config=cfg,
        model=model,
        train_batches=train_batches,
        val_batches=val_batches,
        transform=transform,
        num_classes=len(dataset.classes),
        device=device,
        amp=cfg.amp if cfg.amp is not None else device.type == "cuda",
        phases=[Phase("train", cfg.epochs, cfg.lr)],
        run_dir=Path(run_dir),
        model_section={"name": spec.name, "kwargs": {"in_channels": in_channels, "num_classes": len(dataset.classes), "image_size": input_size}},
        data_section=data_section(dataset, cfg, in_channels, input_size, mean, std, val_source),
        skipped=list(dataset.skipped),
        world=place,
    )
