"""Transfer learning from ImageNet backbones: the model sources of `cnnkit finetune`.

Phase 1 ("head") freezes the backbone and trains a new head; phase 2
("unfreeze"), if asked for, trains everything at a lower learning rate with a
fresh optimizer. `--mode features` runs the frozen backbone once, caches what it
feeds the head, and trains only the head on that ("features"). Every mode
writes an ordinary run directory whose checkpoints hold the whole model.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from cnnkit.data.batches import make_batches
from cnnkit.data.cache import touch, usable_cache_dir
from cnnkit.data.memory import parse_bytes
from cnnkit.engine.config import FINETUNE_MODES, TrainConfig, default_amp, eval_batch_size, loader_workers
from cnnkit.engine.distributed import World
from cnnkit.engine.features import (
    HeadOnFeatures, extract_features, feature_cache_key, identity_transform, load_cached_features,
    save_cached_features, state_digest, weights_fingerprint,
)
from cnnkit.engine.model_source import ModelSource, run_batches
from cnnkit.reporting import Reporter
from cnnkit.engine.trainer import Phase
from cnnkit.errors import ModelError, UsageError
from cnnkit.models import get_spec
from cnnkit.models.backbones import build_pretrained, weights_path
from cnnkit.models.registry import ModelSpec, pretrained_models
from cnnkit.models.surgery import check_output, find_head, head_of, parameter_counts, replace_head, set_frozen
from cnnkit.sizes import Size, builder_size, pair, recorded_size

# Head epochs when neither --head-epochs nor --epochs is given. A features
# epoch is a pass of a linear layer over cached vectors, so it can afford more.
DEFAULT_HEAD_EPOCHS = {"finetune": 2, "features": 10}
UNFREEZE_LR_FACTOR = 0.1


# ---- the model: backbone, head, freezing ----------------------------------------------
def pretrained_spec(name: str) -> ModelSpec:
    spec = get_spec(name)
    if not spec.can_finetune:
        raise ModelError(
            f"model '{spec.name}' has no ImageNet weights to fine-tune",
            f"finetune works with {', '.join(pretrained_models())}, torchvision:NAME, timm:NAME and your own "
            "FILE.py:NAME that loads its weights; use `cnnkit train` for the others",
        )
    return spec


# ---- phases -------------------------------------------------------------------------
def validate_finetune(cfg: TrainConfig) -> None:
    checks = [
        (cfg.finetune_mode in FINETUNE_MODES, f"--mode must be one of {', '.join(FINETUNE_MODES)}"),
        (cfg.head_epochs >= 0, "--head-epochs must not be negative"),
        (cfg.unfreeze_epochs >= 0, "--unfreeze-epochs must not be negative"),
        (cfg.head_epochs + cfg.unfreeze_epochs >= 1, "nothing to train: --head-epochs and --unfreeze-epochs are both 0"),
        (cfg.unfreeze_lr is None or 0 < cfg.unfreeze_lr < float("inf"), "--unfreeze-lr must be a positive finite number"),
        (cfg.finetune_mode != "features" or cfg.unfreeze_epochs == 0,
         "--mode features trains only the head on cached features; --unfreeze-epochs needs --mode finetune"),
        (cfg.finetune_mode != "features" or cfg.head_epochs >= 1, "--mode features needs --head-epochs of at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def finetune_phases(cfg: TrainConfig) -> list[Phase]:
    """Head phase (frozen backbone), then the unfreeze phase; a larger --epochs on resume extends the last."""
    head_phase = "features" if cfg.finetune_mode == "features" else "head"
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
        head_epochs = epochs - cfg.unfreeze_epochs if epochs is not None else DEFAULT_HEAD_EPOCHS.get(cfg.finetune_mode, 2)
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


# ---- model sources ------------------------------------------------------------------
class NewHead(ModelSource):
    """An ImageNet backbone with its weights' own preprocessing and a new head; the backbone frozen by phase."""

    def validate(self) -> None:
        validate_finetune(self.cfg)

    def find_spec(self) -> ModelSpec:
        return pretrained_spec(self.cfg.model)

    def load(self) -> None:
        cfg, spec = self.cfg, self.spec
        if spec.weights is not None:  # a torchvision weights enum: its file in the torch hub cache
            self.weights = weights_path(spec, cfg.weights)
            self.model = build_pretrained(spec, weights_file=cfg.weights)
        else:  # timm (its Hugging Face cache) or a user's file (it loads its own weights): built with the head
            if cfg.weights:
                raise UsageError(f"--weights loads a torchvision state_dict; {spec.name} brings its own weights",
                                 "drop --weights (a user's model file loads its weights itself)")
            source = spec.source or {}
            self.weights = Path(source["path"]) if "path" in source else None  # the user's file: the run says what loaded them
            self.model = None
        # The weights' own preprocessing: resize 256, center crop 224, ImageNet mean/std. --image-size N
        # (or H,W) crops that instead, the short side resized in the same proportion to the crop's long
        # side, so that an H,W crop fits inside any photo at least as wide as it is tall, or the reverse.
        preset = spec.preprocessing
        self.crop, self.resize = pair(preset.crop), preset.resize
        if self.chosen_size:
            self.crop = self.chosen_size
            self.resize = round(max(self.crop) * preset.resize / preset.crop)
        self.mean, self.std = list(preset.mean), list(preset.std)

    def decode_size(self) -> tuple[Size, int | None]:
        return self.crop, self.resize

    def input_shape(self, dataset) -> tuple[int, Size]:
        return 3, self.crop

    def build(self, in_channels: int, num_classes: int, input_size: Size) -> nn.Module:
        if self.model is None:
            self.model = self.spec.pretrained(num_classes, image_size=builder_size(input_size), **self.cfg.model_args)
            self.head_name = find_head(self.model)
            head = self.model.get_submodule(self.head_name)
            if getattr(head, "out_features", getattr(head, "out_channels", None)) != num_classes:
                replace_head(self.model, self.spec, num_classes, self.head_name)
        else:
            self.head_name = head_of(self.model, self.spec)
            replace_head(self.model, self.spec, num_classes, self.head_name)
        self.head = self.model.get_submodule(self.head_name)
        check_output(self.model, self.spec.name, (3, *input_size), num_classes)
        self.counts = phase_counts(self.model, self.head, self.phases())
        return self.model

    def model_kwargs(self, in_channels: int, num_classes: int, input_size: Size) -> dict:
        kwargs = super().model_kwargs(in_channels, num_classes, input_size)
        return {**kwargs, "arch": "torchvision"} if self.spec.weights is not None else kwargs

    def model_section(self, in_channels: int, num_classes: int, input_size: Size) -> dict:
        section = super().model_section(in_channels, num_classes, input_size)
        if self.spec.weights is None:  # rebuilt from the builder, then this layer made num_classes wide
            section["head"] = self.head_name
        return section

    def normalisation(self, train_split, channels: int) -> tuple[list[float], list[float]]:
        return self.mean, self.std

    def phases(self) -> list[Phase]:
        return finetune_phases(self.cfg)

    def freeze(self, _model: nn.Module, frozen: bool) -> None:
        set_frozen(self.model, self.head, frozen)

    def batches(self, model, transform, dataset, splits, device, place, reporter):
        self.report_phases(reporter)
        return super().batches(model, transform, dataset, splits, device, place, reporter)

    def report_phases(self, reporter: Reporter) -> None:
        for row in self.counts:
            reporter.note(f"phase {row['name']}: {row['epochs']} epoch(s) at lr {row['lr']:g}; "
                          f"{row['trainable']:,} trainable, {row['frozen']:,} frozen parameters")

    def extra_train(self) -> dict:
        weights = str(self.weights) if self.spec.weights is not None or self.weights is None else f"loaded by {self.weights}"
        if self.spec.weights is None and self.weights is None:
            weights = f"{self.spec.name} pretrained (Hugging Face cache)"
        return {"finetune": {"mode": self.cfg.finetune_mode, "weights": weights, "head": self.head_name,
                             "phases": self.counts}}


