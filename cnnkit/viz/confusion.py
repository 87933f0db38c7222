"""The confusion matrix as a PNG: true classes down, predicted classes across, with names."""

from __future__ import annotations

from pathlib import Path

from cnnkit.viz.figure import pyplot, save_png

# Past this many classes the cell counts would be unreadable; the colours still show the pattern.
MAX_ANNOTATED = 30
MAX_LABELLED = 100


def plot_confusion(confusion, classes: list[str], path: str | Path, title: str = "confusion matrix") -> Path:
    plt = pyplot()
    counts = confusion.numpy() if hasattr(confusion, "numpy") else confusion
    n = len(classes)
    side = min(24.0, max(5.0, 0.45 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= MAX_LABELLED:
        ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right")
        ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= MAX_ANNOTATED:
        threshold = counts.max() / 2 if counts.size else 0
        for row in range(n):
            for col in range(n):
                ax.text(col, row, str(int(counts[row, col])), ha="center", va="center", fontsize=8,
                        color="white" if counts[row, col] > threshold else "black")
    fig.tight_layout()
    return save_png(fig, path)
