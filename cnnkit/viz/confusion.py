"""The confusion matrix as a PNG: true classes down, predicted classes across, with names.

Colours are row-normalised (the share of each true class predicted as each class), so a small class
reads as clearly as a large one; each cell says its share, and its count while the cells are few.
"""

from __future__ import annotations

from pathlib import Path

from cnnkit.viz.figure import drawable, pyplot, save_png

# Past this many classes the cell texts would be unreadable; the colours still show the pattern.
MAX_ANNOTATED = 30
MAX_COUNTED = 12  # up to this many classes a cell shows its count under its share
MAX_LABELLED = 100


def row_normalised(counts):
    """Each row divided by its total: the fraction of a true class given to each predicted class (0 for an empty row)."""
    import numpy as np

    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_figure(confusion, classes: list[str], title: str = "confusion matrix"):
    plt = pyplot()
    classes, title = [drawable(c) for c in classes], drawable(title)
    counts = confusion.numpy() if hasattr(confusion, "numpy") else confusion
    shares = row_normalised(counts)
    n = len(classes)
    side = min(24.0, max(5.0, 0.45 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", interpolation="nearest", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= MAX_LABELLED:
        ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right")
        ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= MAX_ANNOTATED:
        for row in range(n):
            for col in range(n):
                text = f"{shares[row, col]:.0%}" + (f"\n{int(counts[row, col])}" if n <= MAX_COUNTED else "")
                ax.text(col, row, text, ha="center", va="center", fontsize=8,
                        color="white" if shares[row, col] > 0.5 else "black")
    fig.tight_layout()
    return fig


def plot_confusion(confusion, classes: list[str], path: str | Path, title: str = "confusion matrix") -> Path:
    return save_png(confusion_figure(confusion, classes, title), path)
