"""cnnkit finetune: transfer learning from ImageNet backbones."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli import train_options as opt
from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, DeviceOption, JsonOption, QuietOption, SeedOption, handle_errors
from cnnkit.cli.common import CacheDirOption
from cnnkit.cli.output import print_run_summary
from cnnkit.cli.resume_options import refuse_fixed_options
from cnnkit.engine.config import FINETUNE_MODES  # plain values: no torch

FinetuneMode = Enum("FinetuneMode", {mode: mode for mode in FINETUNE_MODES}, type=str)


@app.command(
    epilog="Examples:\n"
    '  cnnkit finetune mobilenet --dataset cats-dogs\n'
    '  cnnkit finetune resnet18 --dataset photos/ --head-epochs 2 \\\n'
    '      --unfreeze-epochs 3\n'
    '  cnnkit finetune vgg16 --dataset cats-dogs --mode features\n'
    '  cnnkit finetune resnet18 --weights my-resnet18.pth --dataset photos/\n'
    '  cnnkit finetune --resume checkpoints/resnet18-PetImages',
)
@handle_errors
def finetune(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="A model with ImageNet weights (`cnnkit summary --list` shows them); not needed with --resume.", show_default=False)] = None,
    dataset: opt.Dataset = "cats-dogs",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="A local ImageNet-shaped state_dict instead of the torch hub cache.", show_default=False)] = None,
    mode: Annotated[FinetuneMode, typer.Option("--mode", case_sensitive=False, help="finetune: train the new head on images (then unfreeze); features: run the backbone once, cache its features and train a linear head on them.")] = FinetuneMode.finetune,
    head_epochs: Annotated[Optional[int], typer.Option("--head-epochs", min=0, help="Epochs with the backbone frozen (default 2; 10 with --mode features).", show_default=False)] = None,
    unfreeze_epochs: Annotated[int, typer.Option("--unfreeze-epochs", min=0, help="Then epochs with everything trainable.")] = 0,
    unfreeze_lr: Annotated[Optional[float], typer.Option("--unfreeze-lr", callback=opt._positive, help="Learning rate once unfrozen (default: --lr / 10).", show_default=False)] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Keep decoded images in memory and on disk when they fit the memory budget, and reuse cached features; --no-cache decodes every epoch.")] = True,
    epochs: Annotated[Optional[int], typer.Option("--epochs", "-e", min=1, help="Total epochs, --head-epochs + --unfreeze-epochs (with --resume: the new total, added to the last phase).", show_default=False)] = None,
    batch_size: opt.BatchSize = 32,
    lr: opt.Lr = 1e-3,
    optimizer: opt.Optimizer = opt.OptimizerName.adam,
    momentum: opt.Momentum = 0.9,
    nesterov: opt.Nesterov = False,
    weight_decay: opt.WeightDecay = 0.0,
    schedule: opt.Schedule = opt.ScheduleName.none,
    label_smoothing: opt.LabelSmoothing = None,
    augment: opt.Augment = "",
    val_split: opt.ValSplit = None,
    val_every: opt.ValEvery = 0,
    out: opt.Out = "checkpoints",
    name: opt.Name = None,
    resume: opt.Resume = None,
    amp: opt.Amp = None,
    compile: opt.Compile = False,
    auto_batch: opt.AutoBatch = False,
    workers: opt.Workers = None,
    limit: opt.Limit = None,
    memory_budget: opt.MemoryBudget = None,
    loss: opt.Loss = "cross-entropy",
    recipe: opt.Recipe = None,
    config: opt.Config = None,
    print_config: opt.PrintConfig = False,
    balance: opt.Balance = None,
    patience: opt.Patience = None,
    tensorboard: opt.Tensorboard = False,
    val_limit: opt.ValLimit = None,
    cache_dir: CacheDirOption = None,
    model_args: opt.ModelArgs = None,
    image_size: opt.ImageSize = None,
    data_dir: DataDirOption = "data",
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune an ImageNet backbone: new head on a frozen backbone, then optionally unfreeze; prints the run directory last."""
    from cnnkit.cli.run_config import print_config as print_resolved, resolve_config
    from cnnkit.engine.finetune import resolve_finetune_config
    from cnnkit.engine.runner import resume_training, start_training
    from cnnkit.reporting import Reporter
    from cnnkit.errors import UsageError

    reporter = Reporter(quiet=quiet or json_output)
    if resume is not None:
        refuse_fixed_options(ctx)  # --recipe and --config too: the run's own config.json wins
        summary = resume_training(resume, reporter, epochs=epochs, device=device, workers=workers,
                                  auto_batch=auto_batch)
    else:
        run_config, given = resolve_config(ctx, "finetune")
        if "model" not in given:
            raise UsageError("missing MODEL", "e.g. `cnnkit finetune mobilenet --dataset cats-dogs` or "
                             "`cnnkit finetune --recipe mobilenetv2-transfer`")
        if run_config.weights:
            run_config.weights = str(Path(run_config.weights).expanduser().resolve())
        if not run_config.cache:  # --no-cache is a zero memory budget: stream and decode every epoch, keep no features
            run_config.memory_budget = "0"
        run_config = resolve_finetune_config(run_config, **phase_epochs(run_config, given))
        if print_config:
            print_resolved(run_config)
            return
        if run_config.tensorboard:  # before any data is read: a missing extra fails at once
            from cnnkit.engine.tensorboard import require_tensorboard

            require_tensorboard()
        summary = start_training(run_config, reporter)
    if not (quiet or json_output):
        print_phases(summary.get("phases", []))
    print_run_summary(summary, json_output=json_output, quiet=quiet)


def phase_epochs(run_config, given: dict) -> dict:
    """--epochs (the total) and --head-epochs as the strongest layer that set either gives them.

    `--recipe vgg16-head --epochs 3` means 3 epochs: the recipe's own head_epochs gives way. Both from
    the same layer (a run's config.json) must agree, as on the command line.
    """
    from cnnkit.cli.run_config import LAYERS

    rank = {name: LAYERS.index(layer) for name, layer in given.items() if name in ("epochs", "head_epochs")}
    top = max(rank.values(), default=None)
    return {name: getattr(run_config, name) if rank.get(name, -1) == top else None for name in ("epochs", "head_epochs")}


def print_phases(phases: list[dict]) -> None:
    """Per phase: epochs, learning rate, and trainable vs frozen parameters."""
    if not phases:
        return
    from rich.table import Table

    from cnnkit.cli.common import stdout_console

    table = Table(title="phases")
    for column in ("phase", "epochs", "lr", "trainable", "frozen"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for row in phases:
        table.add_row(row["name"], str(row["epochs"]), f"{row['lr']:g}", f"{row['trainable']:,}", f"{row['frozen']:,}")
    stdout_console().print(table)
