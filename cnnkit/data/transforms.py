"""Batched preprocessing and augmentation, run on the training device.

Every batch arrives as uint8 (B, C, H, W) and leaves as normalised float at the
model's input size. Doing this per batch on the device, not per image in
Python, is what makes small models fast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnkit.errors import UsageError

AUGMENTATIONS = ("flip", "crop", "rotate", "jitter")
ROTATE_DEGREES = 15.0
CROP_FRACTION = 0.125  # like RandomCrop(32, padding=4) on CIFAR
JITTER = 0.2
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def parse_augment(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UsageError(f"unknown augmentation {', '.join(unknown)}", f"choose from {','.join(AUGMENTATIONS)}")
    return names


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
        input_size: int,
        augment: tuple[str, ...] = (),
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ):
        self.out_channels = out_channels
        self.input_size = input_size
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
        plain = images.shape[1] == self.out_channels and images.shape[-2:] == (self.input_size, self.input_size)
        if plain and not (train and self.augment):
            x = torch.addcmul(self._shift, images.float(), self._scale)
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        x = images.float().div_(255)
        x = self._fix_channels(x)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
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
        n = x.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=x.device, generator=generator) * (high - low) + low

        if "flip" in self.augment:
            flip = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if "rotate" in self.augment or "crop" in self.augment:
            # One affine warp for both: rotation about the centre plus a random shift.
            angle = uniform(-ROTATE_DEGREES, ROTATE_DEGREES) * (math.pi / 180) if "rotate" in self.augment else torch.zeros(n, device=x.device)
            shift = 2 * CROP_FRACTION if "crop" in self.augment else 0.0
            tx, ty = uniform(-shift, shift), uniform(-shift, shift)
            cos, sin = angle.cos(), angle.sin()
            theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if "jitter" in self.augment:
            brightness = uniform(1 - JITTER, 1 + JITTER).view(-1, 1, 1, 1)
            contrast = uniform(1 - JITTER, 1 + JITTER).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * brightness - mean) * contrast + mean).clamp_(0, 1)
        return x
