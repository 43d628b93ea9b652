"""The base models of randomized smoothing: CIFAR ResNets and the LeNet-style CNN."""

from __future__ import annotations

import pytest
import torch

from robustcert.models import build_model
from robustcert.models.lenet import LeNet
from robustcert.models.resnet import cifar_resnet


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (110, 1.73)])
def test_resnet_parameter_counts_match_the_paper(depth: int, millions: float) -> None:
    assert parameters(cifar_resnet(depth, 3, 10)) / 1e6 == pytest.approx(millions, abs=0.01)


@pytest.mark.parametrize("depth", [0, 2, 19, 21, 111])
def test_resnet_depth_must_be_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(depth, 3, 10)


@pytest.mark.parametrize(
    ("arch", "channels", "size"),
    [("resnet20", 3, 32), ("resnet110", 3, 32), ("resnet20", 1, 8), ("lenet", 1, 28), ("lenet", 3, 32), ("lenet", 1, 8)],
)
def test_models_map_images_to_class_scores(arch: str, channels: int, size: int) -> None:
    model = build_model(arch, channels, 10, size, [0.5] * channels, [0.25] * channels).eval()
    with torch.inference_mode():
        assert model(torch.rand(2, channels, size, size)).shape == (2, 10)


def test_lenet_is_the_classic_network_on_mnist() -> None:
    # conv 1·20·5·5 + 20, conv 20·50·5·5 + 50, linear 800·500 + 500, linear 500·10 + 10
    assert parameters(LeNet(1, 10, 28)) == 520 + 25_050 + 400_500 + 5_010


def test_lenet_refuses_images_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        LeNet(1, 10, 3)

