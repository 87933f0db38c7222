"""cnnkit export of the models issue 20 opened up: a user's own .py file and a torchvision zoo model, in each
format, checked against cnnkit's own predict on real CIFAR-10 photos, and the safetensors file rebuilt from its
own metadata (for a user's model, through the recorded file and its sha256)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import DATA
from export_helpers import assert_same_predictions, predicted_probabilities, rebuilt_from_safetensors

CIFAR = DATA / "cifar10-sample"

USER_MODEL = textwrap.dedent('''
    from torch import nn


    class TinyNet(nn.Module):
        """A learner's own model: two convs and a head, any input size."""

        def __init__(self, in_channels, num_classes, width=8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            )
            self.fc = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.fc(self.features(x).flatten(1))
''')


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for cls in sorted(p for p in (CIFAR / "test").iterdir() if p.is_dir()):
        shutil.copy(sorted(cls.iterdir())[0], folder / f"{cls.name}.jpg")
    return folder


def _train(invoke, root: Path, model: str, *extra) -> Path:
    code, out, err = invoke("train", model, "--dataset", CIFAR, "--epochs", "1", "--limit", "64", "--device", "cpu",
                            "--out", root / "runs", "--no-cache", "--quiet", *extra)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])  # under the absolute --out


@pytest.fixture(scope="module")
def user_run(tmp_path_factory, invoke) -> Path:
    root = tmp_path_factory.mktemp("user-model")
    (root / "tinynet.py").write_text(USER_MODEL)
    return _train(invoke, root, f"{root / 'tinynet.py'}:TinyNet", "--model-arg", "width=6")


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory, invoke) -> Path:
    return _train(invoke, tmp_path_factory.mktemp("zoo-model"), "torchvision:squeezenet1_1", "--image-size", "32")


@pytest.mark.parametrize("which", ["user", "zoo"])
@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".safetensors"])
def test_user_and_zoo_models_export_in_each_format(which, suffix, request, photos, invoke, tmp_path):
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

    run = request.getfixturevalue(f"{which}_run")
    out = tmp_path / f"model{suffix}"
    code, stdout, stderr = invoke("export", run, "--out", out, "--input", "float") if suffix != ".safetensors" \
        else invoke("export", run, "--out", out)
    assert code == 0, stderr
    assert out.is_file() and "largest probability difference" in stderr
    if suffix == ".safetensors":  # the bare weights: the model they rebuild is the checkpoint's, exactly
        checkpoint = load_checkpoint(run)
        x = torch.rand(4, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(rebuilt_from_safetensors(out)[0](x), model_from_checkpoint(checkpoint)(x),
                                       atol=0, rtol=0)
        return
    exported, reference = predicted_probabilities(invoke, out, photos), predicted_probabilities(invoke, run, photos)
    assert len(reference) == 10
    assert_same_predictions(exported, reference)
