"""Each tutorial model, parameter for parameter and layer for layer, as the tutorials' table has it.

The figures and layer sequences are copied from the tutorials' README table (shared/tutorials/README.md);
the tests do not read it. A layer sequence is the order the leaf modules run in one forward pass (hooks),
so a model whose attributes are declared in another order is still checked in the order it computes.
The tutorials' models that end in LogSoftmax are cnnkit's without it: cnnkit's models return logits,
and `--loss nll` takes the log-softmax of them (the same numbers as the tutorial's NLLLoss on its output).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchinfo import summary

from cnnkit.errors import ModelError
from cnnkit.models import get_model
from cnnkit.models.layouts import checkpoint_layout


def describe(module: nn.Module) -> str:
    """A leaf module as the table writes it: `conv 1->16 5x5 p2`, `maxpool 2`, `linear 3136->10`..."""
    if isinstance(module, nn.Conv2d):
        (k, _), (s, _), (p, _) = module.kernel_size, module.stride, module.padding
        return f"conv {module.in_channels}->{module.out_channels} {k}x{k}" + (f" s{s}" if s != 1 else "") + (f" p{p}" if p else "")
    if isinstance(module, nn.MaxPool2d):
        return f"maxpool {module.kernel_size}" + (f" s{module.stride}" if module.stride != module.kernel_size else "")
    if isinstance(module, nn.Linear):
        return f"linear {module.in_features}->{module.out_features}"
    if isinstance(module, nn.Dropout2d):
        return f"dropout2d {module.p}"
    if isinstance(module, nn.Dropout):
        return f"dropout {module.p}"
    return type(module).__name__.lower()


def layer_sequence(model: nn.Module, shape: tuple[int, ...]) -> list[str]:
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(describe(m)))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape, device=next(model.parameters()).device))
    for hook in hooks:
        hook.remove()
    return calls


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


CONV_RELU_POOL = ["relu", "maxpool 2"]

# (tutorial, name, builder kwargs, input shape, parameters, layer sequence)
TUTORIAL_MODELS = [
    ("000", "cnn", {}, (1, 28, 28), 121_514, [
        "conv 1->16 5x5 p2", *CONV_RELU_POOL,
        "conv 16->32 5x5 p2", "relu", "conv 32->32 5x5 p2", *CONV_RELU_POOL,
        "conv 32->64 5x5 p2", "relu", "flatten", "linear 3136->10"]),
    ("001 3.1", "perceptron", {}, (1, 28, 28), 7_850, ["flatten", "linear 784->10"]),
    ("001 3.5", "mlp", {}, (1, 28, 28), 79_510, ["flatten", "linear 784->100", "relu", "linear 100->10"]),
    ("001 4", "oneconv", {}, (1, 28, 28), 52_084, ["conv 1->9 5x5", "relu", "flatten", "linear 5184->10"]),
    ("001 5.2", "multilayer-cnn", {}, (1, 28, 28), 8_490, [
        "conv 1->10 5x5", *CONV_RELU_POOL, "conv 10->20 5x5", *CONV_RELU_POOL, "flatten", "linear 320->10"]),
    ("001 5.3", "lenet", {}, (3, 32, 32), 59_386, [
        "conv 3->6 5x5", *CONV_RELU_POOL, "conv 6->16 5x5", *CONV_RELU_POOL, "conv 16->120 5x5", "relu",
        "flatten", "linear 120->64", "relu", "linear 64->10"]),
    ("002", "alexnet", {}, (1, 224, 224), 58_299_082, [
        "conv 1->96 11x11 s4 p2", "relu", "maxpool 3 s2", "conv 96->256 5x5 p2", "relu", "maxpool 3 s2",
        "conv 256->384 3x3 p1", "relu", "conv 384->384 3x3 p1", "relu", "conv 384->256 3x3 p1", "relu", "maxpool 3 s2",
        "linear 9216->4096", "relu", "dropout 0.5", "linear 4096->4096", "relu", "dropout 0.5", "linear 4096->10"]),
    ("003", "mlp", {"hidden": 256}, (1, 28, 28), 203_530, ["flatten", "linear 784->256", "relu", "linear 256->10"]),
    ("003", "lenet5", {}, (1, 32, 32), 61_706, [
        "conv 1->6 5x5", *CONV_RELU_POOL, "conv 6->16 5x5", *CONV_RELU_POOL, "flatten",
        "linear 400->120", "relu", "linear 120->84", "relu", "linear 84->10"]),
    # 004: F.relu(F.max_pool2d(conv(x))) (pool, then ReLU as a function: no module), and F.dropout on fc1.
    ("004", "cnn-dropout", {}, (1, 28, 28), 21_840, [
        "conv 1->10 5x5", "maxpool 2", "conv 10->20 5x5", "dropout2d 0.5", "maxpool 2",
        "linear 320->50", "dropout 0.5", "linear 50->10"]),
    ("004 wider", "cnn-dropout", {"conv1": 32, "conv2": 64, "hidden": 100}, (1, 28, 28), 155_606, [
        "conv 1->32 5x5", "maxpool 2", "conv 32->64 5x5", "dropout2d 0.5", "maxpool 2",
        "linear 1024->100", "dropout 0.5", "linear 100->10"]),
]


@pytest.mark.parametrize("tutorial,name,kwargs,shape,params,layers", TUTORIAL_MODELS,
                         ids=[f"{t}-{n}{'-' + ','.join(k) if k else ''}" for t, n, k, *_ in TUTORIAL_MODELS])
def test_tutorial_model_is_the_tutorials(tutorial, name, kwargs, shape, params, layers):
    with torch.device("meta"):  # shapes only: AlexNet's 58 M weights need no initialising to be counted
        model = get_model(name, in_channels=shape[0], num_classes=10, image_size=shape[1], **kwargs)
    assert n_params(model) == params
    assert layer_sequence(model, shape) == layers


def test_cnn_costs_what_tutorial_000s_does():
    """121,514 parameters and 10.41 M mult-adds at 1x28x28 (the fix added block 2's second conv)."""
    stats = summary(get_model("cnn", in_channels=1, num_classes=10, image_size=28), input_size=(1, 1, 28, 28), verbose=0)
    assert stats.total_params == 121_514
    assert round(stats.total_mult_adds / 1e6, 2) == 10.41


@pytest.mark.parametrize("name,size,old_params", [("cnn", 28, 95_882), ("alexnet", 224, 58_299_082)])
def test_old_layout_weights_rebuild_the_old_layout(name, size, old_params):
    """A checkpoint of cnnkit's layout before the fix records no layout: its weights' names say it is layout 1."""
    with torch.device("meta"):
        old = get_model(name, in_channels=1, num_classes=10, image_size=size, layout=1)
        new = get_model(name, in_channels=1, num_classes=10, image_size=size)
        assert n_params(old) == old_params
        assert checkpoint_layout(name, old.state_dict()) == {"layout": 1}
        assert checkpoint_layout(name, new.state_dict()) == {}
        rebuilt = get_model(name, in_channels=1, num_classes=10, image_size=size, **checkpoint_layout(name, old.state_dict()))
    rebuilt.load_state_dict(old.state_dict(), assign=True)  # strict: every weight has its place, of its shape
    assert [name for name, _ in rebuilt.named_parameters()] == [name for name, _ in old.named_parameters()]


def test_old_cnn_weights_compute_what_they_did():
    old = get_model("cnn", in_channels=1, num_classes=10, image_size=28, layout=1).eval()
    rebuilt = get_model("cnn", in_channels=1, num_classes=10, image_size=28, **checkpoint_layout("cnn", old.state_dict())).eval()
    rebuilt.load_state_dict(old.state_dict())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), old(x))


