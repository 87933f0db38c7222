"""Weight initialisation schemes for --init SCHEME[:ARGS] and --init-bias V.

Every scheme but `default` (PyTorch's own init, kept) and `tutorial-003` re-initialises the weights of each
Conv2d and Linear and zeroes their biases; --init-bias V sets those biases to V instead, under any scheme.
The bare names of cnnkit before issue 15 keep their meaning, so old runs resume identically:
`kaiming` = kaiming-normal, `xavier` = xavier-uniform, `normal` = normal:0,0.01.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from cnnkit.errors import UsageError

# name -> (what its arguments are, how many it takes: (fewest, most))
SCHEMES = {
    "default": ("", (0, 0)),
    "kaiming-normal": ("[:fan_in|fan_out]", (0, 1)),
    "kaiming-uniform": ("[:fan_in|fan_out]", (0, 1)),
    "xavier-normal": ("", (0, 0)),
    "xavier-uniform": ("", (0, 0)),
    "normal": (":MEAN,STD", (2, 2)),
    "uniform": (":A,B", (2, 2)),
    "constant": (":V", (1, 1)),
    "zeros": ("", (0, 0)),
    "orthogonal": ("", (0, 0)),
    "tutorial-003": ("", (0, 0)),
}
ALIASES = {"kaiming": "kaiming-normal", "xavier": "xavier-uniform", "normal": "normal:0,0.01"}
INIT_SCHEMES = tuple(SCHEMES)
FAN_MODES = ("fan_in", "fan_out")


@dataclass(frozen=True)
class InitScheme:
    name: str
    args: tuple = ()


def _usage(spec: str, why: str) -> UsageError:
    forms = ", ".join(f"{name}{args}" for name, (args, _) in SCHEMES.items())
    return UsageError(f"--init {spec!r}: {why}", f"use one of {forms} (old names: {', '.join(ALIASES)})")


def parse_init(spec: str) -> InitScheme:
    """Read `SCHEME[:ARGS]`; a UsageError for an unknown scheme or arguments it cannot take."""
    text = ALIASES.get(spec.strip().lower(), spec.strip().lower())
    name, _, rest = text.partition(":")
    if name not in SCHEMES:
        raise _usage(spec, f"unknown scheme '{name}'")
    fewest, most = SCHEMES[name][1]
    parts = [part.strip() for part in rest.split(",")] if rest else []
    if not fewest <= len(parts) <= most:
        wanted = "no arguments" if most == 0 else f"{SCHEMES[name][0]}"
        raise _usage(spec, f"{name} takes {wanted}, got {len(parts)} value(s)")
    if name.startswith("kaiming"):
        if parts and parts[0] not in FAN_MODES:
            raise _usage(spec, f"the mode must be fan_in or fan_out, not '{parts[0]}'")
        return InitScheme(name, tuple(parts))
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise _usage(spec, f"{','.join(parts)!r} is not a list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise _usage(spec, "values must be finite numbers")
    if name == "normal" and values[1] <= 0:
        raise _usage(spec, "the standard deviation must be positive")
    if name == "uniform" and values[0] >= values[1]:
        raise _usage(spec, "A must be less than B")
    return InitScheme(name, values)


def check_bias(bias: float | None) -> float | None:
    if bias is not None and not math.isfinite(bias):
        raise UsageError(f"--init-bias {bias}: must be a finite number")
    return bias


def _kaiming(module: nn.Module, scheme: InitScheme) -> None:
    # cnnkit's rule since the first --init kaiming: fan_out for convs (as torchvision's ResNets), fan_in for Linear.
    mode = scheme.args[0] if scheme.args else ("fan_out" if isinstance(module, nn.Conv2d) else "fan_in")
    fill = nn.init.kaiming_normal_ if scheme.name == "kaiming-normal" else nn.init.kaiming_uniform_
    fill(module.weight, mode=mode, nonlinearity="relu")


def _weight(module: nn.Module, scheme: InitScheme) -> None:
    name, args = scheme.name, scheme.args
    if name.startswith("kaiming"):
        _kaiming(module, scheme)
    elif name == "xavier-normal":
        nn.init.xavier_normal_(module.weight)
    elif name == "xavier-uniform":
        nn.init.xavier_uniform_(module.weight)
    elif name == "normal":
        nn.init.normal_(module.weight, mean=args[0], std=args[1])
    elif name == "uniform":
        nn.init.uniform_(module.weight, a=args[0], b=args[1])
    elif name == "constant":
        nn.init.constant_(module.weight, args[0])
    elif name == "zeros":
        nn.init.zeros_(module.weight)
    elif name == "orthogonal":
        nn.init.orthogonal_(module.weight)


def _tutorial_003(module: nn.Module) -> None:
    """Tutorial 003's `initialize_weights`, call for call."""
    if isinstance(module, nn.Conv2d):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.3)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.1)  # mean 0.1, std 1: torch's default std
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:  # affine=False has no weight or bias
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def initialise(model: nn.Module, spec: str, bias: float | None = None) -> nn.Module:
    """Re-initialise conv and linear layers by `spec` (see the module's docstring); `bias` overrides their biases."""
    scheme = parse_init(spec)
    check_bias(bias)
    for module in model.modules():
        if scheme.name == "tutorial-003":
            _tutorial_003(module)
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if scheme.name not in ("default", "tutorial-003"):
            _weight(module, scheme)
            if module.bias is not None and bias is None:
                nn.init.zeros_(module.bias)
        if module.bias is not None and bias is not None:
            nn.init.constant_(module.bias, bias)
    return model
