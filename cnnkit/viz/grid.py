"""A grid of sample images titled with their class names (`inspect-dataset --show`)."""

from __future__ import annotations

import math
from pathlib import Path

from cnnkit.viz.figure import drawable, pyplot, save_png, show_image

MAX_COLUMNS = 8


def round_robin(labels: list[int], count: int) -> list[int]:
    """Positions of `count` samples taken a class at a time (the first of each class, then the second...),
    so a grid shows every class and not the first class's first files."""
    queues: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        queues.setdefault(label, []).append(position)
    order, depth = [], 0
    while len(order) < count and any(depth < len(q) for q in queues.values()):
        order += [q[depth] for _, q in sorted(queues.items()) if depth < len(q)][:count - len(order)]
        depth += 1
    return order


def samples_across_classes(split, channels: int, size: tuple[int, int], count: int):
    """(uint8 images, labels): `count` readable images of a split, drawn round-robin across its classes."""
    import torch

    from cnnkit.data.dataset import TensorSplit
    from cnnkit.data.stats import first_images

    labels = split.labels.tolist()
    # Files in full round-robin order, so that unreadable ones are passed over for the next in turn.
    order = round_robin(labels, count if isinstance(split, TensorSplit) else len(labels))
    return first_images(split.subset(torch.tensor(order, dtype=torch.long)), channels, size, count)


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
        fig.suptitle(drawable(title), fontsize=10)
    return save_png(fig, path)
