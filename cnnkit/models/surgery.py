"""Operations on a built model that finetune and summary share: a new head, a frozen backbone, the counts."""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.errors import CnnkitError, ModelError, first_line
from cnnkit.models.registry import ModelSpec


# Where classifiers sit, in the order tried: torchvision (fc, classifier[-1], head, heads.head), timm
# (head.fc, fc, classifier), EfficientNet-Lite and lukemelas' EfficientNet (_fc). A container is searched
# for its last Linear (or 1x1 Conv2d, SqueezeNet's).
HEAD_PATHS = ("fc", "classifier", "head", "heads.head", "head.fc", "_fc", "last_linear")
HEAD_TYPES = (nn.Linear, nn.Conv2d)


def _last_layer(module: nn.Module, prefix: str) -> str | None:
    found = None
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, HEAD_TYPES):
            found = name
    return found


def find_head(model: nn.Module) -> str:
    """The attribute path of a model's final classifier layer, found without knowing the model."""
    for path in HEAD_PATHS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        found = path if isinstance(module, HEAD_TYPES) else _last_layer(module, path)
        if found:
            return found
    found = next((name for name, sub in reversed(list(model.named_modules())) if isinstance(sub, nn.Linear)), None)
    if found is None:
        raise ModelError(f"{type(model).__name__} has no Linear layer to use as its head",
                         "finetune replaces the model's last Linear; give the model one")
    return found


def head_of(model: nn.Module, spec: ModelSpec) -> str:
    """Where the head is: the registry's word for the built-ins, else found in the model."""
    return spec.new_head if spec.new_head else find_head(model)


def new_layer_like(old: nn.Module, num_classes: int) -> nn.Module:
    """One fresh layer taking what `old` took: its first Linear's inputs (a 1x1 Conv2d's for SqueezeNet)."""
    first = next(m for m in old.modules() if isinstance(m, HEAD_TYPES))
    if isinstance(first, nn.Conv2d):
        return nn.Conv2d(first.in_channels, num_classes, kernel_size=1)
    return nn.Linear(first.in_features, num_classes)


def replace_head(model: nn.Module, spec: ModelSpec, num_classes: int, path: str | None = None) -> nn.Module:
    """Swap the ImageNet classifier for one layer sized to the dataset's classes, at `spec.new_head`."""
    path = path or head_of(model, spec)
    model.set_submodule(path, new_layer_like(model.get_submodule(path), num_classes))
    return model


def check_output(model: nn.Module, name: str, input_shape: tuple[int, int, int], num_classes: int,
                 error: type[CnnkitError] = ModelError) -> None:
    """One batch of two through the model before training: a wrong head or size fails here, clearly."""
    was_training = model.training
    model.eval()  # BatchNorm keeps its running statistics; one sample per channel is fine in eval
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        first = first_line(exc)
        channels, height, width = input_shape
        raise error(f"model {name} cannot take a {channels}x{height}x{width} input: {first}",
                    "choose another --image-size, or see `cnnkit summary` for the size at every layer") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise error(f"model {name} returned a {type(out).__name__}, not a tensor of logits",
                    "its forward must return one tensor of shape (N, classes)")
    if tuple(out.shape) != (2, num_classes):
        got = ", ".join(["N", *map(str, out.shape[1:])]) if out.dim() else ""
        raise error(f"model {name} returned shape ({got}); wanted (N, {num_classes})",
                    "its last layer must give one logit per class: build it with num_classes")


def set_frozen(model: nn.Module, head: nn.Module, frozen: bool) -> None:
    """Freeze all but the head (or nothing). Frozen BatchNorm keeps its running statistics."""
    head_params = {id(p) for p in head.parameters()}
    head_modules = {id(m) for m in head.modules()}
    for param in model.parameters():
        param.requires_grad = not frozen or id(param) in head_params
    if frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and id(module) not in head_modules:
                module.eval()


def parameter_counts(model: nn.Module) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable}
