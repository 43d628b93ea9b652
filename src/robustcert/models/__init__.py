"""Architectures, by name. Every model starts with its own normalisation layer.

``build_model(arch, in_channels, num_classes, image_size, mean, std)`` returns
``Sequential(Normalize(mean, std), body)``: inputs are images in [0, 1] pixel space, so noise and
triggers are applied before normalisation, and each partition's model carries its own statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustcert.models.nin import NetworkInNetwork
from robustcert.models.normalize import Normalize
from robustcert.models.small import SmallCNN

BodyFactory = Callable[[int, int, int], nn.Module]


def _resnet(depth: int) -> BodyFactory:
    def make(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        from robustcert.models.resnet import cifar_resnet

        return cifar_resnet(depth, in_channels, num_classes)

    return make


def _lenet(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    from robustcert.models.lenet import LeNet

    return LeNet(in_channels, num_classes, image_size)


ARCHITECTURES: dict[str, BodyFactory] = {
    "small_cnn": SmallCNN,
    "nin": NetworkInNetwork,
    "lenet": _lenet,
    "resnet20": _resnet(20),
    "resnet110": _resnet(110),
}


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Sequential:
    """The named architecture behind a normalisation layer with per-channel ``mean``/``std``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    body = ARCHITECTURES[arch](in_channels, num_classes, image_size)
    return nn.Sequential(Normalize(mean, std), body)


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs of the model's last linear layer for ``x`` [n, features]: its penultimate-layer features.

    Read with a forward hook, so it works for every architecture of :data:`ARCHITECTURES`.
    """
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no linear layer to read features from")
    captured: list[torch.Tensor] = []
    handle = linear[-1].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)
