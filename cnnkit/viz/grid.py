"""A grid of sample images titled with their class names (`inspect-dataset --show`)."""

from __future__ import annotations

import math
from pathlib import Path

from cnnkit.viz.figure import pyplot, save_png, show_image

MAX_COLUMNS = 8


def plot_sample_grid(images, labels: list[int], classes: list[str], path: str | Path, title: str = "") -> Path:
    """`images` uint8 (N, C, H, W); each cell is titled with its class name."""
    plt = pyplot()
    count = len(images)
    cols = min(MAX_COLUMNS, max(1, count))
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.8 * rows), squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index < count:
            label = labels[index]
            name = classes[label] if 0 <= label < len(classes) else str(label)
            show_image(ax, images[index], name)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)
