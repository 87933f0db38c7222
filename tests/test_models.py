"""Every registered model builds, runs forward (also channels_last) and has the right size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnkit.errors import ModelError
from cnnkit.models import get_model, get_spec, initialise, list_models
from cnnkit.models.registry import Preprocessing, input_size_for, pretrained_models, register

ROOT = Path(__file__).resolve().parents[1]

# Counts the seed tutorials print (MNIST input, 10 classes) and the published
# ImageNet figures (1000 classes) for the big architectures.
SEED_COUNTS = {
    "perceptron": 7_850,
    "mlp": 79_510,
    "oneconv": 52_084,
    "multilayer-cnn": 8_490,
    "cnn": 121_514,  # tutorial 000: block 2 has two convs
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
    height, width = input_size_for(spec, 28)
    model = get_model(name, in_channels=channels, num_classes=7, image_size=28).eval()
    in_channels = spec.channels or channels
    x = torch.randn(2, in_channels, height, width)
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


# ---- the spec is the one home of a model's facts ------------------------------------------
def _last_linear(model: torch.nn.Module) -> str:
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)][-1]


@pytest.mark.parametrize("name", list_models())
def test_spec_head_is_the_final_classifier_layer(name):
    with torch.device("meta"):
        model = get_model(name, in_channels=3, num_classes=7, image_size=32)
    spec = get_spec(name)
    assert _last_linear(model) == spec.head
    assert model.get_submodule(spec.head).out_features == 7


@pytest.mark.parametrize("name", pretrained_models())
def test_pretrained_spec_matches_its_torchvision_weights(name):
    import torchvision

    from cnnkit.models.backbones import torchvision_architecture

    spec = get_spec(name)
    assert type(spec.weights) is torchvision.models.get_model_weights(name)  # the builder the weights belong to
    categories = spec.weights.meta["categories"]
    assert spec.categories == categories and len(categories) == 1000
    with torch.device("meta"):
        model = torchvision_architecture(spec)
    head = model.get_submodule(spec.head)
    assert _last_linear(model) == spec.head and head.out_features == len(categories)
    preset = spec.weights.transforms()
    assert spec.preprocessing == Preprocessing(preset.resize_size[0], preset.crop_size[0], tuple(preset.mean), tuple(preset.std))
    assert spec.native_size == spec.preprocessing.crop


def test_pretrained_models_are_the_ones_with_weights():
    assert pretrained_models() == ["alexnet", "mobilenet_v2", "resnet18", "vgg16"]
    with pytest.raises(ModelError, match="no pretrained weights") as info:
        get_spec("lenet").require_weights()
    assert "resnet18" in info.value.hint


@pytest.mark.parametrize("name, aliases", [("lenet", ()), ("brand-new", ("resnet",)), ("Mobilenet-V2", ())])
def test_a_duplicate_registration_raises(name, aliases):
    before = list_models()
    with pytest.raises(ModelError, match="registered twice"):
        register(name, "a second model under a taken name", head="fc", aliases=aliases)(lambda **kw: None)
    assert list_models() == before and get_spec("resnet").name == "resnet18"


def test_weights_downloads_come_from_the_specs():
    from cnnkit.hub.sources import sources

    for name in pretrained_models():
        (remote,) = sources()[f"weights:{name}"].files
        url = get_spec(name).weights.url
        assert remote.urls == (url,) and remote.name == url.rsplit("/", 1)[-1]
        assert remote.sha256_prefix and remote.name.endswith(f"-{remote.sha256_prefix}.pth")


def _imports_of(path: Path) -> set[str]:
    """Every module an import statement in the file names (relative imports resolved)."""
    package = ["cnnkit", "models"]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "cnnkit" / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_import_neither_engine_nor_cli(path):
    upward = sorted(n for n in _imports_of(path) if n.split(".")[:2] in (["cnnkit", "engine"], ["cnnkit", "cli"]))
    assert not upward, f"{path.name} imports {upward}"


def test_models_package_loads_without_engine_or_cli():
    """The import scan above sees the statements; this sees what really loads, lazily imported modules included."""
    code = ("import sys, cnnkit.models, cnnkit.models.summary, cnnkit.models.surgery;"
            "print(sorted(m for m in sys.modules if m.startswith(('cnnkit.engine', 'cnnkit.cli'))))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
