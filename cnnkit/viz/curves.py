"""Training curves: accuracy, loss and learning rate per epoch, with the best epoch, the finetune
phase boundaries and the --val-every points marked."""

from __future__ import annotations

from pathlib import Path

from cnnkit.viz.figure import drawable, pyplot, save_png

BEST_COLOUR = "tab:red"


def best_epoch(history: list[dict]) -> int | None:
    """The first epoch with the highest epoch-end validation accuracy: the epoch best.pt holds, unless a
    --val-every validation chose it (checkpoints record their best_epoch: pass that where there is one)."""
    if not history:
        return None
    return max(history, key=lambda row: (row["val_acc"], -row["epoch"]))["epoch"]


def phase_boundaries(history: list[dict]) -> list[tuple[float, str]]:
    """(x, name of the phase that starts there): halfway between the last epoch of one phase and the next."""
    return [(row["epoch"] - 0.5, row["phase"]) for before, row in zip(history, history[1:])
            if row.get("phase") != before.get("phase")]


def step_to_epoch(history: list[dict], step: int) -> float:
    """A global step as a fractional epoch, read off the steps at which the epochs ended."""
    import numpy as np

    ends = [0] + [row["step"] for row in history]
    return float(np.interp(step, ends, range(len(ends))))


def curves_figure(history: list[dict], title: str | None = None, val_history: list[dict] | None = None,
                  best: int | None = None):
    """The matplotlib figure: accuracy, loss and learning-rate panels over whole-number epochs, the star at
    `best` (the epoch best.pt comes from; by default the best epoch-end validation)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_acc, ax_loss, ax_lr) = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    best = best or best_epoch(history)
    midway = [row for row in (val_history or []) if "step" in row and all("step" in r for r in history)]
    for ax, key, name in ((ax_acc, "acc", "accuracy"), (ax_loss, "loss", "loss")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label="validation")
        if midway:
            ax.plot([step_to_epoch(history, row["step"]) for row in midway], [row[f"val_{key}"] for row in midway],
                    "x", color="tab:green", label="validation (--val-every)")
        if best is not None:
            row = history[epochs.index(best)]
            ax.axvline(best, color=BEST_COLOUR, linestyle=":", linewidth=1)
            ax.plot([best], [row[f"val_{key}"]], "*", color=BEST_COLOUR, markersize=14, label=f"best (epoch {best})")
        ax.set_title(name)
    ax_lr.plot(epochs, [row.get("lr", float("nan")) for row in history], "o-", color="tab:purple", label="learning rate")
    ax_lr.set_title("learning rate (at epoch end)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_acc, ax_loss, ax_lr):
        for x, phase in phase_boundaries(history):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=f"{phase} starts")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:  # from before the first --val-every point, which may come early in epoch 1
            first = min([0.5] + [step_to_epoch(history, row["step"]) - 0.2 for row in midway])
            ax.set_xlim(first, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(drawable(title))
    return fig


def plot_curves(history: list[dict], path: Path, title: str | None = None, val_history: list[dict] | None = None,
                best: int | None = None) -> Path:
    return save_png(curves_figure(history, title, val_history, best), path)
