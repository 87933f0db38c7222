"""One registry for every model: names, aliases, native input sizes and builders."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from cnnkit.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    description: str
    # Input size the architecture is built for. None: the builder adapts to any size.
    native_size: int | None = None
    # Size to resize to when the data has no single size and the model adapts.
    default_size: int = 28
    # Channels the architecture requires (grey input is repeated); None: any.
    channels: int | None = None
    # torchvision weights enum, "VGG16_Weights.IMAGENET1K_V1" style, for pretrained use.
    weights: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


_MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, description: str, **options) -> Callable:
    """Decorator: register a builder `(in_channels, num_classes, image_size, **kw) -> nn.Module`."""

    def decorate(builder: Callable) -> Callable:
        spec = ModelSpec(name=name, builder=builder, description=description, **options)
        _MODELS[name] = spec
        for alias in spec.aliases:
            _ALIASES[alias] = name
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_MODELS)


def list_aliases() -> dict[str, str]:
    return dict(_ALIASES)


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name or alias; `-` and `_` are interchangeable."""
    key = name.strip().lower()
    for candidate in (key, key.replace("-", "_"), key.replace("_", "-")):
        candidate = _ALIASES.get(candidate, candidate)
        if candidate in _MODELS:
            return _MODELS[candidate]
    known = list(_MODELS) + list(_ALIASES)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known models: {', '.join(list_models())}"
    raise ModelError(f"unknown model '{name}'", hint)


def input_size_for(spec: ModelSpec, data_size: int | None) -> int:
    """The side length the model is fed: its native size, or the data's own."""
    if spec.native_size is not None:
        return spec.native_size
    return data_size if data_size is not None else spec.default_size


def input_channels_for(spec: ModelSpec, data_channels: int) -> int:
    return spec.channels if spec.channels is not None else data_channels


def get_model(
    name: str,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int | None = None,
    pretrained: bool = False,
    **kwargs,
):
    """Build a registered model. It returns logits of shape (N, num_classes)."""
    spec = get_spec(name)
    size = input_size_for(spec, image_size)
    if pretrained:
        from cnnkit.models.backbones import build_pretrained

        return build_pretrained(spec, num_classes)
    channels = input_channels_for(spec, in_channels)
    return spec.builder(in_channels=channels, num_classes=num_classes, image_size=size, **kwargs)
