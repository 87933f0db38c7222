"""Training curves: accuracy and loss, train and validation, per epoch."""

from __future__ import annotations

from pathlib import Path

from cnnkit.viz.figure import pyplot, save_png


def plot_curves(history: list[dict], path: Path) -> None:
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_acc, "acc", "accuracy"), (ax_loss, "loss", "loss")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)
