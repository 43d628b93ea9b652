"""ResNets for small images (He et al. 2016).

- CIFAR ResNets of depth 6n+2, the base models of randomized smoothing (docs/methods.md §1): three stages
  of n basic blocks with 16, 32 and 64 channels, the last two starting with stride 2, then global
  average pooling and one linear layer. A block that changes shape has a 1×1 conv–BN shortcut (as in
  locuslab/smoothing code/archs/cifar_resnet.py).
- ResNet-18 and ResNet-50 as Madry's ``robustness`` library builds them for CIFAR (the models of
  Soremekun et al., docs/methods.md §6): a 3×3 stem of 64 channels, four stages ``layer1``..``layer4`` of
  basic (18) or bottleneck (50) blocks with 64..512 base channels, the last three starting with
  stride 2, global average pooling, ``linear``. The stage names are the layers that backdoor
  detection reads features from.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3–BN–ReLU–conv3–BN plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(depth: int, in_channels: int, num_classes: int) -> nn.Sequential:
    """ResNet-``depth`` for small images; ``depth`` must be 6n+2 (20, 32, 44, 56, 110, …)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    blocks_per_stage = (depth - 2) // 6
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, WIDTHS[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(WIDTHS[0]),
        nn.ReLU(inplace=True),
    ]
    channels = WIDTHS[0]
    for stage, width in enumerate(WIDTHS):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, width, stride))
            channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """conv1–BN–ReLU–conv3–BN–ReLU–conv1 (×4 channels)–BN plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


STAGE_BLOCKS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet-18/50 of the ``robustness`` library's CIFAR models, for any input size (adaptive pooling)."""

    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        block, counts = STAGE_BLOCKS[depth]
        expansion = getattr(block, "expansion", 1)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
            blocks = []
            for i in range(count):
                blocks.append(block(channels, width, 2 if stage > 1 and i == 0 else 1))
                channels = width * expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(self.pool(x).flatten(1))
