"""Bad option values across commands: numbers out of range, unknown names (with close matches),
malformed kernels, and devices this machine does not have.

test_train covers train's own bad numbers; test_idx_fuzz and test_visualize cover the kernel
parser. Every failure here must also leave stdout empty, even with --json, so a script that
parses the output never mistakes an error for a result.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_clean_failure
from hostile import picture, shared_mobilenet_weights


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return shared_mobilenet_weights(tmp_path_factory)


def run(cli, trained, args, weights=None):
    return cli(*[str(trained) if a == "RUN" else str(weights) if a == "WEIGHTS" else a for a in args])


NUMBERS = [
    # finetune: the same rules as train, and its own phase options
    (["finetune", "mobilenet_v2", "--epochs", "0"], "--epochs"),
    (["finetune", "mobilenet_v2", "--epochs", "-2"], "--epochs"),
    (["finetune", "mobilenet_v2", "--batch-size", "0"], "--batch-size"),
    (["finetune", "mobilenet_v2", "--batch-size", "-8"], "--batch-size"),
    (["finetune", "mobilenet_v2", "--lr", "0"], "--lr"),
    (["finetune", "mobilenet_v2", "--lr", "-0.01"], "--lr"),
    (["finetune", "mobilenet_v2", "--lr", "nan"], "--lr"),
    (["finetune", "mobilenet_v2", "--lr", "inf"], "--lr"),
    (["finetune", "mobilenet_v2", "--unfreeze-lr", "-1", "--unfreeze-epochs", "1"], "--unfreeze-lr"),
    (["finetune", "mobilenet_v2", "--unfreeze-lr", "inf", "--unfreeze-epochs", "1"], "--unfreeze-lr"),
    (["finetune", "mobilenet_v2", "--head-epochs", "-1"], "--head-epochs"),
    # train: values that are numbers but not finite ones (found by this suite: inf trained to nan)
    (["train", "perceptron", "--lr", "inf"], "--lr"),
    (["train", "perceptron", "--lr", "nan"], "--lr"),
    (["train", "perceptron", "--weight-decay", "inf"], "--weight-decay"),
    (["train", "perceptron", "--limit", "-5"], "--limit"),
    (["train", "perceptron", "--memory-budget", "lots"], "lots"),
    # the other commands' numbers
    (["evaluate", "RUN", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "RUN", "--top-k", "0"], "--top-k"),
    (["evaluate", "RUN", "--worst", "-1"], "--worst"),
    (["predict", "x.png", "--model", "RUN", "--batch-size", "-1"], "--batch-size"),
    (["predict", "x.png", "--model", "RUN", "--top-k", "0"], "--top-k"),
    (["summary", "cnn", "--depth", "-1"], "--depth"),
    (["visualize-filter", "--count", "0", "--out", "k.png"], "--count"),
    (["visualize-filter", "--count", "33", "--out", "k.png"], "--count"),
]

# Values that used to get through the parser: nan, inf and numbers too big to mean anything.
# Training ones name a dataset that is not there: were the value accepted, the run would stop
# on that (exit 1) instead of training for 100001 epochs, so the test fails fast before a fix.
NO_DATA = ["--dataset", "./no-such-folder"]
UNBOUNDED = [
    (["train", "perceptron", "--memory-budget", "nan", *NO_DATA], "--memory-budget"),
    (["train", "perceptron", "--memory-budget", "inf", *NO_DATA], "--memory-budget"),
    (["train", "perceptron", "--memory-budget", "1e400G", *NO_DATA], "--memory-budget"),
    (["finetune", "mobilenet_v2", "--memory-budget", "nan", *NO_DATA], "--memory-budget"),
    (["train", "perceptron", "--seed", "99999999999999999999", *NO_DATA], "--seed"),
    (["train", "perceptron", "--seed", str(2**32), *NO_DATA], "--seed"),
    (["train", "perceptron", "--seed", "-1", *NO_DATA], "--seed"),
    (["finetune", "mobilenet_v2", "--seed", "99999999999999999999", *NO_DATA], "--seed"),
    (["train", "perceptron", "--seed", "1e20", *NO_DATA], "--seed"),
    (["train", "perceptron", "--momentum", "inf", *NO_DATA], "--momentum"),
    (["train", "perceptron", "--momentum", "1.5", *NO_DATA], "--momentum"),
    (["train", "perceptron", "--weight-decay", "nan", *NO_DATA], "--weight-decay"),
    (["train", "perceptron", "--label-smoothing", "nan", *NO_DATA], "--label-smoothing"),
    (["train", "perceptron", "--val-split", "nan", *NO_DATA], "--val-split"),
    (["train", "perceptron", "--val-split", "inf", *NO_DATA], "--val-split"),
    (["train", "perceptron", "--epochs", "100001", *NO_DATA], "--epochs"),
    (["train", "perceptron", "--batch-size", "65537", *NO_DATA], "--batch-size"),
    (["train", "perceptron", "--workers", "257", *NO_DATA], "--workers"),
    (["train", "perceptron", "--workers", "-1", *NO_DATA], "--workers"),
    (["train", "perceptron", "--limit", "0", *NO_DATA], "--limit"),
    (["evaluate", "RUN", "--worst", "101"], "--worst"),
    (["evaluate", "RUN", "--top-k", "1001"], "--top-k"),
    (["evaluate", "RUN", "--batch-size", "65537"], "--batch-size"),
    (["summary", "cnn", "--classes", "100001"], "--classes"),
    (["summary", "vgg16", "--input-size", "3,200000,200000"], "--input-size"),  # was a 480 GB allocation
    (["summary", "cnn", "--input-size", "1,8193,28"], "--input-size"),
    (["summary", "cnn", "--input-size", "1,8192,4096"], "--input-size"),  # 32 M pixels
    (["summary", "cnn", "--input-size", "5,28,28"], "--input-size"),
    (["summary", "--checkpoint", "RUN", "--input-size", "1,100000,28"], "--input-size"),
]


@pytest.mark.parametrize("args, option", UNBOUNDED, ids=[" ".join(a) for a, _ in UNBOUNDED])
def test_unbounded_and_non_finite_numbers_are_usage_errors(cli, trained, args, option):
    code, out, err = run(cli, trained, args)
    assert_clean_failure(code, err, 2)
    assert option in err and out == ""


def test_memory_budget_from_the_environment_is_checked_too(cli, monkeypatch, tmp_path):
    # inspect-dataset has no --memory-budget: the variable is read where a folder's budget is needed.
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(picture((16, 16), seed=index)).save(tmp_path / "photos" / name / f"{index}.png")
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "nan")
    code, out, err = cli("inspect-dataset", tmp_path / "photos")
    assert "nan" in assert_clean_failure(code, err, 2)[0] and out == ""


@pytest.mark.parametrize("args, option", NUMBERS, ids=[" ".join(a) for a, _ in NUMBERS])
def test_numbers_out_of_range_are_usage_errors(cli, trained, args, option):
    code, out, err = run(cli, trained, args)
    assert_clean_failure(code, err, 2)
    assert option in err and out == ""


NAMES = [
    (["train", "lenett"], "unknown model 'lenett'", "lenet"),
    (["finetune", "resnet81"], "unknown model 'resnet81'", "resnet18"),
    (["finetune", "mobilenetv3"], "mobilenetv3", "mobilenet"),
    (["summary", "alexnett"], "unknown model 'alexnett'", "alexnet"),
    (["download", "--weights", "vgg61"], "unknown model 'vgg61'", "vgg16"),
    (["predict", "x.png", "--model", "mobilenet_v3"], "mobilenet_v3", "mobilenet_v2"),
    (["inspect-dataset", "mnist-sampel"], "unknown dataset 'mnist-sampel'", "mnist-sample"),
    (["summary", "cnn", "--dataset", "fashion_mnist"], "unknown dataset 'fashion_mnist'", "fashion-mnist"),
    (["visualize-filter", "--dataset", "cifar-10", "--out", "k.png"], "unknown dataset 'cifar-10'", "cifar10"),
    (["finetune", "mobilenet_v2", "--weights", "WEIGHTS", "--dataset", "cats_dogs"], "cats_dogs", "cats-dogs"),
    (["export-idx", "mnsit", "--out", "idx"], "unknown dataset 'mnsit'", "mnist"),
    (["evaluate", "RUN", "--dataset", "mnist-smaple"], "unknown dataset 'mnist-smaple'", "mnist-sample"),
    (["download", "cifar100"], "unknown dataset 'cifar100'", "cifar10"),
]


@pytest.mark.parametrize("args, message, suggestion", NAMES, ids=[" ".join(a) for a, _, _ in NAMES])
def test_unknown_names_suggest_close_matches(cli, trained, weights, tmp_path, args, message, suggestion):
    if args[0] == "predict":
        from PIL import Image

        Image.new("L", (28, 28)).save(tmp_path / "x.png")
    code, out, err = run(cli, trained, [*args, "--json"] if args[0] in ("inspect-dataset", "summary", "evaluate") else args, weights)
    lines = assert_clean_failure(code, err)
    assert message in lines[0]
    assert suggestion in "\n".join(lines[1:]), f"no close match suggested:\n{err}"
    assert out == ""


@pytest.mark.parametrize("kernel", ["1,2,3;4,5", "1,2;3,4;5", "x", "1,2,3;4,5,6;7,8,9;", "0x10", "1e400,0;0,1", "sobel", "--"])
def test_malformed_kernel_strings(cli, tmp_path, kernel):
    code, out, err = cli("visualize-filter", "--kernel", kernel, "--out", tmp_path / "k.png")
    lines = assert_clean_failure(code, err, 2)
    assert "--kernel" in lines[0] or "kernel" in err
    assert not (tmp_path / "k.png").exists()


DEVICE_COMMANDS = {
    "train": ["train", "perceptron", "--limit", "64", "--epochs", "1"],
    "finetune": ["finetune", "mobilenet_v2"],
    "evaluate": ["evaluate", "RUN"],
    "predict": ["predict", "x.png", "--model", "RUN"],
}


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7", "mps", "tpu", "gpu0"])
@pytest.mark.parametrize("command", list(DEVICE_COMMANDS))
def test_a_device_that_is_not_there_says_so_in_one_line(cli, trained, tmp_path, command, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    code, out, err = run(cli, trained, [*DEVICE_COMMANDS[command], "--device", device, "--json"])
    lines = assert_clean_failure(code, err, 2)
    assert f"--device {device}" in lines[0] or f"unknown device '{device}'" in lines[0]
    if device.startswith("cuda"):
        assert "CUDA is not available" in lines[0]
    assert out == "" and not (tmp_path / "checkpoints").exists()
