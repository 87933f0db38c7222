"""Weight initialisation schemes for --init."""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("default", "kaiming", "xavier", "normal")


def initialise(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise conv and linear layers; `default` keeps PyTorch's own init."""
    if scheme == "default":
        return model
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(module.weight, mode="fan_out" if isinstance(module, nn.Conv2d) else "fan_in", nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_uniform_(module.weight)
        elif scheme == "normal":
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return model
