"""Decode one image file into a uint8 tensor the way every command needs it.

Mode handling (CMYK, palette, RGBA, 16-bit, grey), EXIF rotation and Pillow's
decompression-bomb limit all live here, so train, predict and inspect agree.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.errors import DataError

# The explicit check_pixels() below is what refuses bombs; Pillow's own warning for 1x-2x
# its limit is then only noise, so it is silenced once here, for every thread alike.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})


class ImageReadError(DataError):
    """One image that cannot be decoded; folder loaders skip it, predict reports it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    name = path.name
    return not name.startswith(".") and name.lower() not in JUNK_NAMES and path.suffix.lower() in IMAGE_EXTENSIONS


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and 32-bit grey: scale to 8 bits rather than letting Pillow clip.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency on white, not on black, as a viewer shows it.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def resize_and_crop(image: Image.Image, size: tuple[int, int], resize_to: int | None = None) -> Image.Image:
    """Resize to `size`; with `resize_to`, scale the short side to it and center-crop `size`,
    as torchvision's Resize(resize_to) + CenterCrop(size) do."""
    height, width = size
    if resize_to is None:
        return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
    w, h = image.size
    scale = resize_to / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = image.size
    if w < width or h < height:  # resize_to smaller than the crop: fill the crop instead
        return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    left, top = round((w - width) / 2), round((h - height) / 2)
    return image.crop((left, top, left + width, top + height))


# JPEGs over this many pixels (camera photos) decode at reduced scale; smaller ones decode in
# full, so their pixels are exactly what a plain Pillow decode and resize give.
DRAFT_MIN_PIXELS = 1 << 21


def _draft_side(size: tuple[int, int], resize_to: int | None) -> int:
    """The side both stored dimensions must keep when a JPEG is decoded at reduced scale.

    Square and twice the largest wanted dimension: an EXIF rotation (which swaps width and
    height after decoding) still leaves enough pixels, and the bilinear resize that follows
    still averages several decoded pixels into each output pixel.
    """
    return 2 * max(size[0], size[1], resize_to or 0)


def check_pixels(path: Path, image: Image.Image) -> None:
    """Refuse an image whose header declares more pixels than Pillow's MAX_IMAGE_PIXELS."""
    width, height = image.size
    refuse_decompression_bomb(path, width, height)


def refuse_decompression_bomb(path: Path, width: int, height: int) -> None:
    """ImageReadError when width x height is past Pillow's MAX_IMAGE_PIXELS (read when asked: a user may change it).

    Pillow itself raises only past twice the limit and merely warns between 1x and 2x;
    and a warnings filter is process-wide, so under the decoding threads one thread's
    catch_warnings() can undo another's. An explicit check at 1x needs neither, and every
    decoder (Pillow's here, predict's torchvision JPEG path) asks this one function.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageReadError(path, f"refused as a decompression bomb ({width}x{height} = {width * height} pixels, "
                                   f"over the limit of {limit})")


def load_image(
    path: str | Path, channels: int, size: tuple[int, int] | None = None, resize_to: int | None = None
) -> torch.Tensor:
    """Return a uint8 tensor (channels, H, W); raise ImageReadError for anything unreadable.

    With `size`, a large JPEG is decoded at a reduced scale (libjpeg's DCT scaling through
    Pillow's draft()), so a 12-megapixel photo bound for 32x32 never exists at full
    resolution in memory.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow's complaints about damaged files (corrupt EXIF, tags past the end) would be stray
            # lines on stderr; the image decodes or fails with a reason, and that is what is reported.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels decides
            with Image.open(path) as image:
                check_pixels(path, image)
                if size is not None and image.format == "JPEG" and image.width * image.height > DRAFT_MIN_PIXELS:
                    side = _draft_side(size, resize_to)
                    image.draft(None, (side, side))
                image = ImageOps.exif_transpose(image)
                image = _to_mode(image, channels)
                if size is not None:
                    image = resize_and_crop(image, size, resize_to)
                array = np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            reason = {FileNotFoundError: "no such file", PermissionError: "permission denied"}.get(type(exc), "is a directory")
            raise ImageReadError(path, reason) from None
        raise ImageReadError(path, f"corrupt or truncated ({exc})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def probe_image(path: Path) -> tuple[tuple[int, int], str] | None:
    """(width, height) and mode from the header alone, or None if it is not an image (or is a bomb)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels decides
            with Image.open(path) as image:
                check_pixels(path, image)
                return image.size, image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, UnidentifiedImageError, ImageReadError):
        return None
