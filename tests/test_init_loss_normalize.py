"""--init SCHEME[:ARGS] and --init-bias, --loss, --normalize: what each does on real layers and real digits."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch import nn

from cnnkit.data.catalog import load_mnist_sample
from cnnkit.engine.checkpoint import load_checkpoint
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint
from cnnkit.engine.losses import LOSSES, NOT_FOR_CLASSIFICATION, SMOOTHABLE, build_loss, check_loss
from cnnkit.engine.model_source import IMAGENET_MEAN, IMAGENET_STD, Scratch
from cnnkit.engine.normalize import parse_normalize
from cnnkit.errors import UsageError
from cnnkit.models import get_model, initialise
from cnnkit.models.init import parse_init
from conftest import assert_clean_failure

FAN_IN, FAN_OUT = 400, 300  # a real Linear(400, 300): 120,000 weights, enough for 3% on a std


def linear(spec: str, bias: float | None = None) -> nn.Linear:
    torch.manual_seed(0)
    return initialise(nn.Sequential(nn.Linear(FAN_IN, FAN_OUT)), spec, bias)[0]


def close(value: float, expected: float, rel: float = 0.03) -> bool:
    return abs(value - expected) <= rel * abs(expected)


# ---- --init ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,check", [
    ("kaiming-normal", lambda w: close(w.std(), math.sqrt(2 / FAN_IN)) and abs(w.mean()) < 1e-3),
    ("kaiming-normal:fan_out", lambda w: close(w.std(), math.sqrt(2 / FAN_OUT))),
    ("kaiming-uniform", lambda w: w.abs().max() <= math.sqrt(6 / FAN_IN) and close(w.std(), math.sqrt(2 / FAN_IN))),
    ("xavier-normal", lambda w: close(w.std(), math.sqrt(2 / (FAN_IN + FAN_OUT)))),
    ("xavier-uniform", lambda w: w.abs().max() <= math.sqrt(6 / (FAN_IN + FAN_OUT))
     and close(w.std(), math.sqrt(2 / (FAN_IN + FAN_OUT)))),
    ("normal:0.1,1", lambda w: close(w.mean(), 0.1, 0.1) and close(w.std(), 1.0)),
    ("normal:0,0.01", lambda w: close(w.std(), 0.01) and abs(w.mean()) < 1e-4),
    ("uniform:-0.2,0.3", lambda w: w.min() >= -0.2 and w.max() <= 0.3 and close(w.mean(), 0.05, 0.1)),
    ("constant:0.3", lambda w: torch.allclose(w, torch.full_like(w, 0.3))),
    ("zeros", lambda w: not w.any()),
    ("orthogonal", lambda w: torch.allclose(w @ w.T, torch.eye(FAN_OUT, dtype=w.dtype), atol=1e-4)),
])
def test_each_scheme_has_its_statistics_and_zero_biases(spec, check):
    layer = linear(spec)
    assert check(layer.weight.detach().double())
    assert not layer.bias.any()


def test_default_keeps_pytorchs_init_and_init_bias_sets_every_bias():
    kept = linear("default").weight
    torch.manual_seed(0)
    assert torch.equal(kept, nn.Linear(FAN_IN, FAN_OUT).weight)
    assert torch.allclose(linear("default", bias=0.3).bias, torch.full((FAN_OUT,), 0.3))
    assert torch.allclose(linear("xavier-normal", bias=-1.5).bias, torch.full((FAN_OUT,), -1.5))


@pytest.mark.parametrize("alias,explicit", [("kaiming", "kaiming-normal"), ("xavier", "xavier-uniform"), ("normal", "normal:0,0.01")])
def test_old_names_equal_their_explicit_names_and_the_old_code(alias, explicit):
    """Old runs resume identically: the bare names draw exactly what cnnkit drew before (the calls inlined here)."""
    def model():
        torch.manual_seed(3)
        return get_model("lenet", in_channels=3, num_classes=10, image_size=32)

    old = model()
    for module in old.modules():  # cnnkit's initialise before --init took arguments
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if alias == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out" if isinstance(module, nn.Conv2d) else "fan_in", nonlinearity="relu")
            elif alias == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.zeros_(module.bias)
    for spec in (alias, explicit):
        new = initialise(model(), spec)
        assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values())), spec


def test_tutorial_003_is_its_initialize_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 5), nn.BatchNorm2d(64), nn.Flatten(), nn.Linear(400, 300),
                          nn.BatchNorm2d(3, affine=False))  # no weight to set: left alone
    conv, bn, _, fc, _ = model
    with torch.no_grad():  # away from BatchNorm's own defaults, so that the preset's 1 and 0 show
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    initialise(model, "tutorial-003")
    assert close(conv.weight.std().item(), math.sqrt(2 / (16 * 25 + 64 * 25)))  # xavier_normal_
    assert torch.allclose(conv.bias, torch.full((64,), 0.3))
    assert close(fc.weight.mean().item(), 0.1, 0.1) and close(fc.weight.std().item(), 1.0)  # normal_(w, 0.1)
    assert not fc.bias.any()
    assert bool((bn.weight == 1).all()) and not bn.bias.any()


@pytest.mark.parametrize("spec", ["normal:abc", "uniform:1", "uniform:2,1", "constant:nan", "constant:inf", "normal:0,0",
                                  "normal:0,-1", "zeros:1", "kaiming-normal:sideways", "he", ""])
def test_bad_init_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        parse_init(spec)


# ---- --loss ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    splits, _ = load_mnist_sample()
    return splits["train"].images[:256].float() / 255, splits["train"].labels[:256].long()


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_trains_on_digits_and_decreases(name, digits):
    x, y = digits
    torch.manual_seed(0)
    model = get_model("mlp", in_channels=1, num_classes=10, image_size=28)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = build_loss(name)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses


def test_nll_is_cross_entropy_on_log_softmax_and_kl_div_smooths(digits):
    logits, labels = torch.randn(16, 10), digits[1][:16]
    assert torch.allclose(build_loss("nll")(logits, labels), nn.CrossEntropyLoss()(logits, labels))
    # kl-div without --label-smoothing smooths by 0.1: cross-entropy with the same smoothing, less the target's entropy
    target = torch.full((16, 10), 0.01).scatter_(1, labels[:, None], 0.91)
    entropy = -(target * target.log()).sum(1).mean()
    assert torch.allclose(build_loss("kl-div")(logits, labels), nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels) - entropy, atol=1e-5)


@pytest.mark.parametrize("name", sorted(NOT_FOR_CLASSIFICATION))
def test_losses_for_other_tasks_are_refused_saying_why(name):
    with pytest.raises(UsageError, match=re.escape(NOT_FOR_CLASSIFICATION[name])):
        check_loss(name)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - set(SMOOTHABLE)))
def test_label_smoothing_is_refused_where_it_means_nothing(name):
    with pytest.raises(UsageError, match="--label-smoothing does not apply"):
        check_loss(name, label_smoothing=0.1)
    check_loss(name)


# ---- --normalize -------------------------------------------------------------------------
def test_normalize_values_and_named_statistics(digits):
    assert parse_normalize("0.5/0.5") == ([0.5], [0.5])
    assert parse_normalize("0.1,0.2,0.3") == ([0.1, 0.2, 0.3], [1.0])
    split = load_mnist_sample()[0]["train"]
    stats = {spec: Scratch(TrainConfig(model="lenet", normalize=spec)).normalisation(split, 3)
             for spec in ("none", "imagenet", "0.5/0.5", "0.1,0.2,0.3/0.5")}
    assert stats == {"none": ([0.0] * 3, [1.0] * 3), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                     "0.5/0.5": ([0.5] * 3, [0.5] * 3), "0.1,0.2,0.3/0.5": ([0.1, 0.2, 0.3], [0.5] * 3)}


@pytest.mark.parametrize("spec", ["0.5/0", "nan", "0.5/inf", "abc", "0.5/-1", "0.1,0.2/0.1,0.2,0.3", "0.5/"])
def test_bad_normalize_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        parse_normalize(spec)


# ---- through the command -------------------------------------------------------------------
@pytest.mark.parametrize("args,option", [
    (["--init", "normal:abc"], "--init"), (["--init", "uniform:1"], "--init"), (["--init", "constant:nan"], "--init"),
    (["--init-bias", "nan"], "--init-bias"), (["--normalize", "0.5/0"], "--normalize"), (["--normalize", "nan"], "--normalize"),
    (["--loss", "triplet"], "--loss"), (["--loss", "ctc"], "--loss"), (["--loss", "hinge"], "--loss"),
])
def test_bad_values_stop_at_the_option(cli, args, option):
    code, _, err = cli("train", "mlp", "--epochs", "1", *args)
    assert_clean_failure(code, err, 2)
    assert option in err


def test_refused_smoothing_and_wrong_channel_count_are_clean_errors(cli):
    code, _, err = cli("train", "mlp", "--loss", "multi-margin", "--label-smoothing", "0.1")
    assert_clean_failure(code, err, 2)
    assert "label smoothing applies to" in err
    code, _, err = cli("train", "mlp", "--limit", "64", "--epochs", "1", "--normalize", "0.5,0.5,0.5/0.2", "--device", "cpu")
    lines = assert_clean_failure(code, err, 2, after_output=True)
    assert "3 values for 1-channel images" in lines[0]


def test_a_run_trains_with_its_loss_init_and_normalisation_and_evaluate_uses_them(cli, tmp_path):
    code, out, err = cli("train", "mlp", "--epochs", "1", "--limit", "512", "--val-split", "0.05", "--val-limit", "400", "--device", "cpu",
                         "--loss", "mse", "--init", "xavier-normal", "--init-bias", "0.1", "--normalize", "none", "--json")
    assert code == 0, err
    summary = json.loads(out)
    run = tmp_path / summary["run_dir"]
    config = json.loads((run / "config.json").read_text())
    assert (config["loss"], config["init"], config["init_bias"], config["normalize"]) == ("mse", "xavier-normal", 0.1, "none")
    # train loss is the MSE of softmax against one-hot (at most 2 per image, ~0.09 untrained);
    # validation loss is cross-entropy (~2.3 untrained), whatever --loss is
    assert summary["train_loss"] < 0.1 < summary["val_loss"]
    checkpoint = load_checkpoint(run / "best.pt")
    assert (checkpoint["data"]["mean"], checkpoint["data"]["std"]) == ([0.0], [1.0])
    evaluation = evaluate_checkpoint(run, split="val", device="cpu")
    assert evaluation.result.count == 400
    assert evaluation.result.loss == pytest.approx(summary["val_loss"], abs=1e-4)
    assert evaluation.result.accuracy == pytest.approx(summary["val_acc"])


@pytest.mark.parametrize("settings, expected", [
    ({}, 0.1),  # cnnkit's own default: train with cross-entropy
    ({"loss": "nll"}, 0.0),  # nll refuses smoothing: the default must not reach it
    ({"recipe": "ms-perceptron"}, 0.0),  # a tutorial's recipe trains on the plain target
    ({"command": "finetune"}, 0.0),
    ({"loss": "nll", "label_smoothing": 0.2}, 0.2),  # given: used as given (and refused by check_loss for nll)
])
def test_label_smoothing_default_depends_on_command_loss_and_recipe(settings, expected):
    from cnnkit.engine.config import label_smoothing_for

    assert label_smoothing_for(TrainConfig(**settings)) == expected


def test_a_loss_that_refuses_smoothing_trains_with_the_default_options(cli):
    code, out, err = cli("train", "perceptron", "--loss", "nll", "--epochs", "1", "--limit", "64", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["epochs"] == 1
