"""Shared figure plumbing: the Agg backend, image display and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path


# Titles, captions and tick labels hold class names and paths, which are text, never math or
# TeX: a class folder named `$\undefinedcmd{$` must be drawn as named, not crash the parser.
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def drawable(text: str) -> str:
    """Text a font can draw: a name that is not UTF-8 on disk (held with surrogate escapes) shows its bad
    bytes as U+FFFD, as a terminal would; matplotlib refuses surrogates outright."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures need no display), drawing all text literally."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(LITERAL_TEXT)
    import matplotlib.pyplot as plt

    return plt


def show_image(ax, image, title: str | None = None, **imshow) -> None:
    """Draw a (C, H, W) uint8 or float tensor: grey with a grey colormap, RGB as colour."""
    array = image.detach().cpu()
    if array.ndim == 3 and array.shape[0] == 3:
        ax.imshow(array.permute(1, 2, 0).numpy())
    else:
        ax.imshow(array.reshape(array.shape[-2:]).numpy(), cmap=imshow.pop("cmap", "gray"), **imshow)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(drawable(title), fontsize=8)


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (to inline in a page), and closed."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG atomically and close it."""
    from cnnkit.fileio import atomic_save

    path = Path(path)
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        pyplot().close(fig)
    return path
