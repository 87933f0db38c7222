"""cnnkit lr-find: the learning-rate range test; prints the suggested --lr and plots loss against rate."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from cnnkit.cli import train_options as opt
from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, DeviceOption, JsonOption, QuietOption, SeedOption, handle_errors, print_json


@app.command(
    "lr-find",
    epilog="Examples:\n"
    "  cnnkit lr-find lenet\n"
    "  cnnkit lr-find cnn --dataset cifar10 --optimizer sgd --out lr.png\n"
    "  lr=$(cnnkit lr-find lenet --quiet) && cnnkit train lenet --lr $lr",
)
@handle_errors
def lr_find(
    model: Annotated[str, typer.Argument(help="Model name (see `cnnkit summary --list`).", show_default=False)],
    dataset: opt.Dataset = "mnist-sample",
    start_lr: Annotated[float, typer.Option("--start-lr", callback=opt._positive, help="First learning rate of the ramp.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", callback=opt._positive, help="Last learning rate of the ramp.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", min=12, max=100_000, help="Training steps of the exponential ramp (it stops early when the loss diverges).")] = 100,
    out: Annotated[Path, typer.Option("--out", help="Write the loss-vs-learning-rate plot here (PNG).")] = Path("lr-find.png"),
    batch_size: opt.BatchSize = 64,
    optimizer: opt.Optimizer = opt.OptimizerName.adamw,
    momentum: opt.Momentum = 0.9,
    nesterov: opt.Nesterov = False,
    weight_decay: opt.WeightDecay = 0.0,
    label_smoothing: opt.LabelSmoothing = None,
    init: opt.Init = "default",
    augment: opt.Augment = "",
    amp: opt.Amp = None,
    workers: opt.Workers = None,
    limit: opt.Limit = None,
    memory_budget: opt.MemoryBudget = None,
    data_dir: DataDirOption = "data",
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Find a learning rate: train a few steps at exponentially growing rates and suggest where the loss falls fastest.

    Writes no run directory and leaves nothing changed but the plot.
    """
    from cnnkit.engine.config import TrainConfig
    from cnnkit.engine.lr_find import check_range, lr_find as range_test, plot_range_test
    from cnnkit.reporting import Reporter

    check_range(start_lr, end_lr, steps)  # before any data is read
    reporter = Reporter(quiet=quiet or json_output)
    config = TrainConfig(
        model=model, dataset=dataset, data_dir=str(data_dir), epochs=1, batch_size=batch_size, lr=start_lr,
        optimizer=optimizer.value, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
        schedule="none", label_smoothing=label_smoothing, init=init, augment=augment, amp=amp,
        workers=workers, limit=limit, seed=seed, device=device, memory_budget=memory_budget,
    )
    test = range_test(config, reporter, start_lr=start_lr, end_lr=end_lr, steps=steps)
    plot = plot_range_test(test, out, f"lr-find: {model} on {Path(dataset).name} ({optimizer.value}, batch {batch_size})")
    if json_output:
        print_json({"model": model, "dataset": dataset, "optimizer": optimizer.value, "plot": str(plot), **test.document()})
        return
    if quiet:
        print(f"{test.suggested_lr:.3g}", flush=True)
        return
    how = "stopped when the loss diverged" if test.diverged else "the loss did not diverge in the range"
    reporter.note(f"ran {len(test.lrs)} step(s) from {start_lr:g} ({how}); plot: {plot}")
    print(f"suggested learning rate: {test.suggested_lr:.3g} (steepest descent of the smoothed loss)", flush=True)
    print(f"e.g. cnnkit train {shlex.quote(model)} --dataset {shlex.quote(dataset)} --optimizer {optimizer.value} --lr {test.suggested_lr:.3g}", flush=True)
