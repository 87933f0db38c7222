"""Classify image files in batches with a checkpoint or a pretrained torchvision model.

Files are decoded with the training pipeline's own load_image and run
through the model a batch at a time; optional worker processes decode ahead.
An unreadable file becomes a Prediction with an error; the rest still run.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from cnnkit.data.images import ImageReadError, is_image_file, load_image, refuse_decompression_bomb
from cnnkit.errors import CheckpointError, DataError, UsageError

DEFAULT_BATCH_SIZE = 64
DEFAULT_TOP_K = 5  # classes listed per image in predict's table and JSON


@dataclass
class Prediction:
    path: str
    # (class index, probability), most probable first; empty when the image failed.
    top: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None


# ---- inputs ------------------------------------------------------------------------------
# Symbolic links are followed, files and folders alike, because that is what a user who made one
# means. A folder is walked once however many links lead to it (so `loop -> .` ends), and a file
# reached by several names (a link, ./x and /abs/x, a folder and a file inside it) is predicted
# once, under the first name it was found by. Nothing is amplified, so the inputs are bounded by
# the real files on disk.


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` finally points to; None for a broken link or a link loop."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _walk_files(root: Path) -> Iterator[tuple[str, ...]]:
    """Relative parts of every non-hidden file under root, following links, each real folder once.

    Folders reached without a link are walked before linked ones, so a folder both inside the
    tree and linked from elsewhere in it keeps its own name. An unreadable subfolder is skipped.
    """
    seen: set[tuple[int, int] | None] = set()
    plain: deque[tuple[str, ...]] = deque([()])
    linked: deque[tuple[str, ...]] = deque()
    while plain or linked:
        parts = plain.popleft() if plain else linked.popleft()
        folder = root.joinpath(*parts)
        identity = _file_identity(folder)
        if identity is None or identity in seen:
            continue
        seen.add(identity)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError:
            if not parts:
                raise
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow links; a loop of links raises
            except OSError:
                continue
            if is_dir:
                (linked if entry.is_symlink() else plain).append(parts + (entry.name,))
            elif is_file:
                yield parts + (entry.name,)


def _through_a_link(path: Path) -> bool:
    return os.path.realpath(path) != os.path.abspath(path)


def _each_file_once(paths: Iterable[Path]) -> list[Path]:
    """Sorted, one name per real file: a name with no link in it wins, then a name that is not itself a link."""
    chosen: dict[tuple[int, int] | Path, Path] = {}
    for path in sorted(paths, key=lambda p: (_through_a_link(p), p.is_symlink(), p)):
        chosen.setdefault(_file_identity(path) or path, path)
    return sorted(chosen.values())


def _images_under(directory: Path) -> list[Path]:
    return _each_file_once(p for p in (directory.joinpath(*parts) for parts in _walk_files(directory)) if is_image_file(p))


def _split_pattern(pattern: str) -> tuple[Path, list[str]]:
    """The literal folder a pattern starts from, and its remaining components."""
    parts = Path(pattern).parts
    literal = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:literal]) if literal else Path(), list(parts[literal:])


def _recursive_glob(pattern: str) -> list[Path]:
    """Images a `**` pattern matches, on the loop-safe walk rather than glob's own recursion.

    glob.glob follows folder links at every level, so `loop -> .` repeats each file
    40 times (until ELOOP), and two such links double that per level: it never ends.
    As with glob, `**` is any number of folders, and a folder that matches is searched whole.
    """
    base, wanted = _split_pattern(pattern)
    if not base.is_dir():
        return []

    def matched(parts: tuple[str, ...]) -> bool:
        @functools.lru_cache(maxsize=None)
        def match(i: int, j: int) -> bool:  # does parts[i:] match wanted[j:]?
            if j == len(wanted):
                return i == len(parts)
            if wanted[j] == "**":
                return match(i, j + 1) or (i < len(parts) and match(i + 1, j))
            return i < len(parts) and fnmatch.fnmatchcase(parts[i], wanted[j]) and match(i + 1, j + 1)

        return match(0, 0)

    found = []
    for parts in _walk_files(base):
        path = base.joinpath(*parts)
        # The file itself, or a folder above it, matches (glob would hand back that folder, which is searched whole).
        if is_image_file(path) and any(matched(parts[:n]) for n in range(len(parts), -1, -1)):
            found.append(path)
    return _each_file_once(found)


def _expand_pattern(item: str) -> list[Path]:
    pattern = os.path.expanduser(item)
    if "**" in pattern:
        return _recursive_glob(pattern)
    # Without `**` glob's work is bounded by the pattern's depth; a folder it matches is searched whole.
    hits = [Path(p) for p in glob.glob(pattern)]
    return _each_file_once(m for hit in hits for m in (_images_under(hit) if hit.is_dir() else [hit] if hit.is_file() and is_image_file(hit) else []))


def collect_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files as given, directories searched recursively for images, glob patterns expanded here.

    Shells pass quoted patterns through unexpanded, so `"photos/**/*.jpg"` works
    too. A file named explicitly is always tried, whatever its extension; files
    found through a directory or a pattern must look like images. Anything that
    matches nothing is an error. Each real file comes once, under its first name.
    """
    found: dict[tuple[int, int] | Path, Path] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            matches = _images_under(path)
            if not matches:
                raise DataError(f"no images in directory {item}", f"images have one of the extensions {_extensions()}")
        elif path.exists():
            matches = [path]
        elif glob.has_magic(item):
            matches = _expand_pattern(item)
            if not matches:
                raise DataError(f"pattern {item} matches no images", "check the pattern; quote it so the shell passes it through")
        else:
            raise DataError(f"no such file or directory: {item}")
        for match in matches:
            found.setdefault(_file_identity(match) or match, match)
    return list(found.values())


