"""Every registered model builds, runs forward (also channels_last) and has the right size."""

from __future__ import annotations

import pytest
import torch

from cnnkit.errors import ModelError
from cnnkit.models import get_model, get_spec, initialise, list_models
from cnnkit.models.registry import input_size_for

# Counts the seed tutorials print (MNIST input, 10 classes) and the published
# ImageNet figures (1000 classes) for the big architectures.
SEED_COUNTS = {
    "perceptron": 7_850,
    "mlp": 79_510,
    "oneconv": 52_084,
    "multilayer-cnn": 8_490,
    "cnn": 95_882,
    "cnn-dropout": 21_840,
    "lenet5": 61_706,
}
IMAGENET_COUNTS = {
    "alexnet": 62_378_344,  # the paper's 96/256/384/384/256 layout
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "mobilenet_v2": 3_504_872,
}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_builds_and_runs(name, channels):
    spec = get_spec(name)
    size = input_size_for(spec, 28)
    model = get_model(name, in_channels=channels, num_classes=7, image_size=28).eval()
    in_channels = spec.channels or channels
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        out = model(x)
        # channels_last breaks models that call .view on activations
        out_cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 7)
    assert torch.allclose(out, out_cl, atol=1e-4)
    assert n_params(model) > 0


@pytest.mark.parametrize("name,count", SEED_COUNTS.items())
def test_seed_parameter_counts(name, count):
    assert n_params(get_model(name, in_channels=1, num_classes=10, image_size=28)) == count


def test_lenet_matches_the_cifar_tutorial():
    assert n_params(get_model("lenet", in_channels=3, num_classes=10)) == 59_386


@pytest.mark.parametrize("name,count", IMAGENET_COUNTS.items())
def test_imagenet_architecture_counts(name, count):
    assert n_params(get_model(name, in_channels=3, num_classes=1000)) == count


def test_adaptive_models_follow_the_input_size():
    at_28 = get_model("mlp", in_channels=1, num_classes=10, image_size=28)
    at_32 = get_model("mlp", in_channels=3, num_classes=10, image_size=32)
    assert at_28[1].in_features == 784 and at_32[1].in_features == 3 * 32 * 32


def test_aliases_and_spelling_variants():
    assert get_spec("mobilenet").name == "mobilenet_v2"
    assert get_spec("mobilenet-v2").name == "mobilenet_v2"
    assert get_spec("resnet").name == "resnet18"
    assert get_spec("VGG").name == "vgg16"
    assert get_spec("multilayer_cnn").name == "multilayer-cnn"


def test_unknown_model_suggests_close_matches():
    with pytest.raises(ModelError) as info:
        get_spec("lenett")
    assert "lenett" in info.value.message
    assert "lenet" in info.value.hint


@pytest.mark.parametrize("scheme", ["kaiming", "xavier", "normal"])
def test_init_schemes_reinitialise_weights(scheme):
    torch.manual_seed(0)
    model = get_model("lenet", in_channels=3, num_classes=10)
    before = model[0].weight.clone()
    initialise(model, scheme)
    after = model[0].weight.detach()
    assert not torch.equal(before, after)
    assert torch.count_nonzero(model[0].bias) == 0
    if scheme == "normal":
        assert abs(float(after.std()) - 0.01) < 0.005
