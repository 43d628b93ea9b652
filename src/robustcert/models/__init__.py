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


def _madry_resnet(depth: int) -> BodyFactory:
    def make(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        from robustcert.models.resnet import ResNet

        return ResNet(depth, in_channels, num_classes)

    return make


def _torchvision_resnet50(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision's ResNet-50 (ImageNet's: 7×7 stem, max pooling, adaptive average pooling at the end),
    freshly initialised; the network of Cohen et al.'s ImageNet models (``resnet50`` in their checkpoints)."""
    from robustcert.tv import torchvision

    if in_channels != 3:
        raise ValueError(f"imagenet_resnet50 takes RGB images (3 channels), got {in_channels}")
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def _lenet(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    from robustcert.models.lenet import LeNet

    return LeNet(in_channels, num_classes, image_size)


ARCHITECTURES: dict[str, BodyFactory] = {
    "small_cnn": SmallCNN,
    "nin": NetworkInNetwork,
    "lenet": _lenet,
    "resnet20": _resnet(20),
    "resnet110": _resnet(110),
    "resnet18": _madry_resnet(18),
    "resnet50": _madry_resnet(50),
    "imagenet_resnet50": _torchvision_resnet50,
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
    return _captured(model, linear[-1], x, inputs=True)


def layer_features(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """The flattened output [n, features] of the submodule named ``layer`` for ``x`` (its full dotted
    name, or the unique name it ends with: ``layer4`` of the ResNets); the penultimate-layer features
    (:func:`penultimate_features`) when ``layer`` is None."""
    if layer is None:
        return penultimate_features(model, x)
    return _captured(model, find_layer(model, layer), x, inputs=False)


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule named ``layer`` (its full dotted name, or the unique name it ends with); a
    ValueError naming the layers there are when there is none or several."""
    named = dict(model.named_modules())
    matches = [name for name in named if name == layer or name.endswith(f".{layer}")]
    if len(matches) != 1:
        found = "no module" if not matches else f"several modules ({matches})"
        names = [name for name in named if name]
        raise ValueError(f"layer {layer!r}: {found} of {type(model).__name__} has that name (its modules: "
                         f"{', '.join(names[:24])}{', …' if len(names) > 24 else ''})")
    return named[matches[0]]


def _captured(model: nn.Module, module: nn.Module, x: torch.Tensor, inputs: bool) -> torch.Tensor:
    """The input (or output) of ``module`` during ``model(x)``, flattened per example."""
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        captured.append(args[0] if inputs else output)

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)
