"""cnnkit finetune: heads, freezing, phases, features mode, resume, errors, and learning on real photos.

Weights are random-initialised torchvision state_dicts the tests save
themselves, passed with --weights or placed in a temporary TORCH_HOME under
torchvision's file name. Images are real cat and dog photos from pets-sample.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchinfo
import torchvision

from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.setup import prepare
from cnnkit.reporting import Reporter
from cnnkit.engine.trainer import Trainer
from cnnkit.models import get_spec
from cnnkit.models.backbones import finetune_architecture, weights_path
from cnnkit.models.surgery import parameter_counts, set_frozen

from conftest import DATA, assert_clean_failure
from hostile import write_bad_checkpoint

PETS = DATA / "pets-sample"


def _photos(cls: str) -> list[Path]:
    return sorted((PETS / cls).glob("*.jpg"))


def make_pets_split(root: Path, train_per_class: int, test_per_class: int) -> Path:
    """train/ and test/ class folders of real pets photos, disjoint and balanced."""
    for cls in ("Cat", "Dog"):
        photos = _photos(cls)
        for split, chosen in (("train", photos[:train_per_class]), ("test", photos[-test_per_class:])):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for photo in chosen:
                shutil.copy(photo, root / split / cls / photo.name)
    return root


@pytest.fixture
def tiny_pets(tmp_path) -> Path:
    return make_pets_split(tmp_path / "tiny-pets", train_per_class=2, test_per_class=1)


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def calibrated_resnet_weights(tmp_path_factory) -> Path:
    """Random ResNet18 weights whose BatchNorm statistics were measured on pets photos, so that its
    features spread out like a trained network's rather than collapsing to one prediction."""
    from cnnkit.data.images import load_image

    torch.manual_seed(1)
    model = torchvision.models.resnet18()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.momentum = None  # a plain average over the batches
    photos = torch.stack([load_image(p, 3, (224, 224), 256) for p in _photos("Cat")[:8] + _photos("Dog")[:8]])
    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        mean, std = torch.tensor(preset.mean)[:, None, None], torch.tensor(preset.std)[:, None, None]
        model.train()((photos.float() / 255 - mean) / std)
    path = tmp_path_factory.mktemp("weights") / "resnet18-calibrated.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def resnet_in_hub(tmp_path, monkeypatch, resnet_weights) -> Path:
    """The random ResNet18 weights where torchvision's cache keeps the real ones."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    path = weights_path(get_spec("resnet18"))
    path.parent.mkdir(parents=True)
    shutil.copy(resnet_weights, path)
    return path


def metrics_phases(run: Path) -> list[str]:
    with open(run / "metrics.csv", newline="") as f:
        return [row["phase"] for row in csv.DictReader(f)]


# ---- heads and parameter counts --------------------------------------------------------
@pytest.mark.parametrize("name, head, in_features", [
    ("vgg16", "classifier", 25088), ("resnet18", "fc", 512), ("mobilenet", "classifier.1", 1280), ("alexnet", "classifier.6", 4096),
])
def test_new_head_is_sized_to_the_classes(name, head, in_features):
    spec = get_spec(name)
    with torch.device("meta"):  # shapes only: VGG16's 138M parameters are never allocated
        model = finetune_architecture(spec, 3)
    assert spec.new_head == head
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1] == head  # the last layer
    layer = model.get_submodule(head)
    assert isinstance(layer, torch.nn.Linear)
    assert (layer.in_features, layer.out_features) == (in_features, 3)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_trainable_and_frozen_counts_match_torchinfo(name):
    spec = get_spec(name)
    model = finetune_architecture(spec, 2)
    head = model.get_submodule(spec.new_head)
    for frozen in (True, False):
        model.train()
        set_frozen(model, head, frozen)
        stats = torchinfo.summary(model, verbose=0)
        counts = parameter_counts(model)
        assert counts["trainable"] == stats.trainable_params
        assert counts["frozen"] == stats.total_params - stats.trainable_params
        batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert batchnorms and all(m.training != frozen for m in batchnorms)
    set_frozen(model, head, True)
    assert parameter_counts(model)["trainable"] == head.weight.numel() + head.bias.numel()


# ---- phase 1: exactly the backbone is frozen -------------------------------------------
def test_head_phase_leaves_the_backbone_bit_for_bit(tiny_pets, resnet_weights, tmp_path):
    config = TrainConfig(model="resnet18", dataset=str(tiny_pets), weights=str(resnet_weights), command="finetune",
                         finetune_mode="finetune", head_epochs=1, epochs=1, batch_size=2, lr=0.01,
                         out=str(tmp_path / "runs"), name="head")
    setup = prepare(config, Reporter(quiet=True))
    start = {k: v.clone() for k, v in setup.model.state_dict().items()}
    Trainer(setup, Reporter(quiet=True)).fit()
    saved = load_checkpoint(tmp_path / "runs" / "head", prefer="last")
    after = saved["model"]["state_dict"]
    pretrained = torch.load(resnet_weights, weights_only=True)
    backbone = [k for k in after if not k.startswith("fc.")]
    # Weights, BatchNorm running statistics and counters: all untouched.
    assert any("running_mean" in k for k in backbone)
    for key in backbone:
        assert torch.equal(after[key], pretrained[key]), key
    assert after["fc.weight"].shape == (2, 512)
    assert not torch.equal(after["fc.weight"], start["fc.weight"])
    assert metrics_phases(tmp_path / "runs" / "head") == ["head"]
    counts = saved["train"]["finetune"]["phases"]
    assert counts == [{"name": "head", "epochs": 1, "lr": 0.01, "trainable": 1026, "frozen": 11176512}]


def test_a_non_square_crop_is_what_the_checkpoint_records_and_predict_decodes(tiny_pets, resnet_weights, tmp_path, cli):
    """--image-size 64,96: the short side goes to 110 (96 in ResNet's 224:256), then a 64x96 center crop."""
    code, out, err = cli("finetune", "resnet18", "--dataset", tiny_pets, "--weights", resnet_weights, "--image-size", "64,96",
                         "--epochs", "1", "--batch-size", "2", "--out", tmp_path / "runs", "--name", "wide", "--quiet")
    assert code == 0, err
    data = load_checkpoint(tmp_path / "runs" / "wide")["data"]
    assert data["input_size"] == [3, 64, 96] and data["size"] == [64, 96] and data["resize_to"] == 110
    code, out, err = cli("predict", _photos("Cat")[0], "--model", tmp_path / "runs" / "wide", "--json", "--device", "cpu")
    assert code == 0, err


# ---- phase 2, Ctrl-C inside it, and resume --------------------------------------------
def test_unfreeze_phase_is_interrupted_and_resumes_in_that_phase(tiny_pets, resnet_weights, tmp_path, cli):
    run = tmp_path / "runs" / "two-phase"
    args = ["finetune", "resnet18", "--weights", resnet_weights, "--dataset", tiny_pets, "--head-epochs", "1",
            "--unfreeze-epochs", "1", "--batch-size", "2", "--out", tmp_path / "runs", "--name", "two-phase"]
    process = subprocess.Popen([sys.executable, "-m", "cnnkit", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "metrics.csv").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # Ctrl-C once the head phase is done
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    assert f"cnnkit finetune --resume {run}" in stderr
    stopped = load_checkpoint(run, prefer="last")["train"]
    assert (stopped["epoch"], stopped["phase"]) == (1, 1) and stopped["step_in_epoch"] >= 1

    code, stdout, stderr = cli("finetune", "--resume", run, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["epochs"] == 2 and not summary["already_finished"]
    assert [p["name"] for p in summary["phases"]] == ["head", "unfreeze"]
    assert summary["phases"][1]["lr"] == pytest.approx(1e-4) and summary["phases"][1]["frozen"] == 0
    assert metrics_phases(run) == ["head", "unfreeze"]
    final = load_checkpoint(run, prefer="last")
    pretrained = torch.load(resnet_weights, weights_only=True)
    assert not torch.equal(final["model"]["state_dict"]["conv1.weight"], pretrained["conv1.weight"])
    # The unfreeze phase's optimizer covers every parameter, not just the head.
    n_params = len(list(torchvision.models.resnet18().parameters()))
    assert len(final["train"]["optimizer"]["param_groups"][0]["params"]) == n_params


def test_old_style_finetune_checkpoint_resumes_as_finetune(tiny_pets, resnet_weights, tmp_path, cli):
    from test_train import make_old_style

    run = tmp_path / "runs" / "old"
    code, _, stderr = cli("finetune", "resnet18", "--weights", resnet_weights, "--dataset", tiny_pets, "--head-epochs", "1",
                          "--batch-size", "2", "--out", tmp_path / "runs", "--name", "old", "--quiet")
    assert code == 0, stderr
    make_old_style(run / "last.pt")
    assert load_checkpoint(run, prefer="last")["train"]["config"]["mode"] == "finetune"
    code, stdout, stderr = cli("evaluate", run / "last.pt", "--json")
    assert code == 0, stderr
    code, stdout, stderr = cli("finetune", "--resume", run, "--epochs", "2", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["mode"], summary["epochs"]) == ("finetune", 2)
    assert [(p["name"], p["epochs"]) for p in summary["phases"]] == [("head", 2)]
    assert metrics_phases(run) == ["head", "head"]


# ---- features mode -------------------------------------------------------------------
LOADS_ITS_WEIGHTS = """
import torch
from torch import nn


def Net(num_classes):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
    model[0].load_state_dict(torch.load(__file__.replace("net.py", "conv.pt"), weights_only=True))
    return model
"""


def test_features_of_a_users_model_are_keyed_by_the_weights_it_loads(tiny_pets, tmp_path, cli, cache_dir):
    """The file is the same, its weights are not: the second run extracts again instead of reusing stale features."""
    (tmp_path / "net.py").write_text(LOADS_ITS_WEIGHTS)
    args = ["finetune", f"{tmp_path / 'net.py'}:Net", "--dataset", tiny_pets, "--mode", "features", "--head-epochs", "1",
            "--image-size", "32", "--out", tmp_path / "runs"]
    said = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), tmp_path / "conv.pt")
        code, _, stderr = cli(*args)
        assert code == 0, stderr
        said.append("features: reusing" in stderr)
    code, _, stderr = cli(*args)  # the same weights again: read back
    assert said == [False, False] and "features: reusing" in stderr and len(list(cache_dir.glob("features-*.pt"))) == 2


def test_features_mode_without_a_usable_cache_dir_trains_without_one(tiny_pets, resnet_in_hub, tmp_path, cli, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "a-file" / "cache"))
    code, _, stderr = cli("finetune", "resnet", "--dataset", tiny_pets, "--mode", "features", "--head-epochs", "1",
                          "--image-size", "64", "--out", tmp_path / "runs")
    assert code == 0, stderr
    assert "no feature cache: cannot create" in stderr


