"""Builders for hostile input, shared by the test_hostile_* and test_fuzz_* modules.

Everything is a real on-disk format made from synthetic pixels: images Pillow
writes (then damages), PNG headers written by hand (the decompression bomb),
IDX files with one field wrong, archives with escaping members, and
checkpoints that are truncated, foreign, bare or would run code.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# ---- images ----------------------------------------------------------------------------------


def picture(size: tuple[int, int] = (28, 28), seed: int = 0) -> np.ndarray:
    """A grey picture with structure (bars and a gradient), as uint8 (H, W)."""
    h, w = size
    rng = np.random.default_rng(seed)
    image = np.tile(np.linspace(0, 120, w), (h, 1))
    image[:, w // 4 : w // 4 + max(1, w // 7)] = 255
    image[h // 3 : h // 3 + max(1, h // 8), :] = 200
    return np.clip(image + rng.integers(0, 20, (h, w)), 0, 255).astype(np.uint8)


def jpeg_bytes(size=(64, 64), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture(size, seed)).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_header_only(width: int, height: int, mode_byte: int = 0) -> bytes:
    """A PNG whose IHDR declares width x height (grey 8-bit) and whose IDAT holds one empty row.

    Pillow reads the size from the header at open(); a big enough size must be
    refused there, before a byte of pixels is allocated.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b"")


# Unreadable: every command must name the file and go on (folders) or fail cleanly (one file).
def write_bad_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "zero-byte": (folder / "zero-byte.jpg", b""),
        "truncated-jpeg": (folder / "truncated.jpg", jpeg_bytes()[:300]),
        "text-as-jpg": (folder / "notes.jpg", b"this is a text file, not a picture\n"),
        # 30000 x 30000 = 900 Mpixels: past twice Pillow's MAX_IMAGE_PIXELS, an error at open().
        "bomb": (folder / "bomb.png", png_header_only(30000, 30000)),
        # 10000 x 10000 = 100 Mpixels: past the limit but under twice it, only a warning in Pillow.
        "bomb-warning-size": (folder / "big.png", png_header_only(10000, 10000)),
    }
    for path, payload in made.values():
        path.write_bytes(payload)
    return {name: path for name, (path, _) in made.items()}


# Odd but valid: every command must read these (they are not errors).
def write_odd_images(folder: Path, size=(28, 28)) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(picture(size))
    rgb = grey.convert("RGB")
    out: dict[str, Path] = {}

    def save(name: str, image: Image.Image, filename: str, **kwargs) -> None:
        out[name] = folder / filename
        image.save(out[name], **kwargs)

    save("png-named-jpg", grey, "png-inside.jpg", format="PNG")
    save("cmyk", rgb.convert("CMYK"), "cmyk.jpg", quality=95)
    save("palette", rgb.quantize(colors=16), "palette.png")
    save("16-bit", Image.fromarray(picture(size).astype(np.uint16) * 257), "sixteen.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    save("rgba", rgba, "rgba.png")
    save("grey", grey, "grey.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    save("exif-rotated", Image.fromarray(np.ascontiguousarray(np.rot90(picture((size[1], size[0]))))), "exif.jpg",
         exif=exif.tobytes(), quality=95)
    save("1x1", Image.new("L", (1, 1), 200), "one-pixel.png")
    return out


# ---- IDX -------------------------------------------------------------------------------------
# Valid IDX files are written with cnnkit's own writer (cnnkit.data.idx.write_idx, conftest.write_idx_pair);
# these build the broken ones.


def idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    """An IDX header alone: two zero bytes, the dtype code, the number of dims, one big-endian uint32 each."""
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


IDX_DEFECTS = ["magic", "dtype", "dims", "short", "long", "float", "count"]


def write_broken_idx(folder: Path, defect: str, images: int = 20, side: int = 8) -> Path:
    """A train-images/train-labels IDX pair broken in one way: the images file's header or length, its
    dtype (float pixels), or a label count that is not the image count."""
    from cnnkit.data.idx import encode_idx, write_idx

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, side, side), dtype=np.uint8)
    raw = bytearray(encode_idx(rng.random((images, side, side)).astype(np.float32) if defect == "float" else pixels))
    if defect == "magic":
        raw[0:2] = b"\x08\x03"
    elif defect == "dtype":
        raw[2] = 0x07
    elif defect == "dims":
        raw[3] = 0
    elif defect == "short":
        raw = raw[:-5]
    elif defect == "long":
        raw += b"\x00" * 7
    elif defect not in ("float", "count"):
        raise ValueError(defect)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(bytes(raw))
    labels = images - 1 if defect == "count" else images
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 3, labels).astype(np.uint8))
    return folder


# ---- archives --------------------------------------------------------------------------------


