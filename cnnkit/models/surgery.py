"""Operations on a built model that finetune and summary share: a new head, a frozen backbone, the counts."""

from __future__ import annotations

from torch import nn

from cnnkit.models.registry import ModelSpec


def replace_head(model: nn.Module, spec: ModelSpec, num_classes: int) -> nn.Module:
    """Swap the ImageNet classifier for one Linear sized to the dataset's classes, at `spec.new_head`."""
    old = model.get_submodule(spec.new_head)
    # The new Linear takes what the old classifier took: its first Linear's inputs (the head itself for most).
    in_features = next(m for m in old.modules() if isinstance(m, nn.Linear)).in_features
    model.set_submodule(spec.new_head, nn.Linear(in_features, num_classes))
    return model


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
