"""The seed tutorials' models: perceptron and MLP, small CNNs, LeNet and LeNet-5.

The MNIST-era models adapt their first linear layer to the input size, so the
same name works at 28x28 and 32x32. LeNet and LeNet-5 are defined for 32x32.
All of them flatten with `flatten`, never `.view`, so channels_last works.
"""

from __future__ import annotations

from torch import nn

from cnnkit.models.registry import register


def conv_out(size: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Output side of a convolution or pooling: (W - F + 2P) / S + 1."""
    return (size - kernel + 2 * padding) // stride + 1


@register("perceptron", "Flatten + Linear (784->10 on MNIST)", default_size=28, head="1")
def perceptron(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))


@register("mlp", "multilayer perceptron 784->100->ReLU->10", default_size=28, head="3")
def mlp(in_channels: int, num_classes: int, image_size: int, hidden: int = 100) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@register("oneconv", "one Conv2d(9 filters, 5x5) + Linear", default_size=28, head="3")
def oneconv(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    side = conv_out(image_size, 5)
    return nn.Sequential(
        nn.Conv2d(in_channels, 9, kernel_size=5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(9 * side * side, num_classes),
    )


@register("multilayer-cnn", "Conv(10,5x5) pool Conv(20,5x5) pool Linear(320->10)", default_size=28, head="7")
def multilayer_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    side = conv_out(conv_out(conv_out(conv_out(image_size, 5), 2, stride=2), 5), 2, stride=2)
    return nn.Sequential(
        nn.Conv2d(in_channels, 10, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(10, 20, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(20 * side * side, num_classes),
    )


@register("cnn", "5x5 convs 16, 32+32, 64 with padding 2, Linear(64*7*7->10)", default_size=28, head="11")
def cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    side = image_size // 2 // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv2d(32, 32, 5, 1, 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * side * side, num_classes),
    )


class CnnDropout(nn.Module):
    """PyTorch's classic MNIST example: two convs, Dropout2d, Linear 320->50->10."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int):
        super().__init__()
        side = conv_out(conv_out(conv_out(conv_out(image_size, 5), 2, stride=2), 5), 2, stride=2)
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(20 * side * side, 50)
        self.dropout = nn.Dropout()
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x):
        x = self.pool(self.conv1(x)).relu()
        x = self.pool(self.conv2_drop(self.conv2(x))).relu()
        x = self.fc1(x.flatten(1)).relu()
        return self.fc2(self.dropout(x))


@register("cnn-dropout", "Conv 10/20 5x5, Dropout2d, Linear 320->50->10", default_size=28, head="fc2")
def cnn_dropout(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return CnnDropout(in_channels, num_classes, image_size)


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
