"""One path from a TrainConfig to everything the Trainer needs: data, model, transform, run directory.

Train and finetune share every step; what differs (the model, its input, its phases, its batches) is
asked of the run's ModelSource: engine/model_source.py `Scratch`, engine/finetune.py `NewHead` and
`CachedFeatures`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from cnnkit.data.dataset import Dataset, train_val_splits
from cnnkit.data.memory import parse_bytes
from cnnkit.data.resolve import load_dataset
from cnnkit.data.transforms import BatchTransform, parse_augment
from cnnkit.engine import distributed
from cnnkit.engine.config import COMMANDS, TrainConfig, label_smoothing_for
from cnnkit.engine.device import cpu_threads_for, forward_macs, resolve_device, usable_cores
from cnnkit.engine.distributed import World
from cnnkit.engine.finetune import CachedFeatures, NewHead
from cnnkit.engine.model_source import ModelSource, Scratch
from cnnkit.engine.optim import OPTIMIZERS, SCHEDULES
from cnnkit.reporting import Reporter
from cnnkit.engine.rundir import check_run_name, new_run_dir
from cnnkit.engine.state import seed_everything
from cnnkit.engine.trainer import TrainSetup
from cnnkit.errors import DataError, UsageError
from cnnkit.engine.losses import check_loss
from cnnkit.engine.normalize import parse_normalize
from cnnkit.models.init import check_bias, parse_init
from cnnkit.sizes import Size, size_text


def model_source(cfg: TrainConfig) -> ModelSource:
    """The run's model source; it checks its own options and, for finetune, that the model has weights."""
    if cfg.command not in COMMANDS:
        raise UsageError(f"unknown command '{cfg.command}': a run is one of {', '.join(COMMANDS)}")
    if cfg.command == "train":
        return Scratch(cfg)
    return CachedFeatures(cfg) if cfg.finetune_mode == "features" else NewHead(cfg)


