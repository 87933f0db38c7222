"""Options shared by `train` and `finetune`. Their names are public interface (README, "Commands")."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.common import MAX_BATCH_SIZE, MAX_WORKERS

MAX_EPOCHS = 100_000  # also the most --resume --epochs can make the total: more is a typo, not a plan


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"


class ScheduleName(str, Enum):
    none = "none"
    step = "step"
    cosine = "cosine"
    onecycle = "onecycle"


class InitName(str, Enum):
    default = "default"
    kaiming = "kaiming"
    xavier = "xavier"
    normal = "normal"


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 < value < float("inf"):  # nan and inf too: they train to nan
        raise typer.BadParameter(f"{value} is not a positive finite number")
    return value


def _fraction(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(f"{value} is not between 0 and 1")
    return value


def _finite_non_negative(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 <= value < float("inf"):  # min=0.0 alone lets inf through
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


def _byte_size(value: Optional[str]) -> Optional[str]:
    """Read the size now (the one parser, cnnkit.data.memory's), so `nan` is a usage error at once."""
    if value is not None:
        from cnnkit.data.memory import parse_bytes
        from cnnkit.errors import UsageError

        try:
            parse_bytes(value)
        except UsageError as exc:
            raise typer.BadParameter(exc.message) from None
    return value


Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Catalog name, image folder or IDX directory.")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", "-e", min=1, max=MAX_EPOCHS, help="Epochs to train (default 5; with --resume: the new total).", show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Images per batch (per process under torchrun).")]
Lr = Annotated[float, typer.Option("--lr", callback=_positive, help="Learning rate.")]
Optimizer = Annotated[OptimizerName, typer.Option("--optimizer", case_sensitive=False, help="Optimizer.")]
Momentum = Annotated[float, typer.Option("--momentum", min=0.0, max=1.0, help="Momentum for sgd and rmsprop.")]
Nesterov = Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum for sgd.")]
WeightDecay = Annotated[float, typer.Option("--weight-decay", callback=_finite_non_negative, help="Weight decay.")]
Schedule = Annotated[ScheduleName, typer.Option("--schedule", case_sensitive=False, help="Learning-rate schedule.")]
LabelSmoothing = Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.99, help="Label smoothing for the loss.")]
Init = Annotated[InitName, typer.Option("--init", case_sensitive=False, help="Weight initialisation.")]
Augment = Annotated[str, typer.Option("--augment", help="Comma list of flip,crop,rotate,jitter (batched, on the device).")]
ValSplit = Annotated[Optional[float], typer.Option("--val-split", callback=_fraction, help="Hold out this fraction of train for validation (default: validate on the test split, or 0.2 without one).", show_default=False)]
ValEvery = Annotated[int, typer.Option("--val-every", min=0, help="Also validate every N batches (0: only at epoch end).")]
Out = Annotated[Path, typer.Option("--out", help="Root for run directories.")]
Name = Annotated[Optional[str], typer.Option("--name", help="Run directory name (default <model>-<dataset>[-N]).", show_default=False)]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Run directory or checkpoint to continue exactly.", show_default=False)]
Amp = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast (default: on for CUDA and for CPUs with AVX-512-BF16 or AMX; --no-amp refuses it).", show_default=False)]
Compile = Annotated[bool, typer.Option("--compile", help="Wrap the model in torch.compile.")]
AutoBatch = Annotated[bool, typer.Option("--auto-batch", help="On a CUDA out-of-memory error, split each batch into halves (then quarters...) and retry; the step stays that of --batch-size.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=0, max=MAX_WORKERS, help="Decode workers for folders.", show_default=False)]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only N training images, for quick trials.", show_default=False)]
MemoryBudget = Annotated[Optional[str], typer.Option("--memory-budget", envvar="CNNKIT_MEMORY_BUDGET", callback=_byte_size, help="Largest decoded dataset held in memory, e.g. 4G (default: a quarter of RAM).", show_default=False)]
