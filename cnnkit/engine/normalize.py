"""--normalize: which mean and std the images are normalised with, read once at option time.

`dataset` (the default) uses the training split's own per-channel statistics; `none` is ToTensor only
(mean 0, std 1: tutorials 000 and 004); `imagenet` torchvision's ImageNet statistics; `MEAN[,MEAN...]
[/STD[,STD...]]` given values, one value for every channel (tutorial 001's CIFAR-10 LeNet: `0.5/0.5`),
STD 1 when omitted. Whatever is used is what the checkpoint's data.mean/std record, so evaluate and
predict normalise alike. Plain Python: the CLI parses with it before torch is imported.
"""

from __future__ import annotations

import math

from cnnkit.errors import UsageError

NAMED = ("dataset", "none", "imagenet")
FORMS = "dataset, none, imagenet or MEAN[,MEAN...][/STD[,STD...]] (e.g. 0.5/0.5)"


def _numbers(text: str, spec: str, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--normalize {spec!r}: {what} {text!r} is not a comma list of numbers", f"use {FORMS}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"--normalize {spec!r}: {what} must be finite numbers", f"use {FORMS}")
    return values


def parse_normalize(spec: str) -> str | tuple[list[float], list[float]]:
    """One of NAMED, or (mean, std) as given (std [1.0] when omitted); a UsageError for anything else."""
    text = spec.strip().lower()
    if text in NAMED:
        return text
    mean_text, slash, std_text = text.partition("/")
    mean = _numbers(mean_text, spec, "the mean")
    std = _numbers(std_text, spec, "the std") if slash else [1.0]
    if not all(s > 0 for s in std):
        raise UsageError(f"--normalize {spec!r}: the std must be positive", "e.g. --normalize 0.5/0.5")
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise UsageError(f"--normalize {spec!r}: {len(mean)} means but {len(std)} stds",
                         "give one value for every channel, or one for all")
    return mean, std


def per_channel(spec: str, values: list[float], channels: int) -> list[float]:
    """One value for each of the data's channels: one given value repeats; another count is an error."""
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise UsageError(f"--normalize {spec}: {len(values)} values for {channels}-channel images",
                         f"give {channels} values, or one for every channel")
    return list(values)