def test_features_mode_caches_features_and_writes_a_full_checkpoint(tiny_pets, resnet_in_hub, tmp_path, cli, cache_dir):
    args = ["finetune", "resnet", "--dataset", tiny_pets, "--mode", "features", "--head-epochs", "2",
            "--lr", "0.01", "--out", tmp_path / "runs"]
    code, stdout, stderr = cli(*args, "--json")
    assert code == 0, stderr
    [cache] = list(cache_dir.glob("features-*.pt"))
    summary = json.loads(stdout)
    assert summary["mode"] == "features" and summary["epochs"] == 2
    assert [p["name"] for p in summary["phases"]] == ["features"]
    run = Path(summary["run_dir"])
    assert metrics_phases(run) == ["features"] * 2

    # Loads like any checkpoint: model and preprocessing from the file alone.
    checkpoint = load_checkpoint(run, prefer="last")
    model = model_from_checkpoint(checkpoint)
    head = model.get_submodule("fc")
    assert head.out_features == 2
    stats = torchinfo.summary(model, verbose=0)
    assert summary["phases"][0]["trainable"] == head.weight.numel() + head.bias.numel()
    assert summary["phases"][0]["trainable"] + summary["phases"][0]["frozen"] == stats.total_params
    pretrained = torch.load(resnet_in_hub, weights_only=True)
    state = checkpoint["model"]["state_dict"]
    assert all(torch.equal(state[k], pretrained[k]) for k in pretrained if not k.startswith("fc."))

    # The full model on the validation photos predicts what the trained head does on the cached features.
    from cnnkit.data.folder import scan_classes
    from cnnkit.data.images import load_image

    data = checkpoint["data"]
    _, files, labels = scan_classes(tiny_pets / "test")
    images = torch.stack([load_image(f, 3, tuple(data["size"]), data["resize_to"]) for f in files])
    with torch.no_grad():
        full_logits = model(transform_from_checkpoint(checkpoint, "cpu")(images))
        cached = torch.load(cache, weights_only=True)
        assert torch.equal(cached["val_labels"], torch.tensor(labels))
        assert cached["val"].shape == (2, 512) and cached["val"].std(0).mean() > 1e-3  # features that differ per photo
        head_logits = head(cached["val"])
    torch.testing.assert_close(full_logits, head_logits, rtol=1e-4, atol=1e-4)

    # `cnnkit evaluate` rebuilds model and preprocessing from the checkpoint and agrees with training's validation.
    code, stdout, stderr = cli("evaluate", run / "last.pt", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["accuracy"] == summary["val_acc"]
    assert report["loss"] == pytest.approx(summary["val_loss"], abs=1e-4)

    # A second run reuses the cached features; --no-cache computes them again.
    code, stdout, stderr = cli(*args)
    assert code == 0 and f"features: reusing {cache}" in stderr
    assert "trainable" in stdout and f"{head.weight.numel() + head.bias.numel():,}" in stdout
    code, _, stderr = cli(*args, "--no-cache")
    assert code == 0 and "reusing" not in stderr and "ran the backbone" in stderr
    # A cache damaged on disk is computed again, never trusted.
    write_bad_checkpoint(cache, cache, "bit-flip")
    code, _, stderr = cli(*args)
    assert code == 0 and "reusing" not in stderr and "ran the backbone" in stderr
    torch.testing.assert_close(torch.load(cache, weights_only=True)["val"], cached["val"])


# ---- errors ------------------------------------------------------------------------------
def test_missing_weights_fail_at_once_with_the_download_command(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    code, _, stderr = cli("finetune", "resnet18", "--dataset", tmp_path / "no-such-data")
    assert_clean_failure(code, stderr)
    assert "cnnkit download --weights resnet18" in stderr
    assert "no-such-data" not in stderr  # it failed before looking at the data


@pytest.fixture
def bad_weights(tmp_path, resnet_weights) -> dict[str, Path]:
    text = tmp_path / "notes.pth"
    text.write_text("not a tensor file")
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], not_dict)
    return {"other-architecture": resnet_weights, "text": text, "not-a-dict": not_dict, "missing": tmp_path / "nope.pth"}


