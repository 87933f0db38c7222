"""cnnkit train: train a model from scratch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnnkit.cli import train_options as opt
from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, DeviceOption, JsonOption, QuietOption, SeedOption, handle_errors
from cnnkit.cli.output import print_run_summary
from cnnkit.cli.resume_options import refuse_fixed_options


@app.command(
    epilog="Examples:  cnnkit train lenet  |  cnnkit train lenet --dataset cifar10 --epochs 3 --optimizer sgd --lr 0.001 --batch-size 14"
    "  |  run=$(cnnkit train cnn --epochs 1 --quiet)  |  cnnkit train --resume checkpoints/lenet-cifar10",
)
@handle_errors
def train(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Model name (see `cnnkit summary --list`); not needed with --resume.", show_default=False)] = None,
    dataset: opt.Dataset = "mnist-sample",
    epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = 64,
    lr: opt.Lr = 5e-3,
    optimizer: opt.Optimizer = opt.OptimizerName.adamw,
    momentum: opt.Momentum = 0.9,
    nesterov: opt.Nesterov = False,
    weight_decay: opt.WeightDecay = 0.0,
    schedule: opt.Schedule = opt.ScheduleName.onecycle,
    label_smoothing: opt.LabelSmoothing = 0.1,
    init: opt.Init = opt.InitName.default,
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
    data_dir: DataDirOption = "data",
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model from scratch; writes a run directory and prints its path last."""
    from cnnkit.engine.config import TrainConfig
    from cnnkit.reporting import Reporter
    from cnnkit.engine.runner import resume_training, start_training
    from cnnkit.errors import UsageError

    reporter = Reporter(quiet=quiet or json_output)
    if resume is not None:
        refuse_fixed_options(ctx)
        summary = resume_training(resume, reporter, epochs=epochs, device=device, workers=workers,
                                  auto_batch=auto_batch)
    else:
        if model is None:
            raise UsageError("missing MODEL", "e.g. `cnnkit train lenet`; list models with `cnnkit summary --list`")
        config = TrainConfig(
            model=model, dataset=dataset, data_dir=str(data_dir), epochs=epochs or 5, batch_size=batch_size,
            lr=lr, optimizer=optimizer.value, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            schedule=schedule.value, label_smoothing=label_smoothing, init=init.value, augment=augment,
            val_split=val_split, val_every=val_every, out=str(out), name=name, amp=amp, compile=compile, auto_batch=auto_batch,
            workers=workers, limit=limit, seed=seed, device=device, memory_budget=memory_budget,
        )
        summary = start_training(config, reporter)
    print_run_summary(summary, json_output=json_output, quiet=quiet)