def _extensions() -> str:
    from cnnkit.data.images import IMAGE_EXTENSIONS

    return ", ".join(sorted(IMAGE_EXTENSIONS))


# ---- classifiers -------------------------------------------------------------------------
# Decoders are small picklable objects (not bound methods of a classifier holding a model),
# so DataLoader workers receive them cheaply under any start method.
JPEG_SUFFIXES = (".jpg", ".jpeg")


# Start-of-frame markers (baseline, progressive, lossless, arithmetic): the segment holding the size.
_JPEG_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field; before the frame header they mean the file is not a plain JPEG.
_JPEG_BARE_MARKERS = frozenset({0x01, 0xD8, 0xD9, 0xDA, *range(0xD0, 0xD8)})  # 0xDA, start of scan: pixels before a frame


def jpeg_frame(file) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's frame header, reading only the segments before it.

    None when the stream is not a JPEG whose markers are well formed up to its
    first frame: then the file is left to load_image, which has its own checks.
    libjpeg also takes the first frame header (a second one is an error there).
    """
    if file.read(2) != b"\xff\xd8":
        return None
    while True:
        marker = file.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        while code == 0xFF:  # fill bytes may pad a marker
            byte = file.read(1)
            if not byte:
                return None
            code = byte[0]
        if code in _JPEG_BARE_MARKERS:
            return None
        field = file.read(2)
        if len(field) < 2 or struct.unpack(">H", field)[0] < 2:
            return None
        if code in _JPEG_FRAME_MARKERS:
            frame = file.read(6)
            if len(frame) < 6:
                return None
            _precision, height, width, components = struct.unpack(">BHHB", frame)
            return height, width, components
        file.seek(struct.unpack(">H", field)[0] - 2, os.SEEK_CUR)


def decode_plain_jpeg(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor | None:
    """A JPEG already in the wanted channels and size, decoded by torchvision's libjpeg-turbo; else None.

    For such files the pixels equal load_image's (tests check it), at a quarter
    of Pillow's per-image Python cost, which dominates small images. Anything
    else (other sizes, CMYK, damaged files) returns None and goes through
    load_image, which resizes, converts and words the errors.

    The size comes from the frame header before any pixel is decoded: past
    Pillow's MAX_IMAGE_PIXELS the file is refused (ImageReadError), and a file of another
    size is not decoded here at all (torchvision would allocate all of it,
    2.7 GB for a 600-byte 30000x30000 JPEG, before the size check could say no).

    torchvision 0.29 deprecates its decoders in favour of TorchCodec (a
    DeprecationWarning, hidden outside tests). They still work; once they are
    gone every image takes the load_image path, slower but the same pixels.
    """
    try:
        with open(path, "rb") as file:
            frame = jpeg_frame(file)
            if frame is None:
                return None
            height, width, components = frame
            refuse_decompression_bomb(path, width, height)
            # Either orientation: EXIF may turn the stored image; the decoded shape is checked below.
            if components != channels or (height, width) not in (tuple(size), tuple(size)[::-1]):
                return None
            file.seek(0)
            data = torch.frombuffer(bytearray(file.read()), dtype=torch.uint8)
    except OSError:
        return None
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        image = decode_jpeg(data, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
    except (ImportError, RuntimeError, ValueError, OSError):
        return None
    return image if image.shape[0] == channels and tuple(image.shape[1:]) == tuple(size) else None


@dataclass
class CheckpointDecoder:
    channels: int
    size: tuple[int, int]
    resize_to: int | None = None

    def __call__(self, path: Path) -> torch.Tensor:
        # Decoded exactly as the training images were: same channels, size and crop.
        if self.resize_to is None and path.suffix.lower() in JPEG_SUFFIXES:
            image = decode_plain_jpeg(path, self.channels, self.size)
            if image is not None:
                return image
        return load_image(path, channels=self.channels, size=self.size, resize_to=self.resize_to)


@dataclass
class PretrainedDecoder:
    preprocess: Callable  # the weights' own transforms

    def __call__(self, path: Path) -> torch.Tensor:
        from PIL import Image

        # load_image does the mode conversion (CMYK, palette, 16-bit, alpha) and EXIF rotation.
        rgb = load_image(path, channels=3).permute(1, 2, 0).numpy()
        return self.preprocess(Image.fromarray(rgb, "RGB"))


class CheckpointClassifier:
    """A cnnkit checkpoint: its model, and the preprocessing it was trained with."""

    def __init__(self, checkpoint: dict, device: torch.device, model_file=None):
        from cnnkit.engine.checkpoint import model_from_checkpoint, transform_from_checkpoint

        data = checkpoint["data"]
        self.source = checkpoint["path"]
        self.classes = list(data["classes"])
        self.device = device
        self.decode = CheckpointDecoder(int(data["channels"]), tuple(int(s) for s in data["size"]), data.get("resize_to"))
        self.model = model_from_checkpoint(checkpoint, model_file).to(device)
        self.transform = transform_from_checkpoint(checkpoint, device)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) as decoded -> (B, classes)."""
        return self.model(self.transform(images.to(self.device), train=False)).float().softmax(1)