@pytest.mark.parametrize("kind, message", [
    ("other-architecture", "missing features.0.0.weight"),
    ("text", "cannot read weights file"),
    ("not-a-dict", "is not a state_dict"),
    ("missing", "weights file not found"),
])
def test_weights_that_do_not_fit_are_named(kind, message, bad_weights, tiny_pets, cli):
    code, _, stderr = cli("finetune", "mobilenet", "--weights", bad_weights[kind], "--dataset", tiny_pets)
    assert_clean_failure(code, stderr)
    assert message in stderr


@pytest.mark.parametrize("args, code, message", [
    (["lenet"], 1, "no ImageNet weights"),
    (["resnet18", "--mode", "features", "--unfreeze-epochs", "1"], 2, "--unfreeze-epochs needs --mode finetune"),
    (["resnet18", "--epochs", "3", "--head-epochs", "1"], 2, "does not equal"),
    (["resnet18", "--head-epochs", "0"], 2, "nothing to train"),
    ([], 2, "missing MODEL"),
])
def test_bad_options_fail_with_one_error_line(args, code, message, tiny_pets, resnet_weights, cli):
    exit_code, _, stderr = cli("finetune", *args, "--dataset", tiny_pets, "--weights", resnet_weights)
    assert_clean_failure(exit_code, stderr, code)
    assert message in stderr



