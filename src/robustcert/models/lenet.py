"""The LeNet-style CNN used for MNIST in the smoothing experiments."""

from __future__ import annotations

from torch import nn

# Valid (unpadded) 5×5 convolutions need images of at least 16 px to leave a 1×1 map.
MIN_UNPADDED_SIZE = 16


class LeNet(nn.Sequential):
    """conv5·20 – ReLU – maxpool2 – conv5·50 – ReLU – maxpool2 – linear·500 – ReLU – linear·C.

    Images of 16 px and more (MNIST 28, CIFAR 32) use valid convolutions as the classic network
    does; smaller ones (the 8×8 digits) pad each convolution by 2 so the map keeps its size.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        padding = 0 if image_size >= MIN_UNPADDED_SIZE else 2
        side = image_size
        for _ in range(2):
            side = (side + 2 * padding - 4) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for LeNet (at least 4 px)")
        super().__init__(
            nn.Conv2d(in_channels, 20, 5, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(50 * side * side, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, num_classes),
        )
