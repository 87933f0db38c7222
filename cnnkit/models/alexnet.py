"""AlexNet as the paper draws it (96/256/384/384/256 filters), for any input channels.

With ImageNet weights, cnnkit uses torchvision's AlexNet instead (64/192/384/256/256,
the layout those weights were trained on); see backbones.py.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import AlexNet_Weights

from cnnkit.models.registry import register


class AlexNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


@register(
    "alexnet",
    "AlexNet 96/256/384/384/256, dropout 0.5, 224x224 input",
    native_size=224,
    head="classifier.6",
    weights=AlexNet_Weights.IMAGENET1K_V1,
)
def alexnet(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return AlexNet(in_channels, num_classes)
