"""cnnkit visualize-filter: what a convolution does, with a hand-made kernel or a trained network's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import DataDirOption, JsonOption, ModelFileOption, handle_errors, print_json


@app.command(
    "visualize-filter",
    epilog="Examples:\n"
    '  cnnkit visualize-filter --kernel vertical --out vertical.png\n'
    '  cnnkit visualize-filter --kernel "0,-1,0;-1,5,-1;0,-1,0" --dataset cifar10 \\\n'
    '      --count 8 --out sharpen.png\n'
    '  cnnkit visualize-filter --checkpoint checkpoints/lenet-mnist-sample \\\n'
    '      --image digit.png --out filters.png',
)
@handle_errors
def visualize_filter(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.", show_default=False)],
    kernel: Annotated[str, typer.Option("--kernel", "-k", help='vertical, horizontal, sobel-x, sobel-y, laplacian, blur, sharpen, or "a,b,c;d,e,f;g,h,i".')] = "vertical",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Images to filter: catalog name, image folder or IDX directory.")] = "mnist-sample",
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=32, help="How many images to filter.")] = 5,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Draw a trained model's filters instead (checkpoint or run directory).", show_default=False)] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Conv layer to draw: a module name from `cnnkit summary`, or convN (default: the first).", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Also draw this image's feature maps at the layer.", show_default=False)] = None,
    model_file: ModelFileOption = None,
    data_dir: DataDirOption = Path("data"),
    json_output: JsonOption = False,
) -> None:
    """Apply a kernel to dataset images (each image above its filtered version), or draw learned filters."""
    from cnnkit.errors import UsageError

    if checkpoint is None:
        if layer is not None or image is not None or model_file is not None:
            raise UsageError("--layer, --image and --model-file draw a trained model's filters; they need --checkpoint")
        document = _kernel_figure(kernel, dataset, count, data_dir, out)
    else:
        document = _learned_figure(checkpoint, layer, image, out, model_file)
    if json_output:
        print_json(document)
    else:
        print(document["out"])


def _kernel_figure(kernel_text: str, dataset: str, count: int, data_dir: Path, out: Path) -> dict:
    from cnnkit.data.resolve import load_dataset
    from cnnkit.hub.install import fetch_missing
    from cnnkit.data.stats import first_images
    from cnnkit.viz.filters import apply_kernel, plot_kernel_effect
    from cnnkit.viz.kernels import kernel_name, parse_kernel

    kernel = parse_kernel(kernel_text)  # before loading data: a typo fails fast
    data = load_dataset(dataset, data_dir, on_missing=fetch_missing)
    images, labels = first_images(data.split("train"), data.channels, data.size, count)
    inputs, filtered = apply_kernel(images, kernel)
    titles = [data.classes[label] for label in labels]
    path = plot_kernel_effect(inputs, filtered, kernel, titles, out, f"{kernel_name(kernel_text)} on {data.name}")
    return {"out": str(path), "kernel": kernel.tolist(), "dataset": data.spec, "images": len(inputs),
            "input_shape": list(inputs.shape[1:]), "output_shape": list(filtered.shape[1:])}


def _learned_figure(checkpoint_path: Path, layer_name: str | None, image_path: Path | None, out: Path,
                    model_file: Path | None = None) -> dict:
    import torch

    from cnnkit.data.images import load_image
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
    from cnnkit.viz.filters import feature_maps, find_conv_layer, plot_learned_filters

    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint, model_file)
    label, name, layer = find_conv_layer(model, layer_name, checkpoint["model"]["name"])
    title = f"{checkpoint['model']['name']}: {label} ({name})"
    image = maps = None
    if image_path is not None:
        data = checkpoint["data"]
        image = load_image(image_path, int(data["channels"]), tuple(data["size"]), data.get("resize_to"))
        batch = transform_from_checkpoint(checkpoint, torch.device("cpu"))(image.unsqueeze(0), train=False)
        maps = feature_maps(model, layer, batch)
    path = plot_learned_filters(layer.weight, label, out, title, image, maps)
    document = {"out": str(path), "checkpoint": checkpoint["path"], "layer": name, "label": label,
                "filters": list(layer.weight.shape)}
    if maps is not None:
        document["feature_maps"] = list(maps.shape)
    return document