class PretrainedClassifier:
    """A torchvision architecture with ImageNet weights from the hub cache, and the weights' own transforms."""

    def __init__(self, spec, device: torch.device):
        from cnnkit.errors import ModelError
        from cnnkit.models.backbones import build_pretrained, weights_path

        path = weights_path(spec)
        if not path.is_file():  # never reach for the network: say how to fetch them
            raise ModelError(
                f"ImageNet weights for {spec.name} are not in the torch hub cache ({path})",
                f"run `cnnkit download --weights {spec.name}` (TORCH_HOME chooses the cache)",
            )
        self.model = build_pretrained(spec, weights_file=path).eval().to(device)
        self.source = str(path)
        self.decode = PretrainedDecoder(spec.transforms())
        self.classes = spec.categories
        self.device = device

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float (B, 3, H, W) from the weights' transforms -> (B, 1000)."""
        return self.model(images.to(self.device)).float().softmax(1)


def open_classifier(model: str, device: torch.device, model_file=None):
    """A checkpoint file or run directory if the path exists, else a pretrained model name."""
    path = Path(model).expanduser()
    if path.exists():
        from cnnkit.engine.checkpoint import load_checkpoint
        from cnnkit.engine.exported_model import exported_classifier

        # `cnnkit export`'s ONNX and TorchScript files, told from checkpoints by name and zip members alone.
        exported = exported_classifier(path, device, CheckpointDecoder)
        if exported is not None:
            if model_file is not None:
                raise UsageError(f"--model-file applies to checkpoints of your own model; {path} is an exported "
                                 "model, whole in itself", "drop --model-file")
            return exported

        return CheckpointClassifier(load_checkpoint(path), device, model_file)
    from cnnkit.errors import ModelError
    from cnnkit.models import get_spec, pretrained_models

    pretrained = ", ".join(pretrained_models())
    try:
        spec = get_spec(model)
    except ModelError as exc:
        suggestion = exc.hint if exc.hint and exc.hint.startswith("did you mean") else None
        raise CheckpointError(
            f"--model {model}: no such checkpoint or run directory, and not a pretrained model name",
            suggestion or f"pass a .pt file, a run directory, or one of: {pretrained}",
        ) from None
    if spec.weights is None:
        raise ModelError(
            f"--model {model}: '{spec.name}' has no pretrained weights, and there is no file or directory by that name",
            f"pass a checkpoint that `cnnkit train {spec.name}` wrote, or one of: {pretrained}",
        )
    return PretrainedClassifier(spec, device)


