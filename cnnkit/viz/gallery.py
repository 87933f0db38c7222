"""A grid of images with a caption each: here, the worst mistakes with true and predicted class."""

from __future__ import annotations

import math
from pathlib import Path

from cnnkit.viz.figure import drawable, pyplot, save_png, show_image

MAX_COLUMNS = 5


def plot_gallery(items: list[dict], path: str | Path, title: str = "") -> Path:
    """`items`: dicts with "image" (uint8 tensor C,H,W) and "caption"; written as one PNG."""
    plt = pyplot()
    columns = max(1, min(MAX_COLUMNS, len(items)))
    rows = max(1, math.ceil(len(items) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.7 * rows + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index < len(items):
            show_image(ax, items[index]["image"], items[index]["caption"], vmin=0, vmax=255)
        else:
            ax.axis("off")
    if not items:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    if title:
        fig.suptitle(drawable(title))
    return save_png(fig, path)
