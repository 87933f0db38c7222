"""Classify image files in batches with a checkpoint or a pretrained torchvision model.

Files are decoded with the training pipeline's own load_image and run
through the model a batch at a time; optional worker processes decode ahead.
An unreadable file becomes a Prediction with an error; the rest still run.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from cnnkit.data.images import ImageReadError, is_image_file, load_image
from cnnkit.errors import CheckpointError, DataError, UsageError

DEFAULT_BATCH_SIZE = 64


@dataclass
class Prediction:
    path: str
    # (class index, probability), most probable first; empty when the image failed.
    top: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None


# ---- inputs ------------------------------------------------------------------------------
def _images_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def collect_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files as given, directories searched recursively for images, glob patterns expanded here.

    Shells pass quoted patterns through unexpanded, so `"photos/**/*.jpg"` works
    too. A file named explicitly is always tried, whatever its extension; files
    found through a directory or a pattern must look like images. Anything that
    matches nothing is an error.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            matches = _images_under(path)
            if not matches:
                raise DataError(f"no images in directory {item}", f"images have one of the extensions {_extensions()}")
        elif path.exists():
            matches = [path]
        elif glob.has_magic(item):
            hits = [Path(p) for p in sorted(glob.glob(os.path.expanduser(item), recursive=True))]
            matches = [m for hit in hits for m in (_images_under(hit) if hit.is_dir() else [hit] if is_image_file(hit) else [])]
            if not matches:
                raise DataError(f"pattern {item} matches no images", "check the pattern; quote it so the shell passes it through")
        else:
            raise DataError(f"no such file or directory: {item}")
        found.extend(matches)
    return list(dict.fromkeys(found))  # a file named twice is predicted once


def _extensions() -> str:
    from cnnkit.data.images import IMAGE_EXTENSIONS

    return ", ".join(sorted(IMAGE_EXTENSIONS))


# ---- classifiers -------------------------------------------------------------------------
# Decoders are small picklable objects (not bound methods of a classifier holding a model),
# so DataLoader workers receive them cheaply under any start method.
JPEG_SUFFIXES = (".jpg", ".jpeg")


def decode_plain_jpeg(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor | None:
    """A JPEG already in the wanted channels and size, decoded by torchvision's libjpeg-turbo; else None.

    For such files the pixels equal load_image's (tests check it), at a quarter
    of Pillow's per-image Python cost, which dominates small images. Anything
    else (other sizes, CMYK, damaged files) returns None and goes through
    load_image, which resizes, converts and words the errors.

    torchvision 0.29 deprecates its decoders in favour of TorchCodec (a
    DeprecationWarning, hidden outside tests). They still work; once they are
    gone every image takes the load_image path, slower but the same pixels.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        image = decode_jpeg(read_file(str(path)), mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
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

    def __init__(self, checkpoint: dict, device: torch.device):
        from cnnkit.engine.checkpoint import model_from_checkpoint, transform_from_checkpoint

        data = checkpoint["data"]
        self.source = checkpoint["path"]
        self.classes = list(data["classes"])
        self.device = device
        self.decode = CheckpointDecoder(int(data["channels"]), tuple(int(s) for s in data["size"]), data.get("resize_to"))
        self.model = model_from_checkpoint(checkpoint).to(device)
        self.transform = transform_from_checkpoint(checkpoint, device)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) as decoded -> (B, classes)."""
        return self.model(self.transform(images.to(self.device), train=False)).float().softmax(1)


class PretrainedClassifier:
    """A torchvision architecture with ImageNet weights from the hub cache, and the weights' own transforms."""

    def __init__(self, spec, device: torch.device):
        from cnnkit.errors import ModelError
        from cnnkit.models.backbones import build_pretrained, weights_enum, weights_path

        weights = weights_enum(spec)
        path = weights_path(spec)
        if not path.is_file():  # never reach for the network: say how to fetch them
            raise ModelError(
                f"ImageNet weights for {spec.name} are not in the torch hub cache ({path})",
                f"run `cnnkit download --weights {spec.name}` (TORCH_HOME chooses the cache)",
            )
        self.model = build_pretrained(spec, weights_file=path).eval().to(device)
        self.source = str(path)
        self.decode = PretrainedDecoder(weights.transforms())
        self.classes = list(weights.meta["categories"])
        self.device = device

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float (B, 3, H, W) from the weights' transforms -> (B, 1000)."""
        return self.model(images.to(self.device)).float().softmax(1)


def open_classifier(model: str, device: torch.device):
    """A checkpoint file or run directory if the path exists, else a pretrained model name."""
    path = Path(model).expanduser()
    if path.exists():
        from cnnkit.engine.checkpoint import load_checkpoint

        return CheckpointClassifier(load_checkpoint(path), device)
    from cnnkit.errors import ModelError
    from cnnkit.models import get_spec

    pretrained = "mobilenet_v2, resnet18, vgg16, alexnet"
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


def predict_files(
    classifier,
    paths: list[Path],
    *,
    top_k: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 0,
    on_error: Callable[[Prediction], None] | None = None,
) -> Iterator[Prediction]:
    """Yield one Prediction per path, in order.

    With `workers`, DataLoader processes decode the next batches while this one
    runs the model (decoding is mostly Python inside Pillow, so threads would
    share one core). That pays for large photos on idle cores; for small images,
    or cores that are busy anyway, decoding in-process is faster (measured in
    benchmarks/predict_speed.py), so it is the default.
    """
    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    k = min(top_k, len(classifier.classes))
    loader = torch.utils.data.DataLoader(
        _Decoded(paths, classifier.decode), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate,
    )
    chunks = (paths[i : i + batch_size] for i in range(0, len(paths), batch_size))
    for chunk, (images, failures) in zip(chunks, loader):
        if images is not None:
            values, indices = classifier.probabilities(images).topk(k, dim=1)
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