# ---- batched prediction ------------------------------------------------------------------
class _Decoded(torch.utils.data.Dataset):
    """Decodes one file per item; an unreadable file becomes its reason, not an exception."""

    def __init__(self, paths: list[Path], decode: Callable[[Path], torch.Tensor]):
        self.paths, self.decode = paths, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return self.decode(self.paths[index])
        except ImageReadError as exc:
            return exc.reason


def _collate(items: list) -> tuple[torch.Tensor | None, dict[int, str]]:
    """One stacked tensor for the readable images (one shared-memory block, not one per image) and the failures."""
    failed = {i: item for i, item in enumerate(items) if not isinstance(item, torch.Tensor)}
    good = [item for item in items if isinstance(item, torch.Tensor)]
    return (torch.stack(good) if good else None), failed


@dataclass(frozen=True)
class BatchPlan:
    """predict's size-like options, bounded before a batch, a worker or a top-k is allocated."""

    top_k: int
    batch_size: int
    workers: int
    notes: tuple[str, ...] = ()


def plan_batches(inputs: int, classes: int, *, top_k: int, batch_size: int, workers: int) -> BatchPlan:
    """Refuse what means nothing (below 1, or negative workers: usage errors); clamp what only asks for too much.

    --top-k past the class count lists every class, as timm and torchvision clamp it
    (with a note). --batch-size past the number of inputs is one batch of them all
    (DataLoader would otherwise make a list of batch_size slots). --workers is at
    most one per usable core (with a note) and one per batch: each is a process.
    """
    from cnnkit.engine.device import usable_cores

    if top_k < 1:
        raise UsageError(f"--top-k {top_k}: must be at least 1")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if workers < 0:
        raise UsageError(f"--workers {workers}: must be 0 (decode in this process) or more")
    notes = []
    if top_k > classes:
        notes.append(f"--top-k {top_k} is more than the model's {classes} classes; listing all {classes}")
    cores = usable_cores()
    if workers > cores:
        notes.append(f"--workers {workers} is more than the {cores} usable cores; using {cores}")
    batch = min(batch_size, max(1, inputs))
    batches = -(-inputs // batch)
    return BatchPlan(min(top_k, classes), batch, min(workers, cores, batches), tuple(notes))


def predict_files(
    classifier,
    paths: list[Path],
    *,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 0,
    on_error: Callable[[Prediction], None] | None = None,
) -> Iterator[Prediction]:
    """Yield one Prediction per path, in order.

    With `workers`, DataLoader processes decode the next batches while this one
    runs the model (decoding is mostly Python inside Pillow, so threads would
    share one core). That pays for large photos on idle cores; for small images,
    or cores that are busy anyway, decoding in-process is faster (measured in
    benchmarks/predict_speed.py), so it is the default. The options are bounded
    by plan_batches (callers that want its notes call it first).
    """
    plan = plan_batches(len(paths), len(classifier.classes), top_k=top_k, batch_size=batch_size, workers=workers)
    loader = torch.utils.data.DataLoader(
        _Decoded(paths, classifier.decode), batch_size=plan.batch_size, shuffle=False, num_workers=plan.workers,
        collate_fn=_collate,
    )
    chunks = (paths[i : i + plan.batch_size] for i in range(0, len(paths), plan.batch_size))
    for chunk, (images, failures) in zip(chunks, loader):
        if images is not None:
            values, indices = classifier.probabilities(images).topk(plan.top_k, dim=1)
            tops = iter(zip(indices.cpu().tolist(), values.cpu().tolist()))
        for position, path in enumerate(chunk):
            if position in failures:
                failed = Prediction(str(path), error=failures[position])
                if on_error:
                    on_error(failed)
                yield failed
            else:
                yield Prediction(str(path), list(zip(*next(tops))))


def prediction_record(prediction: Prediction, classes: list[str]) -> dict:
    """The JSON shape: {path, predictions: [{label, index, probability}]} (plus error when it failed)."""
    record = {
        "path": prediction.path,
        "predictions": [
            {"label": classes[index], "index": index, "probability": round(probability, 6)}
            for index, probability in prediction.top
        ],
    }
    if prediction.error is not None:
        record["error"] = prediction.error
    return record
