"""A small CNN for the digits demo (8×8) and other small images."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Sequential):
    """conv3·16 – ReLU – conv3·32 – ReLU – maxpool2 – linear·64 – ReLU – linear·C."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        pooled = image_size // 2
        super().__init__(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * pooled * pooled, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )
