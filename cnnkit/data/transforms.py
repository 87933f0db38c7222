"""Batched preprocessing and augmentation, run on the training device.

Every batch arrives as uint8 (B, C, H, W) and leaves as normalised float at the
model's input size. Doing this per batch on the device, not per image in
Python, is what makes small models fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnkit.errors import UsageError
from cnnkit.sizes import SizeLike, pair

AUGMENTATIONS = ("flip", "crop", "rotate", "jitter")
ROTATE_DEGREES = 15.0
CROP_FRACTION = 0.125  # like RandomCrop(32, padding=4) on CIFAR
JITTER = 0.2
GREY_WEIGHTS = (0.299, 0.587, 0.114)
FLIP_P = 0.5
MAX_CROP_PAD = 1024  # pixels
# NAME:ARG[:ARG...]; the list itself is comma separated, so the arguments are separated by colons.
AUGMENT_SYNTAX = "flip[:P], crop[:PAD], rotate[:DEGREES], jitter[:B[:C[:S[:H]]]], e.g. rotate:15,jitter:0.2:0.2:0.2:0.1"


@dataclass(frozen=True)
class Augmentation:
    """One op of --augment, as torchvision's transform of the same meaning (tutorial 000's list):

    flip:P             RandomHorizontalFlip(p=P)                    bare: P 0.5
    crop:PAD           RandomCrop(size, padding=PAD) (zero padding)  bare: a shift of 1/8 of the side either way
    rotate:DEGREES     RandomRotation(DEGREES)                      bare: 15
    jitter:B:C:S:H     ColorJitter(B, C, S, H)                      bare: 0.2:0.2:0:0
    Bare names keep the meaning they had before they took arguments, so older runs resume identically.
    """

    name: str
    args: tuple[float, ...] = ()


_ARITY = {"flip": (1, 1), "crop": (1, 1), "rotate": (1, 1), "jitter": (1, 4)}


def parse_augment(text: str | None) -> tuple[Augmentation, ...]:
    if not text:
        return ()
    ops: dict[str, Augmentation] = {}
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        name, *raw = part.split(":")
        if name not in AUGMENTATIONS:
            raise UsageError(f"unknown augmentation {name}", f"choose from {AUGMENT_SYNTAX}")
        low, high = _ARITY[name]
        if raw and not low <= len(raw) <= high:
            raise UsageError(f"--augment {part}: {name} takes {high if low == high else f'{low} to {high}'} "
                             f"argument{'s' if high > 1 else ''}", f"the syntax is {AUGMENT_SYNTAX}")
        args = tuple(_number(part, value) for value in raw)
        _check(part, name, args)
        ops[name] = Augmentation(name, args)  # a name given twice: the last one counts
    return tuple(ops.values())


def _number(part: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--augment {part}: '{value}' is not a number", f"the syntax is {AUGMENT_SYNTAX}") from None
    if not math.isfinite(number):
        raise UsageError(f"--augment {part}: '{value}' is not a finite number")
    return number


def _check(part: str, name: str, args: tuple[float, ...]) -> None:
    if not args:
        return
    problems = {
        "flip": (0 <= args[0] <= 1, "P is a probability, 0 to 1"),
        "crop": (args[0] == int(args[0]) and 0 <= args[0] <= MAX_CROP_PAD, f"PAD is whole pixels, 0 to {MAX_CROP_PAD}"),
        "rotate": (0 <= args[0] <= 180, "DEGREES is 0 to 180"),
        "jitter": (all(a >= 0 for a in args) and (len(args) < 4 or args[3] <= 0.5) and (len(args) < 1 or args[0] <= 1)
                   and (len(args) < 2 or args[1] <= 1),
                   "B and C are 0 to 1, S is 0 or more, H is 0 to 0.5 (as ColorJitter takes them)"),
    }
    ok, rule = problems[name]
    if not ok:
        raise UsageError(f"--augment {part}: {rule}")


def apply_augmentation(x: torch.Tensor, ops: tuple[Augmentation, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Float images in [0, 1], (N, C, H, W) of any size, augmented per image; the same draws in the same order
    as before the ops took arguments, so a bare-name run is reproduced exactly."""
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    by_name = {op.name: op.args for op in ops}

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, device=x.device, generator=generator) * (high - low) + low

    if "flip" in by_name:
        p = by_name["flip"][0] if by_name["flip"] else FLIP_P
        flip = torch.rand(n, device=x.device, generator=generator) < p
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if "rotate" in by_name or "crop" in by_name:
        # One affine warp for both: rotation about the centre plus a random shift (affine_grid's units: a
        # shift of 2 is the whole side, so PAD pixels are 2 * PAD / side).
        degrees = (by_name["rotate"] or (ROTATE_DEGREES,))[0] if "rotate" in by_name else 0.0
        angle = uniform(-degrees, degrees) * (math.pi / 180) if "rotate" in by_name else torch.zeros(n, device=x.device)
        crop = by_name.get("crop")
        shift_x = shift_y = 2 * CROP_FRACTION if crop == () else 0.0
        if crop:
            shift_x, shift_y = 2 * crop[0] / width, 2 * crop[0] / height
        tx, ty = uniform(-shift_x, shift_x), uniform(-shift_y, shift_y)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if "jitter" in by_name:
        b, c, sat, hue = (*by_name["jitter"], 0.0, 0.0, 0.0, 0.0)[:4] if by_name["jitter"] else (JITTER, JITTER, 0.0, 0.0)
        brightness = uniform(max(0.0, 1 - b), 1 + b).view(-1, 1, 1, 1)
        contrast = uniform(max(0.0, 1 - c), 1 + c).view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x * brightness - mean) * contrast + mean).clamp_(0, 1)
        if sat and x.shape[1] == 3:
            from torchvision.transforms.v2 import functional as TF

            factor = uniform(max(0.0, 1 - sat), 1 + sat).view(-1, 1, 1, 1)
            grey = TF.rgb_to_grayscale(x, num_output_channels=3)
            x = (grey + factor * (x - grey)).clamp_(0, 1)  # adjust_saturation, with a factor per image
        if hue and x.shape[1] == 3:
            from torchvision.transforms.v2 import functional as TF

            shifts = uniform(-hue, hue).tolist()  # adjust_hue takes one factor: one call per image
            x = torch.stack([TF.adjust_hue(image, shift) for image, shift in zip(x, shifts)])
    return x


def augment_uint8(images: torch.Tensor, spec: str, seed: int = 0) -> torch.Tensor:
    """uint8 images augmented as training would see them (inspect-dataset --show --augment), seeded."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    x = apply_augmentation(images.float().div(255), parse_augment(spec), generator)
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def channel_stats(images: torch.Tensor, max_images: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], from a fixed subset."""
    sample = images[:: max(1, len(images) // max_images)].float().div_(255)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


class BatchTransform:
    """uint8 batch -> float batch: scale, fix channels, resize, augment, normalise."""

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        out_channels: int,
        input_size: SizeLike,
        augment: tuple[Augmentation, ...] = (),
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ):
        self.out_channels = out_channels
        self.input_size = pair(input_size)  # (H, W)
        self.augment = augment
        self.channels_last = channels_last
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        if len(mean) != out_channels:  # grey stats used for a 3-channel model, or the reverse
            mean_t = mean_t.mean().repeat(out_channels)
            std_t = std_t.mean().repeat(out_channels)
        self.mean = mean_t.view(1, -1, 1, 1).to(device)
        self.std = std_t.view(1, -1, 1, 1).to(device)
        # (x / 255 - mean) / std as one multiply-add on the uint8 values, for the common case
        # of no channel change, resize or augmentation: fewer passes per batch.
        self._scale = (1.0 / (255.0 * self.std))
        self._shift = -self.mean / self.std

    def __call__(self, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        plain = images.shape[1] == self.out_channels and images.shape[-2:] == self.input_size
        if plain and not (train and self.augment):
            x = torch.addcmul(self._shift, images.float(), self._scale)
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        x = images.float().div_(255)
        x = self._fix_channels(x)
        if x.shape[-2:] != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        if train and self.augment:
            x = self._augment(x, generator)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _fix_channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.out_channels:
            return x
        if x.shape[1] == 1:
            return x.expand(-1, self.out_channels, -1, -1)
        weights = torch.tensor(GREY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)

    def _augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return apply_augmentation(x, self.augment, generator)
