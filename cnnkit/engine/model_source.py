"""Where a run's model comes from, and what that decides about its data, batches and phases.

engine/setup.py `prepare` runs the steps every run shares and asks a ModelSource for the rest. Scratch
(cnnkit train) is the default of every step; engine/finetune.py adds a pretrained model with a new head
and the same on cached backbone features.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cnnkit.data.batches import make_batches
from cnnkit.data.dataset import TensorSplit
from cnnkit.data.transforms import channel_stats
from cnnkit.engine.config import TrainConfig, eval_batch_size, loader_workers
from cnnkit.engine.distributed import World
from cnnkit.engine.normalize import parse_normalize, per_channel
from cnnkit.engine.trainer import Phase
from cnnkit.errors import UsageError
from cnnkit.models import get_model, get_spec, initialise
from cnnkit.models.registry import ModelSpec, input_channels_for, input_size_for
from cnnkit.models.surgery import check_output
from cnnkit.sizes import Size, pair, recorded_size

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def run_batches(cfg: TrainConfig, train_split, val_split, *, channels: int, size, device: torch.device,
                place: World, workers: int | None = None):
    """Training batches (shuffled, padded to shard evenly) and validation batches, each rank its shard."""
    common = dict(channels=channels, size=size, device=device, seed=cfg.seed, workers=loader_workers(workers),
                  rank=place.rank, world=place.size)
    train = make_batches(train_split, batch_size=cfg.batch_size, shuffle=True, pad=True, **common)
    val = make_batches(val_split, batch_size=eval_batch_size(cfg.batch_size), shuffle=False, pad=False, **common)
    return train, val


class ModelSource:
    """What prepare asks of a model source; each default is what a model trained from scratch does."""

    checkpoint_every_epoch = True
    freeze: Callable[[nn.Module, bool], None] | None = None

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.validate()
        self.spec: ModelSpec = self.find_spec()
        if (self.spec.source or {}).get("kind") == "file":
            cfg.model = self.spec.name  # the file's absolute path: --resume finds it from any directory

    def validate(self) -> None:
        if self.cfg.epochs < 1:
            raise UsageError("--epochs must be at least 1")

    def find_spec(self) -> ModelSpec:
        return get_spec(self.cfg.model)

    def load(self) -> None:
        """Read what must be read before the data, so that a missing or bad file fails first."""

    @property
    def chosen_size(self) -> Size | None:
        """The (H, W) --image-size asked for, else None."""
        return pair(self.cfg.image_size) if self.cfg.image_size else None

    def decode_size(self) -> tuple[Size, int | None]:
        """(the (H, W) images are decoded at, at most, and the side they are resized to first, if any)."""
        return self.chosen_size or pair(self.spec.native_size or self.spec.default_size), None

    def input_shape(self, dataset) -> tuple[int, Size]:
        """(channels, (H, W)) the model is fed: --image-size, else the model's native size or the data's."""
        size = self.chosen_size or input_size_for(self.spec, dataset.size)
        return input_channels_for(self.spec, dataset.channels), size

    def build(self, in_channels: int, num_classes: int, input_size: Size) -> nn.Module:
        model = initialise(get_model(self.spec.name, in_channels=in_channels, num_classes=num_classes,
                                     image_size=input_size, fixed_size=True, **self.cfg.model_args), self.cfg.init, self.cfg.init_bias)
        check_output(model, self.spec.name, (in_channels, *input_size), num_classes)
        return model

    def model_kwargs(self, in_channels: int, num_classes: int, input_size: Size) -> dict:
        return {"in_channels": in_channels, "num_classes": num_classes, "image_size": recorded_size(input_size)}

    def model_section(self, in_channels: int, num_classes: int, input_size: Size) -> dict:
        """The checkpoint's model section, less the weights: what evaluate and predict rebuild it from."""
        section = {"name": self.spec.name, "kwargs": self.model_kwargs(in_channels, num_classes, input_size)}
        if self.cfg.model_args:
            section["args"] = dict(self.cfg.model_args)
        if self.spec.source is not None:
            section["source"] = dict(self.spec.source)
        return section

    def normalisation(self, train_split, channels: int) -> tuple[list[float], list[float]]:
        """(mean, std) per channel of the data, by --normalize (engine/normalize.py); the checkpoint records them."""
        spec = self.cfg.normalize
        chosen = parse_normalize(spec)
        if chosen == "none":  # ToTensor only
            return [0.0] * channels, [1.0] * channels
        if chosen == "imagenet":
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        if chosen != "dataset":
            mean, std = chosen
            return per_channel(spec, mean, channels), per_channel(spec, std, channels)
        if isinstance(train_split, TensorSplit):
            return channel_stats(train_split.images)
        # Streamed photos: ImageNet's statistics are the usual stand-in.
        return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ([0.5], [0.25])

    def phases(self) -> list[Phase]:
        return [Phase("train", self.cfg.epochs, self.cfg.lr)]

    def batches(self, model: nn.Module, transform, dataset, splits, device: torch.device, place: World, reporter):
        """(the module the Trainer trains, its batch transform, training batches, validation batches)."""
        train, val = run_batches(self.cfg, *splits, channels=dataset.channels, size=dataset.size, device=device,
                                 place=place, workers=self.cfg.workers)
        return model, transform, train, val

    def extra_train(self) -> dict:
        """What the checkpoint's train section records beyond the loop state."""
        return {}


class Scratch(ModelSource):
    """cnnkit train: the registry's model at its native size, initialised by --init."""