def validate_config(cfg: TrainConfig) -> None:
    """The core checks its own inputs, so the API fails as clearly as the CLI."""
    checks = [
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (0 < cfg.lr < math.inf, "--lr must be a positive finite number"),  # inf or nan trains to nan silently
        (math.isfinite(cfg.momentum) and math.isfinite(cfg.weight_decay), "--momentum and --weight-decay must be finite"),
        (cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (cfg.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
        (cfg.val_split is None or 0 < cfg.val_split < 1, "--val-split must be between 0 and 1"),
        (0 <= label_smoothing_for(cfg) < 1, "--label-smoothing must be in [0, 1)"),
        (cfg.limit is None or cfg.limit >= 1, "--limit must be at least 1"),
        (cfg.val_limit is None or cfg.val_limit >= 1, "--val-limit must be at least 1"),
        (cfg.val_every >= 0, "--val-every must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    parse_augment(cfg.augment)
    check_run_name(cfg.name)
    # --init, --init-bias, --loss (with --label-smoothing), --normalize
    parse_init(cfg.init)
    check_bias(cfg.init_bias)
    check_loss(cfg.loss, label_smoothing_for(cfg))
    parse_normalize(cfg.normalize)


def prepare_data(cfg: TrainConfig, reporter: Reporter, image_size: Size, resize_to: int | None = None) -> Dataset:
    """The run's dataset, folders decoded at most at `image_size` (H, W). With --limit or --val-limit a
    folder is only scanned here: training_splits picks the images and decodes those alone (and caches only them)."""
    from cnnkit.hub.install import fetch_missing

    dataset = load_dataset(
        cfg.dataset, cfg.data_dir, image_size=image_size, resize_to=resize_to, max_size=image_size,
        budget=parse_bytes(cfg.memory_budget) if cfg.memory_budget else None,
        workers=cfg.workers or None, reporter=reporter, on_missing=fetch_missing,
        cache_dir=cfg.cache_dir, cache=cfg.cache, decode=not (cfg.limit or cfg.val_limit),
    )
    require_classes(dataset)  # before the notes: a dataset that cannot train fails with its error alone
    report_data_notes(dataset, reporter)
    return dataset


def require_classes(dataset: Dataset) -> None:
    if len(dataset.classes) < 2:
        raise DataError(f"dataset {dataset.name} has {len(dataset.classes)} class ({', '.join(dataset.classes)}); "
                        "a classifier needs at least two", "add a folder of images for each class")


def report_data_notes(dataset: Dataset, reporter: Reporter, notes_from: int = 0, skipped_from: int = 0) -> None:
    """The loader's notes and unreadable files from the given positions on (a later decode adds more)."""
    for note in dataset.notes[notes_from:]:
        reporter.note(f"note: {note}")
    reporter.skipped(dataset.skipped[skipped_from:])


def limited(split, limit: int | None, seed: int):
    """`limit` images of the split, drawn by seed and stratified: each class keeps its share (at least one)."""
    if not limit or limit >= len(split):
        return split
    return split.subset(stratified_sample(split.labels, limit, seed + 1))


def stratified_sample(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Sorted indices of `count` items: shuffled by seed, then taken round-robin in proportion to each class.

    Item r (0-based, in shuffled order) of a class of n is ranked (r + 0.5) / n: the first `count`
    by rank hold every class in proportion, and a class of any size has its first item by count = classes.
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    counts = torch.bincount(shuffled)
    sort = torch.sort(shuffled, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    within = torch.empty_like(shuffled)
    within[sort.indices] = torch.arange(len(shuffled)) - starts[sort.values]
    rank = (within.double() + 0.5) / counts[shuffled].double()
    pick = order[torch.sort(rank, stable=True).indices[:count]]
    return pick.sort().values


def validation_limit(cfg: TrainConfig, train_size: int, val_size: int) -> int | None:
    """--val-limit, else with --limit the same share of the validation images as of the training images."""
    if cfg.val_limit:
        return cfg.val_limit
    if cfg.limit and cfg.limit < train_size:
        return max(1, round(val_size * cfg.limit / train_size))
    return None


def training_splits(cfg: TrainConfig, dataset: Dataset, reporter: Reporter | None = None, *, parts=("train", "val")):
    """(train, validation, where validation came from), checked to be something a classifier can learn from.

    --limit and --val-limit are applied here; a folder loaded undecoded (prepare_data) decodes only
    the images they chose, and only the `parts` asked for (evaluate --split val needs no train images).
    """
    require_classes(dataset)
    train_split, val_split, val_source = train_val_splits(dataset, cfg.val_split, cfg.seed)
    if len(train_split) == 0:
        raise DataError(f"dataset {dataset.name} has {len(dataset.split('train'))} training image(s): none left "
                        f"after holding out {val_source} for validation", "add images, or a test/ folder to validate on")
    chosen = {"train": limited(train_split, cfg.limit, cfg.seed),
              "val": limited(val_split, validation_limit(cfg, len(train_split), len(val_split)), cfg.seed)}
    if dataset.decoder is not None:
        said = len(dataset.notes), len(dataset.skipped)
        chosen.update(dataset.decoder({name: chosen[name] for name in parts}))
        if reporter is not None:
            report_data_notes(dataset, reporter, *said)
    return chosen["train"], chosen["val"], val_source


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


def data_section(dataset: Dataset, cfg: TrainConfig, in_channels: int, input_size: Size, mean, std,
                 val_source: str) -> dict:
    return {
        "spec": dataset.spec,
        "name": dataset.name,
        "kind": dataset.kind,
        "data_dir": str(cfg.data_dir),
        "classes": list(dataset.classes),
        "channels": dataset.channels,
        "size": list(dataset.size),
        "input_size": [in_channels, *input_size],
        "mean": list(mean),
        "std": list(std),
        "resize": list(dataset.size) != list(input_size),
        "resize_to": dataset.resize_to,  # what the loader really did, so predict decodes alike
        "val_source": val_source,  # the split, seed and limit that drew it are in train.config
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


def match_cpu_threads(model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device, place: World) -> None:
    if device.type == "cpu" and not place.enabled and "OMP_NUM_THREADS" not in os.environ:
        # Small models' steps are too short to share across cores: hand-offs cost more than they save.
        torch.set_num_threads(cpu_threads_for(forward_macs(model, input_shape)))


def prepare(cfg: TrainConfig, reporter: Reporter, run_dir: Path | None = None) -> TrainSetup:
    """Everything the Trainer needs for a run, new or (when run_dir is given) resumed, under torchrun or not."""
    validate_config(cfg)
    source = model_source(cfg)
    device, place = join_world(cfg, reporter)
    seed_everything(cfg.seed)
    source.load()  # before any data is read: a missing download or weights that do not fit fail here
    dataset = prepare_data(cfg, reporter, *source.decode_size())
    train_split, val_split, val_source = training_splits(cfg, dataset, reporter)
    in_channels, input_size = source.input_shape(dataset)
    name = source.spec.name
    if tuple(dataset.size) != input_size:
        reporter.note(f"note: resizing {size_text(dataset.size)} images to {size_text(input_size)} for {name}")
    if in_channels != dataset.channels:
        reporter.note(f"note: repeating the grey channel to {in_channels} channels for {name}")
    num_classes = len(dataset.classes)
    model = source.build(in_channels, num_classes, input_size)
    channels_last = place_model(model, device)
    match_cpu_threads(model, (cfg.batch_size, in_channels, *input_size), device, place)
    mean, std = source.normalisation(train_split, dataset.channels)
    transform = BatchTransform(mean, std, in_channels, input_size, parse_augment(cfg.augment), device, channels_last)
    trained, transform, train_batches, val_batches = source.batches(
        model, transform, dataset, (train_split, val_split), device, place, reporter)
    return TrainSetup(
        config=cfg,
        model=trained,
        train_batches=train_batches,
        val_batches=val_batches,
        transform=transform,
        device=device,
        phases=source.phases(),
        run_dir=Path(run_dir or shared_run_dir(cfg, source.spec.slug, dataset.name)),
        model_section=source.model_section(in_channels, num_classes, input_size),
        data_section=data_section(dataset, cfg, in_channels, input_size, mean, std, val_source),
        dataset=dataset,
        freeze=source.freeze,
        extra_train=source.extra_train(),
        world=place,
        checkpoint_every_epoch=source.checkpoint_every_epoch,
    )
