"""Filters made visible: a kernel applied to images (the tutorial's plot_convolution),
and a trained network's learned filters and feature maps."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.data.transforms import GREY_WEIGHTS
from cnnkit.errors import ModelError, UsageError
from cnnkit.viz.figure import pyplot, save_png, show_image

MAX_MAPS = 64


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, 1, H, W) in [0, 1], as ToTensor scales; RGB weighted to luma."""
    x = images.float() / 255.0
    if x.shape[1] == 3:
        x = (x * torch.tensor(GREY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x[:, :1]


def apply_kernel(images: torch.Tensor, kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, filtered): the grey [0, 1] images and their 'valid' cross-correlation with `kernel`.

    It is exactly F.conv2d(inputs, kernel[None, None]) with no padding and no bias,
    the operation a Conv2d layer runs.
    """
    inputs = to_grey(images)
    kh, kw = kernel.shape
    if kh > inputs.shape[2] or kw > inputs.shape[3]:
        raise UsageError(f"a {kh}x{kw} kernel is larger than the {inputs.shape[2]}x{inputs.shape[3]} images")
    return inputs, F.conv2d(inputs, kernel.to(inputs.dtype)[None, None])


def _draw_kernel(ax, kernel: torch.Tensor) -> None:
    limit = float(kernel.abs().max()) or 1.0
    ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    if kernel.numel() <= 49:  # write the numbers in: the point is to read the matrix
        for (i, j), value in zip(((i, j) for i in range(kernel.shape[0]) for j in range(kernel.shape[1])), kernel.flatten().tolist()):
            colour = "white" if abs(value) > 0.6 * limit else "black"
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("kernel", fontsize=8)


def plot_kernel_effect(inputs: torch.Tensor, filtered: torch.Tensor, kernel: torch.Tensor, titles: list[str],
                       path: str | Path, title: str) -> Path:
    """Each image above its filtered version, the kernel beside them."""
    plt = pyplot()
    count = len(inputs)
    fig, axes = plt.subplots(2, count + 1, figsize=(1.6 * (count + 1), 3.6), squeeze=False, layout="constrained")
    for i in range(count):
        show_image(axes[0][i], inputs[i], titles[i])
        show_image(axes[1][i], filtered[i])
    axes[1][0].set_ylabel("filtered", fontsize=8)
    _draw_kernel(axes[0][count], kernel)
    axes[1][count].axis("off")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_conv_layer(model: nn.Module, wanted: str | None, model_name: str | None = None) -> tuple[str, str, nn.Conv2d]:
    """(label, qualified name, layer): the first conv layer, or the one named `wanted`.

    `wanted` is a module name as `cnnkit summary` lists it (`0`, `features.3`, `conv1`)
    or convN, the N-th conv layer as `summary --explain` counts them. `model_name` (the
    registry's) names the model in the error when it has no conv layer at all.
    """
    layers = conv_layers(model)
    if not layers:
        # The checkpoint is fine and the options are fine: this model has no filters to draw.
        name = model_name or type(model).__name__
        raise ModelError(
            f"{name} has no conv layer: there are no filters to draw",
            f"train a convolutional model (e.g. lenet or cnn); `cnnkit summary {name}` lists its layers",
        )
    if wanted is None:
        return "conv1", *layers[0]
    for index, (name, layer) in enumerate(layers, start=1):
        if wanted in (name, f"conv{index}"):
            return f"conv{index}", name, layer
    listed = ", ".join(f"conv{i} ({n})" for i, (n, _) in enumerate(layers[:12], start=1))
    raise UsageError(f"no conv layer '{wanted}' in the model", f"conv layers: {listed}")


def filter_images(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, kH, kW) weights -> (out, C, kH, kW) in [0, 1]: RGB filters in colour, others averaged over inputs."""
    w = weight.detach().float()
    w = w if w.shape[1] == 3 else w.mean(dim=1, keepdim=True)
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    return (w - low) / (high - low).clamp_min(1e-12)


def feature_maps(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The layer's output (C, H, W) for one preprocessed image (1, C, H, W)."""
    captured = {}
    handle = layer.register_forward_hook(lambda module, args, output: captured.setdefault("out", output.detach()))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    return captured["out"][0]


def _grid(subfig, images: torch.Tensor, title: str, cmap: str = "gray") -> None:
    count = len(images)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    axes = subfig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index < count:
            show_image(ax, images[index], cmap=cmap)
        else:
            ax.axis("off")
    subfig.suptitle(title, fontsize=10)


def plot_learned_filters(weight: torch.Tensor, label: str, path: str | Path, title: str,
                         image: torch.Tensor | None = None, maps: torch.Tensor | None = None) -> Path:
    """A grid of a conv layer's filters; with an image, also the image and its feature maps."""
    plt = pyplot()
    filters = filter_images(weight)[:MAX_MAPS]
    panels = 1 if maps is None else 3
    fig = plt.figure(figsize=(5 * panels if panels == 1 else 13, 5.4), layout="constrained")
    subfigs = fig.subfigures(1, panels, width_ratios=None if panels == 1 else [1, 2, 2])
    subfigs = [subfigs] if panels == 1 else list(subfigs)
    shown = "" if len(filters) == weight.shape[0] else f", first {len(filters)}"
    inputs = {1: "grey", 3: "RGB"}.get(weight.shape[1], f"mean over {weight.shape[1]} input channels")
    _grid(subfigs[0] if panels == 1 else subfigs[1], filters,
          f"{label}: {weight.shape[0]} filters {weight.shape[2]}x{weight.shape[3]} ({inputs}{shown})")
    if maps is not None:
        ax = subfigs[0].subplots()
        show_image(ax, image, "input")
        count = min(MAX_MAPS, len(maps))
        _grid(subfigs[2], maps[:count].unsqueeze(1), f"feature maps at {label} ({count} of {len(maps)})", cmap="viridis")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path, dpi=90)