@pytest.mark.parametrize("name,kwargs", [
    ("mlp", {"hidden": 0}), ("mlp", {"hidden": 1.5}), ("mlp", {"hidden": True}), ("mlp", {"hidden": 10**6}),
    ("cnn-dropout", {"conv1": -3}), ("cnn-dropout", {"conv2": "64"}), ("cnn-dropout", {"hidden": 0}),
    ("cnn", {"layout": 3}), ("alexnet", {"layout": 0}),
])
def test_bad_builder_kwargs_are_model_errors(name, kwargs):
    key = next(iter(kwargs))
    with pytest.raises(ModelError, match=key):
        get_model(name, in_channels=1, num_classes=10, image_size=28, **kwargs)


def test_a_checkpoint_of_the_old_cnn_still_evaluates(tiny_run, tmp_path):
    """A real run's checkpoint holding layout 1's weights, as cnnkit wrote them before the fix (no layout in it)."""
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint

    checkpoint = torch.load(tiny_run("cnn") / "best.pt", weights_only=True)
    assert "layout" not in checkpoint["model"]["kwargs"]
    torch.manual_seed(0)
    checkpoint["model"]["state_dict"] = get_model("cnn", in_channels=1, num_classes=10, image_size=28, layout=1).state_dict()
    torch.save(checkpoint, tmp_path / "old-cnn.pt")
    assert n_params(model_from_checkpoint(load_checkpoint(tmp_path / "old-cnn.pt"))) == 95_882
    evaluation = evaluate_checkpoint(tmp_path / "old-cnn.pt", split="test", device="cpu")
    assert evaluation.result.count == 2000  # mnist-sample's test split, whole
