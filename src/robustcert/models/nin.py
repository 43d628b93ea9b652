"""Network-in-Network, the base model of DPA (docs/methods.md §2; ref: alevine0/DPA)."""

from __future__ import annotations

from torch import nn


def _block(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class NetworkInNetwork(nn.Sequential):
    """Three stages of conv–BN–ReLU blocks, global average pooling, one linear layer.

    Stage 1: 5×5·192, 1×1·160, 1×1·96, maxpool 3/2; stage 2: 5×5·192, 1×1·192, 1×1·192,
    avgpool 3/2; stage 3: 3×3·192, 1×1·192, 1×1·192; global average pool; linear.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__(
            *_block(in_channels, 192, 5),
            *_block(192, 160, 1),
            *_block(160, 96, 1),
            nn.MaxPool2d(3, stride=2, padding=1),
            *_block(96, 192, 5),
            *_block(192, 192, 1),
            *_block(192, 192, 1),
            nn.AvgPool2d(3, stride=2, padding=1),
            *_block(192, 192, 3),
            *_block(192, 192, 1),
            *_block(192, 192, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(192, num_classes),
        )
