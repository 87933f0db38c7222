"""visualize-filter: kernels applied as conv2d, learned filters and feature maps drawn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnkit.data.resolve import load_dataset
from cnnkit.viz.filters import apply_kernel, feature_maps, filter_images, find_conv_layer
from cnnkit.viz.kernels import PRESETS, parse_kernel
from conftest import assert_clean_failure, digests


def assert_png(path: Path, min_width: int = 200) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width


@pytest.fixture(scope="module")
def lenet_run(tiny_run) -> Path:
    return tiny_run("lenet")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_filtered_images_equal_conv2d(name):
    images = load_dataset("mnist-sample").splits["train"].images[:4]
    kernel = parse_kernel(name)
    inputs, filtered = apply_kernel(images, kernel)
    assert torch.equal(inputs, images.float() / 255.0)
    assert torch.equal(filtered, F.conv2d(images.float() / 255.0, kernel.view(1, 1, *kernel.shape)))
    assert filtered.shape == (4, 1, 28 - kernel.shape[0] + 1, 28 - kernel.shape[1] + 1)


def test_colour_images_are_filtered_as_luma(cifar_folder):
    images = load_dataset(str(cifar_folder)).splits["test"].images[:3]
    kernel = parse_kernel("1,2;3,4;5,6")
    inputs, filtered = apply_kernel(images, kernel)
    r, g, b = (images.float() / 255.0).unbind(1)
    luma = (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)
    assert torch.allclose(inputs, luma, atol=1e-6)
    assert torch.allclose(filtered, F.conv2d(luma, kernel.view(1, 1, 3, 2)), atol=1e-5)


def test_kernel_figure_from_the_cli(cli, tmp_path):
    out = tmp_path / "vertical.png"
    code, stdout, stderr = cli("visualize-filter", "--out", out)  # vertical on mnist-sample by default
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert_png(out, 500)
    code, stdout, stderr = cli("visualize-filter", "--kernel", "-1,0,1;-2,0,2;-1,0,1", "--count", "3", "--out", tmp_path / "k.png", "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["kernel"] == PRESETS["sobel-x"] and doc["images"] == 3 and doc["output_shape"] == [1, 26, 26]


@pytest.mark.parametrize("kernel", ["1,2;3", "a,b;c,d", "", "1,2,nan", "laplace"])
def test_bad_kernel_is_a_usage_error(cli, tmp_path, kernel):
    code, _, stderr = cli("visualize-filter", "--kernel", kernel, "--out", tmp_path / "x.png")
    assert_clean_failure(code, stderr, 2)
    assert not (tmp_path / "x.png").exists()


def test_learned_filters_and_feature_maps(cli, lenet_run, tmp_path):
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint

    digit = load_dataset("mnist-sample").splits["test"].images[0]
    image_path = tmp_path / "digit.png"
    Image.fromarray(digit[0].numpy()).save(image_path)
    out = tmp_path / "filters.png"
    code, stdout, stderr = cli("visualize-filter", "--checkpoint", lenet_run, "--image", image_path, "--out", out, "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["label"] == "conv1" and doc["filters"] == [6, 1, 5, 5] and doc["feature_maps"] == [6, 28, 28]
    assert_png(out, 600)
    # The maps drawn are the first layer's output on the checkpoint's own preprocessing.
    checkpoint = load_checkpoint(lenet_run)
    model = model_from_checkpoint(checkpoint)
    batch = transform_from_checkpoint(checkpoint, torch.device("cpu"))(digit.unsqueeze(0), train=False)
    label, name, layer = find_conv_layer(model, None)
    assert torch.allclose(feature_maps(model, layer, batch), model[0](batch)[0])
    code, stdout, stderr = cli("visualize-filter", "--checkpoint", lenet_run, "--layer", "conv2", "--out", tmp_path / "c2.png", "--json")
    assert code == 0 and json.loads(stdout)["filters"] == [16, 6, 5, 5] and json.loads(stdout)["layer"] == "3"


def test_filter_images_are_scaled_per_filter():
    weight = torch.randn(4, 3, 5, 5)
    images = filter_images(weight)
    assert images.shape == (4, 3, 5, 5)
    assert torch.allclose(images.amin(dim=(1, 2, 3)), torch.zeros(4)) and torch.allclose(images.amax(dim=(1, 2, 3)), torch.ones(4))
    assert filter_images(torch.randn(8, 16, 3, 3)).shape == (8, 1, 3, 3)  # averaged over 16 inputs


def test_bad_checkpoints_fail_cleanly(cli, lenet_run, tmp_path):
    code, _, stderr = cli("visualize-filter", "--checkpoint", lenet_run, "--layer", "conv9", "--out", tmp_path / "x.png")
    assert_clean_failure(code, stderr, 2)
    assert "conv1 (0), conv2 (3), conv3 (6)" in stderr
    assert_clean_failure(*cli("visualize-filter", "--checkpoint", lenet_run, "--image", tmp_path / "none.png", "--out", tmp_path / "x.png")[::2])
    assert_clean_failure(*cli("visualize-filter", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "x.png")[::2])
    assert_clean_failure(*cli("visualize-filter", "--layer", "conv1", "--out", tmp_path / "x.png")[::2], 2)
    # --model-file belongs to a checkpoint too: not ignored without one
    assert_clean_failure(*cli("visualize-filter", "--model-file", tmp_path / "net.py", "--out", tmp_path / "x.png")[::2], 2)
    code, _, stderr = cli("visualize-filter", "--kernel", "vertical")  # no --out
    assert_clean_failure(code, stderr, 2)


@pytest.mark.parametrize("model", ["perceptron", "mlp"])
def test_a_model_without_conv_layers_is_a_clean_error_naming_it(cli, tiny_run, tmp_path, model):
    run = tiny_run(model, limit=64)
    before = digests(run)
    code, out, stderr = cli("visualize-filter", "--checkpoint", run, "--out", tmp_path / "x.png")
    lines = assert_clean_failure(code, stderr, 1)
    assert model in lines[0] and "no conv layer" in lines[0]
    assert out == "" and not (tmp_path / "x.png").exists() and digests(run) == before
