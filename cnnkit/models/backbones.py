"""torchvision backbones (VGG16, ResNet18, MobileNetV2) and their ImageNet weights.

Weights live in the torch hub cache under the file names torchvision uses, so
`cnnkit download --weights` and torchvision share one cache. They are always
loaded with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import MobileNet_V2_Weights, ResNet18_Weights, VGG16_Weights

from cnnkit.errors import CheckpointError, ModelError
from cnnkit.models.registry import ModelSpec, register
from cnnkit.models.surgery import replace_head
from cnnkit.safeload import load_state_dict_file


@register(
    "vgg16",
    "VGG16 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    head="classifier.6",
    finetune_head="classifier",  # the seed tutorial's VGG16 head: one Linear on the 25,088 features
    weights=VGG16_Weights.IMAGENET1K_V1,
    aliases=("vgg",),
)
def vgg16(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.vgg16(weights=None, num_classes=num_classes)


@register(
    "resnet18",
    "ResNet18 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    head="fc",
    weights=ResNet18_Weights.IMAGENET1K_V1,
    aliases=("resnet",),
)
def resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


@register(
    "mobilenet_v2",
    "MobileNetV2 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    head="classifier.1",
    weights=MobileNet_V2_Weights.IMAGENET1K_V1,
    aliases=("mobilenet", "mobilenetv2"),
)
def mobilenet_v2(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)


def weights_path(spec: ModelSpec, given: str | Path | None = None) -> Path:
    """The state_dict file pretrained weights come from: `given` (finetune --weights), else torch hub's
    cache, where torchvision keeps (or would keep) them under its own file name."""
    if given:
        return Path(given).expanduser()
    url = spec.require_weights().url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def torchvision_architecture(spec: ModelSpec) -> nn.Module:
    """The exact torchvision architecture the ImageNet weights belong to, with their head (weights not loaded)."""
    from cnnkit.models.external import torchvision_architecture as zoo_architecture

    ref = spec.source["ref"] if spec.source else spec.name  # torchvision:NAME, or a built-in's own name
    return zoo_architecture(ref, len(spec.categories))


def finetune_architecture(spec: ModelSpec, num_classes: int) -> nn.Module:
    """What finetune trains and saves: torchvision's architecture with a new head (weights not loaded)."""
    from cnnkit.models.external import drop_auxiliary

    return replace_head(drop_auxiliary(torchvision_architecture(spec)), spec, num_classes)


def load_weights_into(model: nn.Module, state: dict, source: str) -> None:
    """Load a state_dict, naming the first mismatched keys when it does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"shape of {k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        raise CheckpointError(
            f"weights in {source} do not fit {type(model).__name__}: {'; '.join(parts)}",
            "pass weights saved from the same architecture",
        )
    model.load_state_dict(state)


def build_pretrained(spec: ModelSpec, num_classes: int | None = None, weights_file: str | Path | None = None) -> nn.Module:
    """torchvision's architecture with ImageNet (or the given) weights; with `num_classes`, a new head that size."""
    path = weights_path(spec, weights_file)
    if weights_file is None and not path.is_file():
        raise ModelError(
            f"ImageNet weights for {spec.name} are not in the torch hub cache ({path})",
            f"run `cnnkit download --weights {spec.name}`, or pass a local state_dict with --weights FILE",
        )
    from cnnkit.models.external import drop_auxiliary

    model = torchvision_architecture(spec)
    load_weights_into(model, load_state_dict_file(path), str(path))
    model = drop_auxiliary(model)
    return model if num_classes is None else replace_head(model, spec, num_classes)