class CachedFeatures(NewHead):
    """The frozen backbone runs once; its features (cached on disk) train the new head alone.

    Epochs take a moment and the backbone never changes, so writing the whole model (528 MB for VGG16)
    after every epoch would cost more than the training: checkpoints are written at the end (and on Ctrl-C).
    """

    checkpoint_every_epoch = False

    def batches(self, model, transform, dataset, splits, device, place, reporter):
        cfg = self.cfg
        if cfg.augment:
            reporter.warn("--augment is ignored in --mode features: the backbone sees each image once, unaugmented")
        features = self.features(dataset, model, transform, splits, device, place, reporter)
        train, val = run_batches(cfg, *(split for split, _ in features), channels=1, size=(1, 1), device=device,
                                 place=place)
        for batches, (_, skipped) in zip((train, val), features):
            batches.skipped = skipped  # images the backbone could not read: the run's summary counts them
        self.report_phases(reporter)
        return HeadOnFeatures(model, self.head_name), identity_transform, train, val

    def features(self, dataset, model, transform, splits, device, place: World, reporter):
        """[(features, skipped)] for train and validation: computed once, then read from the cache."""
        cfg = self.cfg
        amp = default_amp(cfg.amp, device)
        use_cache = cfg.cache and not (cfg.memory_budget and parse_bytes(cfg.memory_budget) == 0)  # --no-cache
        preprocessing = {"mean": self.mean, "std": self.std, "crop": recorded_size(self.crop), "resize": self.resize,
                         "size": list(dataset.size)}
        if cfg.model_args:
            preprocessing["model_args"] = sorted(cfg.model_args.items())
        cache = None
        root = usable_cache_dir(cfg.cache_dir, reporter, "feature", "extracting") if use_cache else None
        if root is not None:
            # A torchvision weights file is keyed by its path, size and time; timm's weights and a user's file's
            # come from no file of cnnkit's, so they are keyed by their own digest.
            weights = weights_fingerprint(self.weights) if self.spec.weights is not None else state_digest(model, self.head_name)
            cache = root / f"features-{feature_cache_key(cfg.model, weights, preprocessing, *splits, amp)}.pt"
        cached = load_cached_features(cache) if cache is not None else None
        if cached is not None:
            touch(cache)  # in use: the least recently used caches are evicted first
            reporter.note(f"features: reusing {cache}")
            return [(split, []) for split in cached]
        started = time.perf_counter()
        # Every rank extracts the whole of both splits (the same on each), then trains on its shard.
        extracted = [self._extract(dataset, split, model, transform, device, amp, reporter) for split in splits]
        seconds = time.perf_counter() - started
        n = sum(len(split) for split, _ in extracted)
        reporter.note(f"features: ran the backbone over {n} images in {seconds:.1f}s ({n / max(seconds, 1e-9):,.1f} images/s)")
        if cache is not None and place.main and save_cached_features(cache, *(split for split, _ in extracted)):
            from cnnkit.data.cache import evict

            reporter.note(f"features: cached in {cache}")
            evict(cache.parent, keep=cache)  # the cache directory's budget counts features too
        return extracted

    def _extract(self, dataset, split, model, transform, device, amp, reporter):
        batches = make_batches(split, channels=dataset.channels, size=dataset.size, device=device, shuffle=False,
                               batch_size=eval_batch_size(self.cfg.batch_size), seed=self.cfg.seed,
                               workers=loader_workers(self.cfg.workers))
        features = extract_features(model, self.head, batches, transform, device, amp)
        reporter.skipped(getattr(batches, "skipped", []))
        return features, list(getattr(batches, "skipped", []))


def finetune_summary(extra_train: dict) -> dict:
    """What a finetune run adds to its summary: mode, weights file, head and each phase's parameter counts."""
    info = extra_train.get("finetune")
    if not info:
        return {}
    return {"mode": info["mode"], "weights": info["weights"], "head": info["head"], "phases": info["phases"]}
