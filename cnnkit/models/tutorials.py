"""The seed tutorials' models: perceptron and MLP, small CNNs, LeNet and LeNet-5.

The MNIST-era models adapt their first linear layer to the input size, so the
same name works at 28x28, 32x32 or 28x40 (`image_size` is one side or (H, W)).
LeNet and LeNet-5 are defined for 32x32.
All of them flatten with `flatten`, never `.view`, so channels_last works.
"""

from __future__ import annotations

from torch import nn

from cnnkit.models.layouts import CURRENT_LAYOUT, layout as check_layout, width
from cnnkit.models.registry import register
from cnnkit.sizes import SizeLike, pair


def conv_out(size: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Output side of a convolution or pooling: (W - F + 2P) / S + 1."""
    return (size - kernel + 2 * padding) // stride + 1


def cells(image_size: SizeLike, *layers: tuple[int, ...]) -> int:
    """Positions (H x W) left after `layers`, each (kernel[, padding[, stride]]) applied to both sides."""
    height, width = pair(image_size)
    for layer in layers:
        height, width = conv_out(height, *layer), conv_out(width, *layer)
    return height * width


# Two 5x5 convs, each followed by a 2x2 max-pool of stride 2: tutorial 001's and 004's CNNs.
CONV_POOL_TWICE = ((5,), (2, 0, 2), (5,), (2, 0, 2))


@register("perceptron", "Flatten + Linear (784->10 on MNIST)", default_size=28, head="1")
def perceptron(in_channels: int, num_classes: int, image_size: SizeLike) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * cells(image_size), num_classes))


@register("mlp", "multilayer perceptron 784->100->ReLU->10 (hidden=256: tutorial 003's)", default_size=28, head="3")
def mlp(in_channels: int, num_classes: int, image_size: SizeLike, hidden: int = 100) -> nn.Module:
    hidden = width("mlp", "hidden", hidden)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * cells(image_size), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@register("oneconv", "one Conv2d(9 filters, 5x5) + Linear", default_size=28, head="3")
def oneconv(in_channels: int, num_classes: int, image_size: SizeLike) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 9, kernel_size=5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(9 * cells(image_size, (5,)), num_classes),
    )


@register("multilayer-cnn", "Conv(10,5x5) pool Conv(20,5x5) pool Linear(320->10)", default_size=28, head="7")
def multilayer_cnn(in_channels: int, num_classes: int, image_size: SizeLike) -> nn.Module:
    return nn.Sequential(
        # Tutorial 001's order, pool(relu(conv)); the same layer indices (and weights' names) as before, when
        # cnnkit pooled first: max-pool and ReLU commute, so old checkpoints compute exactly what they did.
        nn.Conv2d(in_channels, 10, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(10, 20, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(20 * cells(image_size, *CONV_POOL_TWICE), num_classes),
    )


@register("cnn", "tutorial 000's MNIST CNN: 5x5 convs 16 | 32, 32 | 64 with padding 2, Linear(64*7*7->10)",
          default_size=28, head="11")
def cnn(in_channels: int, num_classes: int, image_size: SizeLike, layout: int = CURRENT_LAYOUT) -> nn.Module:
    """Tutorial 000's model (layout 2); layout 1 lacks block 2's second conv (cnnkit's before the fix)."""
    block2 = [nn.Conv2d(16, 32, kernel_size=5, padding=2), nn.ReLU()]
    if check_layout("cnn", layout) == 2:
        block2 += [nn.Conv2d(32, 32, kernel_size=5, padding=2), nn.ReLU()]
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        *block2,
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * cells(image_size, (2, 0, 2), (2, 0, 2)), num_classes),  # the padded convs keep the size
    )


class CnnDropout(nn.Module):
    """PyTorch's classic MNIST example (tutorial 004): two convs, Dropout2d, Linear 320->50->10.

    conv1=32, conv2=64, hidden=100 is the tutorial's wider variant (Linear 1024->100->10).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: SizeLike, conv1: int = 10, conv2: int = 20,
                 hidden: int = 50):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, conv1, kernel_size=5)
        self.conv2 = nn.Conv2d(conv1, conv2, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(conv2 * cells(image_size, *CONV_POOL_TWICE), hidden)
        self.dropout = nn.Dropout()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.pool(self.conv1(x)).relu()
        x = self.pool(self.conv2_drop(self.conv2(x))).relu()
        x = self.fc1(x.flatten(1)).relu()
        return self.fc2(self.dropout(x))


@register("cnn-dropout", "Conv 10/20 5x5, Dropout2d, Linear 320->50->10 (conv1=32,conv2=64,hidden=100: wider)",
          default_size=28, head="fc2")
def cnn_dropout(in_channels: int, num_classes: int, image_size: SizeLike, conv1: int = 10, conv2: int = 20,
                hidden: int = 50) -> nn.Module:
    return CnnDropout(in_channels, num_classes, image_size, width("cnn-dropout", "conv1", conv1),
                      width("cnn-dropout", "conv2", conv2), width("cnn-dropout", "hidden", hidden))


@register("lenet", "CIFAR LeNet: Conv 6/16/120 5x5, MaxPool, Linear 120->64->10", native_size=32, head="11")
def lenet(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 120, kernel_size=5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(120, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@register("lenet5", "classic LeNet-5: Conv 6/16 5x5, Linear 400->120->84->10", native_size=32, head="11")
def lenet5(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
