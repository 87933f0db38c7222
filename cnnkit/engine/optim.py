"""Optimizers and learning-rate schedules.

Schedules are pure functions of the step, wrapped in LambdaLR. A resumed run
rebuilds the same function and continues at the saved step, even when
--epochs grows.
"""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "onecycle")
ONECYCLE_WARMUP = 0.25
ONECYCLE_DIV = 25.0
STEP_GAMMA = 0.1


def build_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float, nesterov: bool = False):
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(schedule: str, step: int, total_steps: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total_steps`."""
    progress = min(step / max(1, total_steps), 1.0)
    if schedule == "none":
        return 1.0
    if schedule == "step":
        # Divide by 10 at one third and two thirds of training.
        every = max(1, epochs // 3) * steps_per_epoch
        return STEP_GAMMA ** (step // every)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        if progress < ONECYCLE_WARMUP:
            t = progress / ONECYCLE_WARMUP
            return 1 / ONECYCLE_DIV + (1 - 1 / ONECYCLE_DIV) * 0.5 * (1 - math.cos(math.pi * t))
        t = (progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}")


def build_scheduler(optimizer, schedule: str, steps_per_epoch: int, epochs: int):
    total = steps_per_epoch * epochs
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total, steps_per_epoch, epochs)
    )
