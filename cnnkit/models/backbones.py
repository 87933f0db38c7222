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

from cnnkit.errors import CheckpointError, ModelError
from cnnkit.models.registry import ModelSpec, register
from cnnkit.safeload import load_state_dict_file


@register(
    "vgg16",
    "VGG16 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    weights="VGG16_Weights.IMAGENET1K_V1",
    aliases=("vgg",),
)
def vgg16(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.vgg16(weights=None, num_classes=num_classes)


@register(
    "resnet18",
    "ResNet18 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    weights="ResNet18_Weights.IMAGENET1K_V1",
    aliases=("resnet",),
)
def resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


@register(
    "mobilenet_v2",
    "MobileNetV2 (torchvision); ImageNet weights available",
    native_size=224,
    channels=3,
    weights="MobileNet_V2_Weights.IMAGENET1K_V1",
    aliases=("mobilenet", "mobilenetv2"),
)
def mobilenet_v2(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)


def weights_enum(spec: ModelSpec):
    """The torchvision weights entry (with .url, .transforms, .meta) for a model."""
    if spec.weights is None:
        raise ModelError(
            f"model '{spec.name}' has no pretrained weights",
            "pretrained weights exist for vgg16, resnet18, mobilenet_v2 and alexnet",
        )
    return torchvision.models.get_weight(spec.weights)


def weights_path(spec: ModelSpec) -> Path:
    """Where torch.hub keeps (or would keep) the weights file for this model."""
    url = weights_enum(spec).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def torchvision_architecture(spec: ModelSpec, num_classes: int = 1000) -> nn.Module:
    """The exact torchvision architecture the ImageNet weights belong to."""
    builder = getattr(torchvision.models, spec.name)
    return builder(weights=None, num_classes=num_classes)


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


def replace_head(model: nn.Module, spec: ModelSpec, num_classes: int) -> nn.Module:
    """Swap the ImageNet classifier for a new one sized to the dataset's classes."""
    if spec.name == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif spec.name == "vgg16":
        # The seed tutorial's VGG16 head: a single Linear on the 25,088 features.
        model.classifier = nn.Linear(model.classifier[0].in_features, num_classes)
    else:  # mobilenet_v2 and alexnet: keep dropout, replace the last Linear
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model


def head_module_name(spec: ModelSpec) -> str:
    return "fc" if spec.name == "resnet18" else "classifier"


def build_pretrained(spec: ModelSpec, num_classes: int = 1000, weights_file: Path | None = None) -> nn.Module:
    """torchvision's architecture with ImageNet (or the given) weights and a fitting head."""
    path = Path(weights_file) if weights_file else weights_path(spec)
    if weights_file is None and not path.is_file():
        raise ModelError(
            f"ImageNet weights for {spec.name} are not in the torch hub cache ({path})",
            f"run `cnnkit download --weights {spec.name}`, or pass a local state_dict with --weights FILE",
        )
    model = torchvision_architecture(spec)
    load_weights_into(model, load_state_dict_file(path), str(path))
    if num_classes != 1000:
        replace_head(model, spec, num_classes)
    return model
