"""The learning-rate range test (Smith 2015; fastai's lr_find, Lightning's Tuner.lr_find).

Train for a few steps while the learning rate grows exponentially from start to end, record the
smoothed loss, stop once it diverges, and suggest the rate where the loss falls fastest. It starts
from the same model, data and transform a `train` run with these options would, makes no run
directory, and puts the model's weights and the random-number state back as they were.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnkit.engine.config import TrainConfig, label_smoothing_for
from cnnkit.engine.losses import build_loss
from cnnkit.engine.optim import build_optimizer
from cnnkit.engine.state import capture_rng, restore_rng
from cnnkit.engine.step import TrainStep
from cnnkit.errors import CnnkitError, UsageError
from cnnkit.reporting import Reporter

SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected (fastai's beta)
DIVERGE_FACTOR = 4.0  # stop when the smoothed loss passes this many times its best (Lightning's early_stop_threshold)
SKIP_BEGIN, SKIP_END = 10, 1  # points left out of the suggestion, as Lightning's suggestion() does
NO_RUN_DIR = Path("lr-find: no run directory")  # prepare() only creates a run directory when given none


@dataclass
class RangeTest:
    start_lr: float
    end_lr: float
    steps: int
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed
    raw_losses: list[float] = field(default_factory=list)
    diverged: bool = False
    suggested_index: int | None = None

    @property
    def suggested_lr(self) -> float | None:
        return None if self.suggested_index is None else self.lrs[self.suggested_index]

    def document(self) -> dict:
        return {**asdict(self), "steps_run": len(self.lrs), "suggested_lr": self.suggested_lr}


def check_range(start_lr: float, end_lr: float, steps: int) -> None:
    if not (0 < start_lr < end_lr < math.inf):
        raise UsageError(f"--start-lr {start_lr:g} and --end-lr {end_lr:g}: the range must go up from a positive rate",
                         "e.g. --start-lr 1e-7 --end-lr 10")
    if steps < SKIP_BEGIN + SKIP_END + 2:
        raise UsageError(f"--steps {steps} is too few to suggest a rate", f"use at least {SKIP_BEGIN + SKIP_END + 2}")


def steepest_descent(losses: list[float]) -> int | None:
    """Index of the most negative slope of the loss (against log lr, the ramp's even steps), skipping the ends."""
    import numpy as np

    if len(losses) < SKIP_BEGIN + SKIP_END + 2:
        return None
    window = np.asarray(losses[SKIP_BEGIN:-SKIP_END], dtype=float)
    return SKIP_BEGIN + int(np.gradient(window).argmin())


def lr_find(cfg: TrainConfig, reporter: Reporter, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            steps: int = 100) -> RangeTest:
    from cnnkit.engine.setup import prepare

    check_range(start_lr, end_lr, steps)
    setup = prepare(cfg, reporter, run_dir=NO_RUN_DIR)
    model = setup.model
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator(device=setup.device if setup.device.type == "cuda" else "cpu").manual_seed(cfg.seed)
    rng = capture_rng(generator)
    try:
        return _ramp(setup, model, generator, reporter, RangeTest(start_lr, end_lr, steps))
    finally:
        model.load_state_dict(weights)
        restore_rng(rng, generator)


def _ramp(setup, model: nn.Module, generator: torch.Generator, reporter: Reporter, test: RangeTest) -> RangeTest:
    cfg = setup.config
    criterion = build_loss(cfg.loss, label_smoothing_for(cfg))  # the criterion training would use
    step = TrainStep(model, criterion, amp=setup.amp, batch_size=cfg.batch_size, auto_batch=False, ddp=False,
                     reporter=reporter)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, test.start_lr, cfg.momentum, cfg.weight_decay,
                                cfg.nesterov)
    growth = (test.end_lr / test.start_lr) ** (1 / (test.steps - 1))
    model.train()
    average, best = 0.0, math.inf
    reporter.start(f"lr-find {test.start_lr:g} to {test.end_lr:g}", test.steps)
    for i, (images, labels) in enumerate(_batches(setup.train_batches, test.steps)):
        lr = test.start_lr * growth**i
        for group in optimizer.param_groups:
            group["lr"] = lr
        _, loss = step(optimizer, setup.transform(images, train=True, generator=generator), labels)
        value = float(loss.detach())  # one read per step: the ramp is short and each point decides whether to go on
        if not math.isfinite(value):
            test.diverged = True
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        test.lrs.append(lr)
        test.losses.append(smoothed)
        test.raw_losses.append(value)
        best = min(best, smoothed)
        reporter.advance(lambda: f"lr {lr:.2e} loss {smoothed:.4f}")
        if smoothed > DIVERGE_FACTOR * best:
            test.diverged = True
            break
    reporter.finish(f"lr-find: {len(test.lrs)} step(s), {'stopped: the loss diverged' if test.diverged else 'whole range'}")
    test.suggested_index = steepest_descent(test.losses)
    if test.suggested_index is None:
        raise CnnkitError(
            f"the loss diverged after {len(test.lrs)} step(s) of the range test: too few to suggest a rate",
            f"start lower (--start-lr {test.start_lr / 100:g}) or use more --steps",
        )
    return test


def _batches(batches, steps: int):
    """`steps` training batches, going on into further epochs when one epoch has fewer."""
    done, epoch = 0, 0
    while done < steps:
        for batch in batches.epoch(epoch):
            yield batch
            done += 1
            if done == steps:
                return
        epoch += 1


def plot_range_test(test: RangeTest, path: str | Path, title: str) -> Path:
    from cnnkit.viz.figure import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(test.lrs, test.raw_losses, color="0.75", linewidth=0.8, label="loss")
    ax.plot(test.lrs, test.losses, color="C0", label="smoothed loss")
    if test.suggested_lr is not None:
        i = test.suggested_index
        ax.plot([test.lrs[i]], [test.losses[i]], "o", color="C3", markersize=8,
                label=f"suggested {test.lrs[i]:.2e} (steepest descent)")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # Text is drawn literally (viz.figure.LITERAL_TEXT), so the log axis's default $10^{-7}$ labels would show raw.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    low, high = min(test.losses), max(test.losses[: max(1, len(test.losses) // 2)] + [test.losses[0]])
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.4 * (high - low + 1e-9))  # the diverged tail may leave the plot
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, path)
