"""AlexNet as tutorial 002 builds it (96/256/384/384/256 filters), for any input channels.

The classifier is tutorial 002's: Linear -> ReLU -> Dropout(0.5), twice, then Linear, on the flattened
256x6x6 features of a 224x224 input, with no adaptive pool (layout 2). Layout 1, cnnkit's before it,
put Dropout before each Linear and an AdaptiveAvgPool2d(6) in front (same parameters); checkpoints of it
still load (see layouts.py). With ImageNet weights, cnnkit uses torchvision's AlexNet instead
(64/192/384/256/256, the layout those weights were trained on; see backbones.py), so finetune and
predict keep torchvision's architecture.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import AlexNet_Weights

from cnnkit.models.layouts import CURRENT_LAYOUT, layout as check_layout
from cnnkit.models.registry import register
from cnnkit.models.tutorials import cells
from cnnkit.sizes import SizeLike


class AlexNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: SizeLike = 224, dropout: float = 0.5,
                 layout: int = CURRENT_LAYOUT):
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
        if check_layout("alexnet", layout) == 1:
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
            return
        self.avgpool = None
        # 11/4 p2 conv, then three 3/2 pools (the 5x5 p2 and 3x3 p1 convs keep the size): 6x6 at 224x224.
        positions = cells(image_size, (11, 2, 4), (3, 0, 2), (3, 0, 2), (3, 0, 2))
        self.classifier = nn.Sequential(
            nn.Linear(256 * positions, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return self.classifier(x.flatten(1))


@register(
    "alexnet",
    "tutorial 002's AlexNet 96/256/384/384/256, Linear-ReLU-Dropout(0.5) x2, 224x224 input",
    native_size=224,
    head="classifier.6",
    weights=AlexNet_Weights.IMAGENET1K_V1,
)
def alexnet(in_channels: int, num_classes: int, image_size: SizeLike, layout: int = CURRENT_LAYOUT) -> nn.Module:
    return AlexNet(in_channels, num_classes, image_size, layout=layout)
