"""Recipes, --config and --print-config: each recipe's settings against the tutorials' table, every recipe
run end to end on real digits and photos, the layers' precedence, and a run re-run from its config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from cnnkit.engine.config import TrainConfig
from cnnkit.engine.recipes import RECIPES, find_recipe

from conftest import DATA, assert_clean_failure, write_digits_idx

# Copied from the tutorials' table (shared/tutorials/README.md) and the tutorials' code: the settings each
# experiment uses and the validation accuracy it printed after each epoch.
TUTORIAL = {
    "mnist-cnn": ("train", dict(model="cnn", dataset="mnist", optimizer="adam", lr=0.001, batch_size=64, epochs=3,
                                loss="cross-entropy", normalize="none", schedule="none"), ()),
    "ms-perceptron": ("train", dict(model="perceptron", dataset="mnist", optimizer="adam", lr=0.01, batch_size=64,
                                    epochs=5, loss="nll", normalize="none", schedule="none"),
                      (0.894, 0.899, 0.899, 0.897, 0.897)),
    "ms-mlp": ("train", dict(model="mlp", dataset="mnist", optimizer="adam", lr=0.01, batch_size=64, epochs=5,
                             loss="nll", normalize="none", schedule="none"), ()),
    "ms-oneconv": ("train", dict(model="oneconv", dataset="mnist", optimizer="adam", lr=0.01, batch_size=128, epochs=5,
                                 loss="nll", normalize="none", schedule="none"), (0.967, 0.977, 0.976, 0.974, 0.973)),
    "ms-multilayer-cnn": ("train", dict(model="multilayer-cnn", dataset="mnist", optimizer="adam", lr=0.01,
                                        batch_size=128, epochs=5, loss="nll", normalize="none", schedule="none"),
                          (0.980,)),
    "lenet-cifar10": ("train", dict(model="lenet", dataset="cifar10", optimizer="sgd", lr=0.001, momentum=0.9,
                                    batch_size=14, epochs=3, schedule="none", normalize="0.5/0.5",
                                    loss="cross-entropy"), (0.388, 0.491, 0.522)),
    "vgg16-features": ("finetune", dict(model="vgg16", dataset="cats-dogs", finetune_mode="features", head_epochs=10,
                                        epochs=10, limit=800, val_split=0.125, optimizer="adam", lr=0.01,
                                        batch_size=32, loss="nll", normalize="imagenet"),
                       (0.99, 0.98, 0.99, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98)),
    "vgg16-head": ("finetune", dict(model="vgg16", dataset="cats-dogs", finetune_mode="finetune", head_epochs=1,
                                    unfreeze_epochs=0, epochs=1, optimizer="adam", lr=0.01, batch_size=16,
                                    loss="cross-entropy", normalize="imagenet"), (0.9672,)),
    "vgg16-unfreeze": ("finetune", dict(model="vgg16", dataset="cats-dogs", finetune_mode="finetune", head_epochs=1,
                                        unfreeze_epochs=1, unfreeze_lr=1e-4, epochs=2, optimizer="adam",
                                        batch_size=16, loss="cross-entropy"), (0.9672, 0.9744)),
    "mobilenetv2-transfer": ("finetune", dict(model="mobilenet_v2", dataset="cats-dogs", finetune_mode="finetune",
                                              head_epochs=1, epochs=1, loss="cross-entropy", normalize="imagenet"),
                             (0.98245,)),
    "alexnet-fashion-mnist": ("train", dict(model="alexnet", dataset="fashion-mnist", image_size=[224, 224],
                                            optimizer="adam", lr=0.001, batch_size=128, epochs=3, normalize="none",
                                            schedule="none", loss="cross-entropy"), (0.8617, 0.8715, 0.8859)),
    "alexnet-fashion-mnist-diverge": ("train", dict(model="alexnet", dataset="fashion-mnist", image_size=[224, 224],
                                                    optimizer="adam", lr=0.01, batch_size=32, epochs=3,
                                                    normalize="none", schedule="none"), (0.629, 0.098, 0.100)),
    "dropout-cnn-idx": ("train", dict(model="cnn-dropout", dataset="mnist", optimizer="sgd", lr=0.01, momentum=0.5,
                                      batch_size=100, loss="nll", normalize="none", schedule="none", model_args={}),
                        (0.914, 0.9379, 0.946, 0.9532)),
    "dropout-cnn-wide": ("train", dict(model="cnn-dropout", dataset="mnist", optimizer="sgd", lr=0.01, momentum=0.5,
                                       batch_size=100, loss="nll", normalize="none", schedule="none",
                                       model_args={"conv1": 32, "conv2": 64, "hidden": 100}),
                         (0.9038, 0.9456, 0.9608, 0.9694)),
}


def test_every_recipe_is_in_the_table_and_the_reverse():
    assert sorted(r.name for r in RECIPES) == sorted(TUTORIAL)


@pytest.mark.parametrize("name", sorted(TUTORIAL))
def test_recipe_resolves_to_the_tutorials_settings(cli, name):
    command, expected, printed = TUTORIAL[name]
    code, out, err = cli(command, "--recipe", name, "--print-config")
    assert code == 0, err
    resolved = json.loads(out)
    assert {key: resolved[key] for key in expected} == expected
    assert resolved["recipe"] == name and resolved["command"] == command
    assert find_recipe(name).printed == pytest.approx(printed)
    TrainConfig.from_dict(resolved)  # the printed configuration is a TrainConfig


def test_lenet_cifar10_is_the_tutorials_exactly(cli):
    """The issue's own example: a constant learning rate (the README's old command ran one-cycle)."""
    code, out, _ = cli("train", "--recipe", "lenet-cifar10", "--print-config")
    resolved = json.loads(out)
    assert (resolved["optimizer"], resolved["lr"], resolved["momentum"], resolved["batch_size"], resolved["epochs"],
            resolved["schedule"], resolved["normalize"], resolved["loss"]) == \
        ("sgd", 0.001, 0.9, 14, 3, "none", "0.5/0.5", "cross-entropy")


# ---- every recipe end to end, on data that is here ---------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """32 training and 16 test digits of the real MNIST sample, as an IDX folder: small enough for AlexNet at 224."""
    return write_digits_idx(tmp_path_factory.mktemp("digits"), train=32, test=16)


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    for cls in ("Cat", "Dog"):
        photos = sorted((DATA / "pets-sample" / cls).glob("*.jpg"))
        for split, chosen in (("train", photos[:2]), ("test", photos[-1:])):
            (root / split / cls).mkdir(parents=True)
            for photo in chosen:
                shutil.copy(photo, root / split / cls / photo.name)
    return root


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    """Random ImageNet-shaped weights under torchvision's file name, where the hub cache keeps the real ones."""
    from cnnkit.models import get_spec
    from cnnkit.models.backbones import weights_path

    home = tmp_path_factory.mktemp("torch-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        for name, build in (("mobilenet_v2", torchvision.models.mobilenet_v2),):
            torch.manual_seed(0)
            path = weights_path(get_spec(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(build().state_dict(), path)
    return home


# AlexNet's and VGG16's checkpoints are 0.7 GB (weights and Adam's state): two per run would take most of a
# minute of disk per recipe on CI. Their recipes run here with a small model of the same kind in its place,
# given on the command line as a learner would, and (AlexNet) at the data's own size, through a config file.
SMALLER_MODEL = {"alexnet-fashion-mnist": "oneconv", "alexnet-fashion-mnist-diverge": "oneconv",
                 "vgg16-features": "mobilenet_v2", "vgg16-head": "mobilenet_v2", "vgg16-unfreeze": "mobilenet_v2"}


def smaller(name: str, tmp_path: Path) -> list:
    if name not in SMALLER_MODEL:
        return []
    native = tmp_path / "native-size.json"
    native.write_text('{"image_size": null}')
    return [SMALLER_MODEL[name], "--config", native]


@pytest.mark.parametrize("name", [r.name for r in RECIPES if r.command == "train"])
def test_train_recipe_runs_end_to_end(cli, digits, tmp_path, name):
    """On 32 real digits (the recipe's own dataset is not here); the summary sets the tutorial's numbers beside."""
    code, out, err = cli("train", *smaller(name, tmp_path), "--recipe", name, "--dataset", digits, "--limit", 32,
                         "--epochs", 1, "--device", "cpu", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["epochs"] == 1
    beside = summary["tutorial"]
    assert beside["recipe"] == name
    assert beside["epochs"][0]["run_val_acc"] == pytest.approx(summary["val_acc"])
    printed = find_recipe(name).printed
    assert [row["tutorial_val_acc"] for row in beside["epochs"]][:len(printed)] == list(printed)


@pytest.mark.parametrize("name", [r.name for r in RECIPES if r.command == "finetune"])
def test_finetune_recipe_runs_end_to_end(cli, pets, torch_home, monkeypatch, tmp_path, name):
    """On 4 real photos, from random weights in a temporary TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    extra = ["--head-epochs", 1, "--unfreeze-epochs", 1] if find_recipe(name).sets.get("unfreeze_epochs") else ["--epochs", 1]
    code, out, err = cli("finetune", *smaller(name, tmp_path), "--recipe", name, "--dataset", pets, "--limit", 4, "--val-split", 0.5,
                         *extra, "--batch-size", 4, "--workers", 0, "--device", "cpu", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["tutorial"]["recipe"] == name
    assert summary["tutorial"]["epochs"][0]["tutorial_val_acc"] == find_recipe(name).printed[0]


def test_human_summary_shows_the_tutorials_numbers_on_stderr(cli):
    code, out, err = cli("train", "--recipe", "lenet-cifar10", "--dataset", DATA / "cifar10-sample", "--limit", 28,
                         "--epochs", 1, "--device", "cpu")
    assert code == 0, err
    assert "recipe lenet-cifar10" in err and "38.80%" in err  # the tutorial's epoch 1, beside the run's
    assert "38.80%" not in out


# ---- layers: defaults < recipe < config < command line -------------------------------------------------
def test_command_line_overrides_config_which_overrides_recipe(cli, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('lr = 0.05\nbatch_size = 7\naugment = "flip"\n')
    code, out, err = cli("train", "--recipe", "lenet-cifar10", "--config", conf, "--batch-size", "9", "--print-config")
    assert code == 0, err
    resolved = json.loads(out)
    assert (resolved["lr"], resolved["batch_size"], resolved["augment"]) == (0.05, 9, "flip")  # config, CLI, config
    assert (resolved["optimizer"], resolved["epochs"]) == ("sgd", 3)  # the recipe's
    assert resolved["weight_decay"] == TrainConfig().weight_decay  # the default


@pytest.mark.parametrize("suffix, text", [
    (".json", '{"model": "mlp", "epochs": 2, "optimizer": "sgd"}'),
    (".yaml", "model: mlp\nepochs: 2\noptimizer: sgd\n"),
    (".toml", 'model = "mlp"\nepochs = 2\noptimizer = "sgd"\n'),
])
def test_config_formats(cli, tmp_path, suffix, text):
    conf = tmp_path / f"c{suffix}"
    conf.write_text(text)
    code, out, err = cli("train", "--config", conf, "--print-config")
    assert code == 0, err
    resolved = json.loads(out)
    assert (resolved["model"], resolved["epochs"], resolved["optimizer"]) == ("mlp", 2, "sgd")


@pytest.mark.parametrize("text, size", [("image_size = 32", [32, 32]), ('image_size = "20,28"', [20, 28]),
                                        ("image_size = [20, 28]", [20, 28])])
def test_a_config_gives_the_image_size_as_the_command_line_or_config_json_does(cli, tmp_path, text, size):
    conf = tmp_path / "c.toml"
    conf.write_text(f"{text}\nmodel_args = {{ hidden = 12 }}\n")
    code, out, err = cli("train", "mlp", "--config", conf, "--print-config")
    assert code == 0, err
    assert json.loads(out)["image_size"] == size and json.loads(out)["model_args"] == {"hidden": 12}


@pytest.mark.parametrize("command, text, named", [
    ("train", '{"model": "mlp", "lrate": 0.1}', "lrate"),  # unknown key
    ("train", '{"model": "mlp", "epochs": "two"}', "epochs"),  # wrong type
    ("train", '{"model": "mlp", "epochs": 0}', "epochs"),  # out of the option's range
    ("train", '{"model": "mlp", "optimizer": "lbfgs"}', "optimizer"),  # not a choice
    ("train", '{"model": "mlp", "lr": -1}', "lr"),  # the option's own check
    ("train", '{"model": "mlp", "unfreeze_epochs": 2}', "unfreeze_epochs"),  # a finetune setting
    ("finetune", '{"model": "vgg16", "init": "xavier"}', "init"),  # a train setting
    ("finetune", '{"model": "vgg16", "command": "train"}', "train configuration"),
    ("train", '[1, 2]', "mapping"),
    ("train", '{"image_size": [0, 28]}', "image_size"),  # checked as --image-size checks it
    ("train", '{"image_size": [20, 28, 3]}', "image_size"),
    ("train", '{"image_size": true}', "image_size"),
    ("train", '{"model_args": [1]}', "model_args"),
    ("train", '{"model": ', "not valid JSON"),
])
def test_bad_config_is_a_usage_error_naming_the_key_and_file(cli, tmp_path, command, text, named):
    conf = tmp_path / "bad.json"
    conf.write_text(text)
    code, _, err = cli(command, "--config", conf, "--print-config")
    lines = assert_clean_failure(code, err, 2)
    assert named in lines[0] and "bad.json" in lines[0]


@pytest.mark.parametrize("name, content, named", [("c.ini", "epochs = 2", "unknown file type '.ini'"),
                                                 ("c.json", None, "cannot read it"),  # a directory
                                                 ("c.toml", b"epochs = \xff", "cannot read it")])  # not UTF-8
def test_a_config_file_cnnkit_cannot_read_is_a_usage_error(cli, tmp_path, name, content, named):
    conf = tmp_path / name
    conf.mkdir() if content is None else conf.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = cli("train", "--config", conf, "--print-config")
    assert named in assert_clean_failure(code, err, 2)[0]


def test_an_empty_yaml_config_sets_nothing(cli, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    code, out, err = cli("train", "lenet", "--config", tmp_path / "empty.yaml", "--print-config")
    assert code == 0, err
    assert json.loads(out)["epochs"] == TrainConfig().epochs


@pytest.mark.parametrize("recipe, epochs, phases", [("vgg16-head", "3", (3, 3, 0)), ("vgg16-unfreeze", "3", (3, 2, 1))])
def test_epochs_on_a_finetune_recipe_go_to_its_phases(cli, recipe, epochs, phases):
    code, out, err = cli("finetune", "--recipe", recipe, "--epochs", epochs, "--print-config")
    assert code == 0, err
    resolved = json.loads(out)
    assert (resolved["epochs"], resolved["head_epochs"], resolved["unfreeze_epochs"]) == phases


def test_recipe_for_the_other_command_is_a_usage_error(cli):
    code, _, err = cli("finetune", "--recipe", "lenet-cifar10")
    assert "cnnkit train --recipe lenet-cifar10" in assert_clean_failure(code, err, 2)[-1]
    code, _, err = cli("train", "--recipe", "vgg16-head")
    assert_clean_failure(code, err, 2)
    code, _, err = cli("train", "--recipe", "lenet-cifar")
    assert "lenet-cifar10" in assert_clean_failure(code, err, 2)[0]


def test_a_runs_config_json_reruns_it(cli, tmp_path):
    code, out, err = cli("train", "mlp", "--dataset", "mnist-sample", "--limit", 64, "--epochs", 1, "--optimizer", "sgd",
                         "--lr", "0.02", "--batch-size", 16, "--device", "cpu", "--quiet")
    assert code == 0, err
    first = Path(out.strip())
    code, out, err = cli("train", "--config", first / "config.json", "--name", "again", "--quiet")
    assert code == 0, err
    again = Path(out.strip())
    assert again != first
    old, new = (json.loads((run / "config.json").read_text()) for run in (first, again))
    assert {**old, "name": "again"} == new
    assert (first / "metrics.csv").read_text().splitlines()[1].split(",")[:6] == \
        (again / "metrics.csv").read_text().splitlines()[1].split(",")[:6]  # same seed and data: the same epoch


def test_recipe_and_config_are_refused_with_resume(cli, tmp_path):
    conf = tmp_path / "c.json"
    conf.write_text("{}")
    for extra in (["--recipe", "lenet-cifar10"], ["--config", conf]):
        code, _, err = cli("train", "--resume", tmp_path / "no-run", *extra)
        assert (extra[0] in assert_clean_failure(code, err, 2)[0])


def test_missing_model_without_a_recipe(cli):
    code, _, err = cli("train", "--print-config")
    assert "--recipe" in assert_clean_failure(code, err, 2)[-1]


def test_option_defaults_are_trainconfigs():
    """One home for each default: every train/finetune option defaults to TrainConfig's value (finetune's own
    defaults, the ones a transfer run needs, are listed here)."""
    import typer.main

    from cnnkit.cli import app
    from cnnkit.cli.run_config import PARAMETER_FIELDS, field_value

    group = typer.main.get_command(app)
    defaults = TrainConfig().to_dict()
    # None: "not given". MODEL must come from the command line or a recipe; --resume keeps the run's --epochs;
    # finetune computes --head-epochs from --epochs.
    not_given = {"model", "epochs", "head_epochs"}
    finetune_own = {"dataset": "cats-dogs", "batch_size": 32, "lr": 1e-3, "optimizer": "adam", "schedule": "none",
                    "finetune_mode": "finetune"}
    for command, own in (("train", {}), ("finetune", finetune_own)):
        checked = 0
        for param in group.commands[command].params:
            key = PARAMETER_FIELDS.get(param.name, param.name)
            if key not in defaults or key in not_given:
                continue
            default = param.default
            if key == "model_args":  # repeated KEY=VALUE on the command line, parsed into TrainConfig's dict
                from cnnkit.cli.train_options import parse_model_args

                default = parse_model_args(default)
            assert field_value(default) == own.get(key, defaults[key]), (command, key)
            checked += 1
        assert checked > 20


# ---- resume with a new --epochs on a schedule that depends on the run's length --------------------------
@pytest.mark.parametrize("schedule, noted", [("onecycle", True), ("none", False)])
def test_resume_with_more_epochs_says_the_plan_changed(cli, schedule, noted):
    code, out, err = cli("train", "perceptron", "--dataset", "mnist-sample", "--limit", 64, "--epochs", 1,
                         "--schedule", schedule, "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = cli("train", "--resume", out.strip(), "--epochs", 2)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "learning-rate plan" in line]
    assert notes == (["note: the onecycle learning-rate plan was for 1 epoch; from epoch 2 on it follows the plan "
                      "for 2 (a run started with --epochs 2 follows that plan from its first step)"] if noted else [])