def evil_tar(path: Path, member: str = "../escaped.txt", symlink_to: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if symlink_to:
            info.type, info.linkname = tarfile.SYMTYPE, symlink_to
            tar.addfile(info)
        else:
            payload = b"escaped\n"
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def evil_zip(path: Path, member: str = "../escaped.txt") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, b"escaped\n")
    return path


# ---- checkpoints -----------------------------------------------------------------------------


class RunsCode:
    """Unpickling this unsafely would create `marker`: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


CHECKPOINT_DEFECTS = ["truncated", "empty", "text", "bit-flip", "foreign", "state_dict", "other-model", "runs-code"]


def write_bad_checkpoint(good: Path, target: Path, defect: str, marker: Path | None = None) -> Path:
    """A checkpoint broken in one way, derived from the good one at `good`."""
    import torch

    if defect == "truncated":
        raw = good.read_bytes()
        target.write_bytes(raw[: len(raw) // 2])
    elif defect == "empty":
        target.write_bytes(b"")
    elif defect == "text":
        target.write_text("not a checkpoint\n")
    elif defect == "bit-flip":  # one byte of the weights damaged on disk: torch.load alone would not notice
        raw = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as archive:
            member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        name_len, extra_len = struct.unpack("<HH", raw[member.header_offset + 26 : member.header_offset + 30])
        raw[member.header_offset + 30 + name_len + extra_len + member.file_size // 2] ^= 0x10
        target.write_bytes(bytes(raw))
    elif defect == "foreign":  # a PyTorch file another program wrote: a training script's own dict
        torch.save({"epoch": 3, "net": {"w": torch.zeros(3)}, "acc": 0.9}, target)
    elif defect == "state_dict":
        torch.save(torch.load(good, weights_only=True)["model"]["state_dict"], target)
    elif defect == "other-model":  # a cnnkit checkpoint whose weights belong to another architecture
        checkpoint = torch.load(good, weights_only=True)
        other = "mlp" if checkpoint["model"]["name"] != "mlp" else "perceptron"
        checkpoint["model"]["name"] = other
        checkpoint["train"]["config"]["model"] = other
        torch.save(checkpoint, target)
    elif defect == "runs-code":
        assert marker is not None
        checkpoint = torch.load(good, weights_only=True)
        checkpoint["payload"] = RunsCode(marker)
        torch.save(checkpoint, target)
    else:
        raise ValueError(defect)
    return target


# ---- read-only places ------------------------------------------------------------------------


def make_read_only(monkeypatch, root: Path) -> None:
    """Make every write under `root` fail with EROFS, as a read-only mount does.

    Tests run as root, and chmod does not stop root from writing, so the
    kernel's answer is simulated at the calls that create or change files:
    open for writing, os.open with write flags (tempfile.mkstemp), mkdir,
    replace/rename/unlink, and os.access(W_OK).
    """
    import builtins
    import errno
    import io
    import os

    root = Path(root).resolve()

    def inside(path) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(root)
        except (TypeError, ValueError):
            return False

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    real_open, real_os_open, real_access = builtins.open, os.open, os.access

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded(real):
        def call(path, *args, **kwargs):
            if inside(path):
                refuse(path)
            return real(path, *args, **kwargs)
        return call

    def guarded_access(path, mode, *args, **kwargs):
        if mode & os.W_OK and inside(path):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(os, "access", guarded_access)
    for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guarded(getattr(os, name)))


def make_unreadable(monkeypatch, target: Path) -> None:
    """Reading `target` (a file, or anything under a folder) fails with EACCES, as after chmod 000.

    Root reads through chmod 000, so the refusal is simulated where files are
    opened: builtins.open / io.open (Pillow, torch.load, pathlib) and os.open,
    plus os.scandir / os.listdir for folders.
    """
    import builtins
    import errno
    import io
    import os

    target = Path(target).resolve()

    def blocked(path) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(target)
        except (TypeError, ValueError):
            return False

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    real_open, real_os_open, real_scandir, real_listdir = builtins.open, os.open, os.scandir, os.listdir

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and blocked(file):
            refuse(file)
        return real_open(file, *args, **kwargs)

    def guard(real):
        def call(path=".", *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)) and blocked(path):
                refuse(path)
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guard(real_os_open))
    monkeypatch.setattr(os, "scandir", guard(real_scandir))
    monkeypatch.setattr(os, "listdir", guard(real_listdir))


def shared_mobilenet_weights(tmp_path_factory) -> Path:
    """Random MobileNetV2 weights (a real state_dict file), so finetune gets as far as reading data."""
    path = tmp_path_factory.getbasetemp() / "hostile-shared-weights" / "mobilenet-random.pth"
    if not path.is_file():
        import torch
        import torchvision

        path.parent.mkdir(exist_ok=True)
        torch.manual_seed(0)
        torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    return path
