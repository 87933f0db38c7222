"""Any model name to its spec and a fresh model: the built-in registry, or an open source.

`torchvision:NAME`, `timm:NAME`, `FILE.py:NAME` and `package.module:NAME` are the open sources
(models/external.py, built on registry.py). This module sits above both, so registry.py imports neither.
"""

from __future__ import annotations

from cnnkit.models.registry import ModelSpec, builtin_spec, call_builder, input_channels_for, input_size_for
from cnnkit.sizes import SizeLike


def get_spec(name: str) -> ModelSpec:
    """A model's spec by name or alias; a user's file is imported only for a name the user gave."""
    if ":" in name:
        from cnnkit.models.external import open_spec

        return open_spec(name)
    return builtin_spec(name)


def get_model(name: str, in_channels: int = 1, num_classes: int = 10, image_size: SizeLike | None = None,
              fixed_size: bool = False, **kwargs):
    """Build a model, freshly initialised. It returns logits of shape (N, num_classes).

    `image_size` (one side or (H, W)) is the data's size (the model's native size wins), or with
    `fixed_size` the size the user chose with --image-size. `kwargs` are --model-arg's, checked against
    what the builder takes.
    """
    spec = get_spec(name)
    size = image_size if fixed_size and image_size is not None else input_size_for(spec, image_size)
    channels = input_channels_for(spec, in_channels)
    return call_builder(spec, in_channels=channels, num_classes=num_classes, image_size=size, args=kwargs)
