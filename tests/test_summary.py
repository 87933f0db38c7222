"""summary: torchinfo's counts at the right input size, frozen backbones, and the --explain walk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnkit.models import get_model, list_models
from conftest import assert_clean_failure


def summary_json(cli, *args) -> dict:
    code, stdout, stderr = cli("summary", *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


CHECKPOINT_DATA = {"spec": "mnist-sample", "name": "mnist-sample", "kind": "catalog", "classes": ["a", "b", "c", "d"],
                   "channels": 1, "size": [28, 28], "input_size": [1, 28, 28], "mean": [0.13], "std": [0.31],
                   "resize": False, "resize_to": None}


def write_checkpoint(run: Path, data: dict, name: str = "cnn-dropout", channels: int = 1) -> Path:
    """A checkpoint in the format train writes, with weights changed from their init (no training: it is slow)."""
    from cnnkit.engine.checkpoint import build_checkpoint, save_checkpoint

    torch.manual_seed(0)
    kwargs = {"in_channels": channels, "num_classes": 4, "image_size": 28}
    model = get_model(name, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    save_checkpoint(run / "best.pt", build_checkpoint({"name": name, "kwargs": kwargs, "state_dict": model.state_dict()}, data, {"epoch": 3}))
    return run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("runs") / "cnn-dropout-mnist-sample", CHECKPOINT_DATA)


def test_vgg16_frozen_backbone_is_the_tutorial_figure(cli):
    code, stdout, stderr = cli("summary", "vgg16", "--input-size", "3,244,244", "--classes", "2", "--freeze-backbone")
    assert code == 0, stderr
    assert "Total params: 14,764,866" in stdout and "Trainable params: 50,178" in stdout
    assert "[1, 512, 7, 7]" in stdout  # adaptive pooling makes 244 work
    doc = summary_json(cli, "vgg", "--input-size", "3,244,244", "--classes", "2", "--freeze-backbone")
    assert (doc["total_params"], doc["trainable_params"], doc["non_trainable_params"]) == (14_764_866, 50_178, 14_714_688)
    assert doc["input_size"] == [1, 3, 244, 244]
    # Only the new head's last Linear trains, as in finetune: AlexNet's other classifier layers stay frozen.
    doc = summary_json(cli, "alexnet", "--classes", "2", "--freeze-backbone", "--depth", "1")
    assert doc["trainable_params"] == 4096 * 2 + 2 and doc["input_size"] == [1, 3, 224, 224]


@pytest.mark.parametrize("name", ["cnn", "lenet", "mlp", "resnet18"])
def test_counts_equal_the_built_model(cli, name):
    doc = summary_json(cli, name, "--depth", "1")
    channels, side = doc["input_size"][1], doc["input_size"][2]
    model = get_model(name, in_channels=channels, num_classes=10, image_size=side)
    assert doc["total_params"] == doc["trainable_params"] == sum(p.numel() for p in model.parameters())
    assert doc["layers"][0]["output_shape"] == [1, 10]


def test_input_size_follows_the_dataset(cli, cifar_folder):
    doc = summary_json(cli, "cnn", "--dataset", cifar_folder)
    assert doc["input_size"] == [1, 3, 32, 32] and doc["classes"] == 10
    code, stdout, stderr = cli("summary", "lenet", "--dataset", "mnist-sample", "--json")
    assert code == 0 and json.loads(stdout)["input_size"] == [1, 1, 32, 32]
    assert "resizes 28x28 images to it" in stderr
    assert summary_json(cli, "resnet", "--dataset", "mnist-sample", "--classes", "3", "--depth", "1")["input_size"] == [1, 3, 224, 224]


def test_checkpoint_is_summarised_as_saved(cli, trained_run):
    checkpoint = torch.load(trained_run / "best.pt", weights_only=True)
    doc = summary_json(cli, "--checkpoint", trained_run)
    assert doc["model"] == "cnn-dropout" and doc["source"] == "checkpoint"
    assert doc["input_size"] == [1, *checkpoint["data"]["input_size"]]
    assert doc["total_params"] == sum(t.numel() for t in checkpoint["model"]["state_dict"].values())
    assert doc["classes"] == 4 and doc["layers"][0]["output_shape"] == [1, 4]
    code, _, stderr = cli("summary", "lenet", "--checkpoint", trained_run)
    assert_clean_failure(code, stderr, 2)
    code, _, stderr = cli("summary", "--checkpoint", trained_run, "--input-size", "3,28,28")
    assert_clean_failure(code, stderr)
    assert "conv1 expects 1 input channel(s), but gets 3" in stderr


def test_explain_names_the_mismatch_and_the_size_that_works(cli):
    code, stdout, stderr = cli("summary", "lenet", "--input-size", "1,28,28", "--explain")
    assert_clean_failure(code, stderr)
    assert "conv3's 5x5 kernel does not fit the 4x4 map left after two poolings" in stdout
    assert "(28 - 5 + 2*0) / 1 + 1 = 24" in stdout and "(8 - 2 + 2*0) / 2 + 1 = 4" in stdout
    assert "At 32x32 every layer fits" in stdout and "(5 - 5 + 2*0) / 1 + 1 = 1" in stdout
    assert "--input-size 1,32,32" in stderr


def test_mismatch_without_explain_is_a_clean_error(cli):
    code, stdout, stderr = cli("summary", "lenet", "--input-size", "1,28,28")
    assert_clean_failure(code, stderr)
    assert "conv3's 5x5 kernel does not fit" in stderr and "--explain" in stderr and "1,32,32" in stderr
    code, _, stderr = cli("summary", "lenet5", "--input-size", "1,28,28")
    assert_clean_failure(code, stderr)
    assert "expects 400 input features" in stderr and "flattens to 256" in stderr


def test_explain_on_a_fitting_model_prints_walk_then_table(cli):
    code, stdout, stderr = cli("summary", "cnn", "--explain")
    assert code == 0, stderr
    assert "(28 - 5 + 2*2) / 1 + 1 = 28" in stdout and "(14 - 2 + 2*0) / 2 + 1 = 7" in stdout
    assert stdout.index("out = (W - F + 2P) / S + 1") < stdout.index("Total params")


@pytest.mark.parametrize("layer_args", [
    dict(kernel_size=3, stride=2), dict(kernel_size=5, padding=2), dict(kernel_size=3, dilation=2, padding=1),
    dict(kernel_size=(3, 1), stride=(2, 1)),
])
@pytest.mark.parametrize("side", [5, 7, 8, 13])
def test_walk_formula_agrees_with_pytorch(side, layer_args):
    from cnnkit.models.summary import shape_walk

    for layer in (nn.Conv2d(2, 4, **layer_args), nn.MaxPool2d(**layer_args), nn.MaxPool2d(ceil_mode=True, **layer_args)):
        if isinstance(layer, nn.MaxPool2d) and layer_args.get("padding", 0) * 2 > min(_pair(layer_args["kernel_size"])):
            continue  # PyTorch refuses pad > kernel/2 for pooling
        try:
            expected = tuple(layer(torch.zeros(1, 2, side, side)).shape[1:])
        except RuntimeError:
            expected = None
        walk = shape_walk(nn.Sequential(layer), (2, side, side))
        assert walk.steps[0].out_shape == expected
        if expected is not None:
            assert walk.steps[0].formula.split(" = ")[1].split()[0].rstrip(";") == str(expected[1])


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


def test_list_shows_every_model_with_its_parameter_count(cli):
    code, stdout, _ = cli("summary", "--list", "--json")
    rows = {row["name"]: row for row in json.loads(stdout)}
    assert set(rows) == set(list_models())
    assert rows["perceptron"]["params"] == 28 * 28 * 10 + 10 and rows["perceptron"]["default_input"] == [1, 28, 28]
    assert rows["vgg16"]["native_size"] == 224 and rows["vgg16"]["weights"].startswith("ImageNet")
    assert rows["lenet"]["weights"] is None and "resnet" in rows["resnet18"]["aliases"]
    code, stdout, _ = cli("summary", "--list")
    assert code == 0 and "mobilenet_v2" in stdout and "7,850" in stdout


@pytest.mark.parametrize(
    "args, exit_code",
    [
        (["lenett"], 1),
        ([], 2),
        (["cnn", "--input-size", "3,x,1"], 2),
        (["cnn", "--input-size", "3,28"], 2),
        (["cnn", "--input-size", "0,28,28"], 2),
        (["cnn", "--input-size", "1,28,28", "--dataset", "mnist-sample"], 2),
        (["lenet", "--freeze-backbone"], 2),
        (["cnn", "--classes", "0"], 2),
        (["--checkpoint", "missing.pt"], 1),
        (["cnn", "--dataset", "no-such-data"], 1),
    ],
)
def test_bad_input_is_one_error_line(cli, args, exit_code):
    code, _, stderr = cli("summary", *args)
    assert_clean_failure(code, stderr, exit_code)


def test_a_checkpoint_claiming_a_huge_input_is_refused_before_it_is_built(cli, tmp_path):
    # 3x200000x200000 float32 is 480 GB: torchinfo made that input for real. MobileNetV2 pools
    # adaptively, so no layer refuses the size first.
    data = {**CHECKPOINT_DATA, "channels": 3, "input_size": [3, 200_000, 200_000], "mean": [0.5] * 3, "std": [0.25] * 3}
    run = write_checkpoint(tmp_path / "huge", data, "mobilenet_v2", channels=3)
    code, _, stderr = cli("summary", "--checkpoint", run)
    assert_clean_failure(code, stderr, 1)
