"""The base models of randomized smoothing: CIFAR ResNets and the LeNet-style CNN."""

from __future__ import annotations

import pytest
import torch

from robustcert.models import build_model
from robustcert.models.lenet import LeNet, MaxPool2x2
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



@pytest.mark.parametrize("shape", [(3, 20, 24, 24), (2, 4, 7, 9), (1, 1, 2, 2)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_maxpool2x2_equals_torch_maxpool(shape: tuple[int, ...], memory_format: torch.memory_format) -> None:
    x = torch.randn(shape).contiguous(memory_format=memory_format)
    assert torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))


def test_lenet_pools_before_relu_with_the_classic_function() -> None:
    """Pool-then-ReLU equals the classic ReLU-then-pool order, value for value."""
    torch.manual_seed(0)
    lenet = LeNet(1, 10, 28).eval()
    conv1, _, _, conv2, _, _, flatten, fc1, relu, fc2 = lenet
    pool, relu_ = torch.nn.MaxPool2d(2), torch.nn.ReLU()
    classic = torch.nn.Sequential(conv1, relu_, pool, conv2, relu_, pool, flatten, fc1, relu, fc2)
    x = torch.rand(8, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(lenet(x), classic(x))
