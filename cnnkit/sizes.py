"""Image sizes: (height, width) inside cnnkit, one side where the image is square.

A model's builder gets `image_size` as one int for a square input, which every built-in and most
people's models expect, and as an (H, W) tuple otherwise. A checkpoint records it the same way (a
list for H, W), so the checkpoint of a square run reads exactly as it did before cnnkit took H,W.
"""

from __future__ import annotations

from typing import Sequence, Union

Size = tuple[int, int]  # (height, width)
SizeLike = Union[int, Sequence[int]]  # one side, or (height, width)


def pair(size: SizeLike) -> Size:
    """(H, W) from one side or an (H, W) pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def builder_size(size: SizeLike) -> int | Size:
    """What a builder's `image_size` gets: one int for a square, else (H, W)."""
    height, width = pair(size)
    return height if height == width else (height, width)


def recorded_size(size: SizeLike) -> int | list[int]:
    """What a checkpoint's model.kwargs.image_size holds: one int for a square, else [H, W]."""
    size = builder_size(size)
    return size if isinstance(size, int) else list(size)


def size_text(size: SizeLike) -> str:
    """'32x48': height by width, as cnnkit's notes and errors print a size."""
    height, width = pair(size)
    return f"{height}x{width}"