def test_features_mode_writes_checkpoints_once_with_the_best_head(calibrated_resnet_weights, tmp_path, cli, monkeypatch):
    # Epochs on cached features take milliseconds; the full model is written at the end, not after each one.
    from cnnkit.engine import trainer

    saved = []
    real_save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda path, ckpt: (saved.append(Path(path).name), real_save(path, ckpt)))
    pets = make_pets_split(tmp_path / "pets", train_per_class=8, test_per_class=6)
    code, stdout, stderr = cli("finetune", "resnet18", "--weights", calibrated_resnet_weights, "--dataset", pets, "--mode", "features",
                               "--head-epochs", "8", "--lr", "0.001", "--out", tmp_path / "runs", "--json")
    assert code == 0, stderr
    assert sorted(saved) == ["best.pt", "last.pt"]
    run = Path(json.loads(stdout)["run_dir"])
    with open(run / "metrics.csv", newline="") as f:
        val_acc = [float(row["val_acc"]) for row in csv.DictReader(f)]
    assert len(val_acc) == 8 and max(val_acc) > val_acc[-1]  # the best epoch is not the last one
    for checkpoint, expected in (("best.pt", max(val_acc)), ("last.pt", val_acc[-1])):
        code, stdout, stderr = cli("evaluate", run / checkpoint, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["accuracy"] == pytest.approx(expected), checkpoint
