"""Transfer learning from ImageNet backbones: `cnnkit finetune`.

Phase 1 ("head") freezes the backbone and trains a new head; phase 2
("unfreeze"), if asked for, trains everything at a lower learning rate with a
fresh optimizer. `--mode features` runs the frozen backbone once, caches what it
feeds the head, and trains only the head on that ("features"). Every mode
writes an ordinary run directory whose checkpoints hold the whole model.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.batches import make_batches
from cnnkit.data.folder import CACHE_DIR
from cnnkit.data.memory import parse_bytes
from cnnkit.data.transforms import BatchTransform, parse_augment
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.device import resolve_device
from cnnkit.engine.features import (
    HeadOnFeatures, extract_features, feature_cache_key, identity_transform, load_cached_features,
    save_cached_features,
)
from cnnkit.reporting import Reporter
from cnnkit.engine.rundir import new_run_dir, run_locks_released
from cnnkit.engine.setup import (
    batches_for, data_section, eval_batch_size, prepare_data, training_splits, place_model, validate_config,
)
from cnnkit.engine.state import seed_everything
from cnnkit.engine.trainer import Phase, Trainer, TrainSetup
from cnnkit.errors import ModelError, UsageError
from cnnkit.models import get_spec
from cnnkit.models.backbones import build_pretrained, weights_path
from cnnkit.models.registry import ModelSpec, pretrained_models
from cnnkit.models.surgery import parameter_counts, replace_head, set_frozen

MODES = ("finetune", "features")
# Head epochs when neither --head-epochs nor --epochs is given. A features
# epoch is a pass of a linear layer over cached vectors, so it can afford more.
DEFAULT_HEAD_EPOCHS = {"finetune": 2, "features": 10}
UNFREEZE_LR_FACTOR = 0.1


# ---- the model: backbone, head, freezing ----------------------------------------------
def pretrained_spec(name: str) -> ModelSpec:
    spec = get_spec(name)
    if spec.weights is None:
        raise ModelError(
            f"model '{spec.name}' has no ImageNet weights to fine-tune",
            f"finetune works with {', '.join(pretrained_models())}; use `cnnkit train` for the others",
        )
    return spec


# ---- phases -------------------------------------------------------------------------
def validate_finetune(cfg: TrainConfig) -> None:
    validate_config(cfg)
    checks = [
        (cfg.mode in MODES, f"--mode must be one of {', '.join(MODES)}"),
        (cfg.head_epochs >= 0, "--head-epochs must not be negative"),
        (cfg.unfreeze_epochs >= 0, "--unfreeze-epochs must not be negative"),
        (cfg.head_epochs + cfg.unfreeze_epochs >= 1, "nothing to train: --head-epochs and --unfreeze-epochs are both 0"),
        (cfg.unfreeze_lr is None or 0 < cfg.unfreeze_lr < float("inf"), "--unfreeze-lr must be a positive finite number"),
        (cfg.mode != "features" or cfg.unfreeze_epochs == 0,
         "--mode features trains only the head on cached features; --unfreeze-epochs needs --mode finetune"),
        (cfg.mode != "features" or cfg.head_epochs >= 1, "--mode features needs --head-epochs of at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def finetune_phases(cfg: TrainConfig) -> list[Phase]:
    """Head phase (frozen backbone), then the unfreeze phase; a larger --epochs on resume extends the last."""
    head_phase = "features" if cfg.mode == "features" else "head"
    phases = []
    if cfg.head_epochs:
        phases.append(Phase(head_phase, cfg.head_epochs, cfg.lr, frozen=True))
    if cfg.unfreeze_epochs:
        lr = cfg.unfreeze_lr if cfg.unfreeze_lr is not None else cfg.lr * UNFREEZE_LR_FACTOR
        phases.append(Phase("unfreeze", cfg.unfreeze_epochs, lr, frozen=False))
    planned = sum(p.epochs for p in phases)
    if cfg.epochs > planned:
        phases[-1].epochs += cfg.epochs - planned
    return phases


def phase_counts(model: nn.Module, head: nn.Module, phases: list[Phase]) -> list[dict]:
    rows = []
    for phase in phases:
        set_frozen(model, head, phase.frozen)
        rows.append({"name": phase.name, "epochs": phase.epochs, "lr": phase.lr, **parameter_counts(model)})
    return rows


def resolve_finetune_config(cfg: TrainConfig, epochs: int | None = None, head_epochs: int | None = None) -> TrainConfig:
    """Fill head_epochs and epochs for a new run. --epochs is the total of both phases."""
    if head_epochs is None:
        head_epochs = epochs - cfg.unfreeze_epochs if epochs is not None else DEFAULT_HEAD_EPOCHS.get(cfg.mode, 2)
    elif epochs is not None and epochs != head_epochs + cfg.unfreeze_epochs:
        raise UsageError(
            f"--epochs {epochs} does not equal --head-epochs {head_epochs} + --unfreeze-epochs {cfg.unfreeze_epochs}",
            "give --head-epochs and --unfreeze-epochs, or only --epochs (the total)",
        )
    if head_epochs < 0:
        raise UsageError(f"--epochs {epochs} is less than --unfreeze-epochs {cfg.unfreeze_epochs}")
    cfg.head_epochs = head_epochs
    cfg.epochs = head_epochs + cfg.unfreeze_epochs
    return cfg


# ---- setup --------------------------------------------------------------------------
def _feature_cache_dir(cfg: TrainConfig, dataset) -> Path:
    # Beside the images for folders (like the decoded-image cache), else in the data root.
    return (dataset.root if dataset.kind == "folder" else Path(cfg.data_dir)) / CACHE_DIR


def _extract(cfg, dataset, split, model, head, transform, device, amp, reporter):
    batches = make_batches(split, channels=dataset.channels, size=dataset.size, batch_size=eval_batch_size(cfg.batch_size),
                           device=device, shuffle=False, seed=cfg.seed, workers=cfg.workers if cfg.workers is not None else 2)
    features = extract_features(model, head, batches, transform, device, amp)
    reporter.skipped(getattr(batches, "skipped", []))
    return features, list(getattr(batches, "skipped", []))


def _features_setup(cfg, reporter, dataset, model, head, transform, splits, device, amp, weights, preprocessing):
    """Batches of cached backbone features for train and validation (computed once, then read from disk)."""
    use_cache = not (cfg.memory_budget and parse_bytes(cfg.memory_budget) == 0)  # --no-cache
    key = feature_cache_key(cfg.model, weights, preprocessing, *splits, amp)
    cache = _feature_cache_dir(cfg, dataset) / f"features-{key}.pt"
    cached = load_cached_features(cache) if use_cache else None
    skipped = []
    if cached is not None:
        reporter.note(f"features: reusing {cache}")
        train_feats, val_feats = cached
    else:
        started = time.perf_counter()
        (train_feats, bad_train), (val_feats, bad_val) = (
            _extract(cfg, dataset, split, model, head, transform, device, amp, reporter) for split in splits
        )
        skipped = bad_train + bad_val
        seconds = time.perf_counter() - started
        n = len(train_feats) + len(val_feats)
        reporter.note(f"features: ran the backbone over {n} images in {seconds:.1f}s ({n / max(seconds, 1e-9):,.1f} images/s)")
        if use_cache and save_cached_features(cache, train_feats, val_feats):
            reporter.note(f"features: cached in {cache}")
    common = dict(channels=1, size=(1, 1), device=device, seed=cfg.seed)
    train_batches = make_batches(train_feats, batch_size=cfg.batch_size, shuffle=True, **common)
    val_batches = make_batches(val_feats, batch_size=eval_batch_size(cfg.batch_size), shuffle=False, **common)
    return train_batches, val_batches, skipped


def prepare_finetune(cfg: TrainConfig, reporter: Reporter, run_dir: Path | None = None) -> TrainSetup:
    """Everything the Trainer needs for a finetune run (new, or resumed when run_dir is given)."""
    validate_finetune(cfg)
    spec = pretrained_spec(cfg.model)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    # Before any data is read: a missing download, a missing file or weights that do not fit fail here.
    weights = weights_path(spec, cfg.weights)
    model = build_pretrained(spec, weights_file=cfg.weights)
    # The weights' own preprocessing: resize 256, center crop 224, ImageNet mean/std.
    preset = spec.preprocessing
    crop, resize, mean, std = preset.crop, preset.resize, list(preset.mean), list(preset.std)
    dataset = prepare_data(cfg, reporter, crop, resize_to=resize)
    train_split, val_split, val_source = training_splits(cfg, dataset)
    if tuple(dataset.size) != (crop, crop):
        reporter.note(f"note: resizing {dataset.size[0]}x{dataset.size[1]} images to {crop}x{crop} for {spec.name}")
    if dataset.channels != 3:
        reporter.note(f"note: repeating the grey channel to 3 channels for {spec.name}")
    num_classes = len(dataset.classes)
    replace_head(model, spec, num_classes)
    channels_last = place_model(model, device)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    name = spec.new_head
    head = model.get_submodule(name)
    phases = finetune_phases(cfg)
    counts = phase_counts(model, head, phases)
    augment = parse_augment(cfg.augment)
    transform = BatchTransform(mean, std, 3, crop, augment, device, channels_last)
    skipped = list(dataset.skipped)
    if cfg.mode == "features":
        if augment:
            reporter.warn("--augment is ignored in --mode features: the backbone sees each image once, unaugmented")
        preprocessing = {"mean": mean, "std": std, "crop": crop, "resize": resize, "size": list(dataset.size)}
        train_batches, val_batches, bad = _features_setup(
            cfg, reporter, dataset, model, head, transform, (train_split, val_split), device, amp, weights, preprocessing)
        skipped += bad
        trained, batch_transform = HeadOnFeatures(model, name), identity_transform
    else:
        train_batches, val_batches = batches_for(cfg, dataset, train_split, val_split, device)
        trained, batch_transform = model, transform
    for row in counts:
        reporter.note(f"phase {row['name']}: {row['epochs']} epoch(s) at lr {row['lr']:g}; "
                      f"{row['trainable']:,} trainable, {row['frozen']:,} frozen parameters")
    run_dir = run_dir or new_run_dir(cfg.out, spec.name, dataset.name, cfg.name)
    return TrainSetup(
        config=cfg,
        model=trained,
        train_batches=train_batches,
        val_batches=val_batches,
        transform=batch_transform,
        num_classes=num_classes,
        device=device,
        amp=amp,
        phases=phases,
        run_dir=Path(run_dir),
        model_section={"name": spec.name,
                       "kwargs": {"in_channels": 3, "num_classes": num_classes, "image_size": crop, "arch": "torchvision"}},
        data_section=data_section(dataset, cfg, 3, crop, mean, std, val_source),
        freeze=lambda _model, frozen: set_frozen(model, head, frozen),
        skipped=skipped,
        extra_train={"finetune": {"mode": cfg.mode, "weights": str(weights), "head": name, "phases": counts}},
        checkpoint_every_epoch=cfg.mode != "features",
    )


# ---- entry points -------------------------------------------------------------------
def start_finetune(config: TrainConfig, reporter: Reporter | None = None) -> dict:
    reporter = reporter or Reporter()
    with run_locks_released():
        setup = prepare_finetune(config, reporter)  # creates and locks the run directory
        summary = Trainer(setup, reporter).fit()
    return {**summary, **finetune_summary(setup.extra_train)}


def resume_finetune(target: str | Path, reporter: Reporter | None = None, **options) -> dict:
    """Continue a finetune run in whichever phase it stopped (runner.resume_training does the work)."""
    from cnnkit.engine.runner import resume_training

    summary = resume_training(target, reporter, **options)
    return {**summary, **finetune_summary(read_train_extras(Path(summary["run_dir"]) / "last.pt"))}


def read_train_extras(path: Path) -> dict:
    """The train section of a checkpoint, without reading its weights (memory-mapped)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        train = checkpoint.get("train", {})
        return {k: train[k] for k in ("finetune",) if k in train}
    except Exception:
        return {}


def finetune_summary(extra_train: dict) -> dict:
    info = extra_train.get("finetune")
    if not info:
        return {}
    return {"mode": info["mode"], "weights": info["weights"], "head": info["head"], "phases": info["phases"]}
