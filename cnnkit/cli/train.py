"""cnnkit train: train a model from scratch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnnkit.cli import train_options as opt
from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, DeviceOption, JsonOption, QuietOption, SeedOption, handle_errors
from cnnkit.cli.common import CacheDirOption, CacheOption
from cnnkit.cli.output import print_run_summary
from cnnkit.cli.resume_options import refuse_fixed_options


@app.command(
    epilog="Examples:\n"
    '  cnnkit train lenet\n'
    '  cnnkit train lenet --dataset cifar10 --epochs 3 --optimizer sgd --lr 0.001 \\\n'
    '      --batch-size 14\n'
    '  run=$(cnnkit train cnn --epochs 1 --quiet)\n'
    '  cnnkit train --resume checkpoints/lenet-cifar10',
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
    label_smoothing: opt.LabelSmoothing = None,
    init: opt.Init = "default",
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
    init_bias: opt.InitBias = None,
    loss: opt.Loss = "cross-entropy",
    normalize: opt.Normalize = "dataset",
    recipe: opt.Recipe = None,
    config: opt.Config = None,
    print_config: opt.PrintConfig = False,
    balance: opt.Balance = None,
    patience: opt.Patience = None,
    tensorboard: opt.Tensorboard = False,
    val_limit: opt.ValLimit = None,
    cache_dir: CacheDirOption = None,
    cache: CacheOption = True,
    model_args: opt.ModelArgs = None,
    image_size: opt.ImageSize = None,
    data_dir: DataDirOption = "data",
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model from scratch; writes a run directory and prints its path last."""
    from cnnkit.cli.run_config import print_config as print_resolved, resolve_config
    from cnnkit.reporting import Reporter
    from cnnkit.engine.runner import resume_training, start_training
    from cnnkit.errors import UsageError

    reporter = Reporter(quiet=quiet or json_output)
    if resume is not None:
        refuse_fixed_options(ctx)  # --recipe and --config too: the run's own config.json wins
        summary = resume_training(resume, reporter, epochs=epochs, device=device, workers=workers,
                                  auto_batch=auto_batch)
    else:
        run_config, given = resolve_config(ctx, "train")
        if "model" not in given:
            raise UsageError("missing MODEL", "e.g. `cnnkit train lenet` or `cnnkit train --recipe lenet-cifar10`; "
                             "list models with `cnnkit summary --list`")
        if print_config:
            print_resolved(run_config)
            return
        if run_config.tensorboard:  # before any data is read: a missing extra fails at once
            from cnnkit.engine.tensorboard import require_tensorboard

            require_tensorboard()
        summary = start_training(run_config, reporter)
    print_run_summary(summary, json_output=json_output, quiet=quiet)
