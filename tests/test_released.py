"""Certifying base classifiers trained elsewhere: Cohen et al.'s released checkpoint layout."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import snakemake
from formats import write_cifar10
from torch import nn

from robustcert import released, results
from robustcert.artifacts import ArtifactError
from robustcert.models import build_model


class TheirBlock(nn.Module):
    """A basic block with the reference's attribute names (bearpaw's CIFAR ResNet)."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TheirResNet(nn.Module):
    """Their CIFAR ResNet-20, written from the layout their state dicts have."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        inplanes, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(nn.Sequential(*(TheirBlock(inplanes if b == 0 else planes, planes, stride if b == 0 else 1)
                                          for b in range(3))))
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(nn.functional.avg_pool2d(x, 8).flatten(1))


def their_checkpoint(seed: int = 0) -> tuple[dict, nn.Module]:
    """A released-layout checkpoint of a randomly initialised network of theirs (BN statistics moved
    off their defaults so that the mapping of every buffer is tested)."""
    torch.manual_seed(seed)
    network = TheirResNet()
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {f"1.{key}": value for key, value in network.state_dict().items()}
    return {"arch": "cifar_resnet20", "epoch": 90, "state_dict": state, "optimizer": {}}, network.eval()


def test_a_released_checkpoint_maps_onto_our_model_with_the_same_outputs(tmp_path):
    checkpoint, network = their_checkpoint()
    torch.save(checkpoint, tmp_path / "checkpoint.pth.tar")
    arch, state = released.load_released(tmp_path / "checkpoint.pth.tar")
    ours = build_model(arch, 3, 10, 32, [0.0] * 3, [1.0] * 3)
    ours.load_state_dict(state)
    x = torch.rand(4, 3, 32, 32)
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (released.CIFAR10_MEAN, released.CIFAR10_STD))
    assert torch.allclose(ours.eval()(x), network((x - mean) / std), atol=1e-5)
    assert released.as_released(arch, ours.state_dict())["state_dict"].keys() == checkpoint["state_dict"].keys()


def test_their_imagenet_resnet50_maps_onto_ours_behind_the_imagenet_statistics(tmp_path):
    from robustcert.imagefolder import MEAN, STD
    from robustcert.tv import torchvision

    torch.manual_seed(0)
    network = torchvision.models.resnet50(weights=None, num_classes=1000).eval()
    state = {f"1.module.{key}": value for key, value in network.state_dict().items()}  # under DataParallel
    torch.save({"arch": "resnet50", "epoch": 90, "state_dict": state, "optimizer": {}}, tmp_path / "checkpoint.pth.tar")
    arch, ours_state = released.load_released(tmp_path / "checkpoint.pth.tar")
    ours = build_model(arch, 3, 1000, 224, [0.0] * 3, [1.0] * 3)
    ours.load_state_dict(ours_state)
    x = torch.rand(2, 3, 64, 64)
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (MEAN, STD))
    assert arch == "imagenet_resnet50"
    assert torch.allclose(ours.eval()(x), network((x - mean) / std), atol=1e-4)
    assert released.as_released(arch, ours.state_dict())["state_dict"].keys() == state.keys()


def test_foreign_checkpoints_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    checkpoint, _ = their_checkpoint()
    torch.save({**checkpoint, "arch": "imagenet32_resnet110"}, path)
    with pytest.raises(ArtifactError, match="'imagenet32_resnet110' is not supported"):
        released.load_released(path)
    del checkpoint["state_dict"]["1.fc.bias"]
    torch.save(checkpoint, path)
    with pytest.raises(ArtifactError, match=r"checkpoint.pth.tar: state_dict does not match cifar_resnet20: 1 keys missing"):
        released.load_released(path)
    path.write_text("not a checkpoint")
    with pytest.raises(ArtifactError, match="checkpoint.pth.tar: not a readable checkpoint"):
        released.load_released(path)


@pytest.mark.workflow
def test_a_released_checkpoint_is_certified_through_the_workflow_without_training(workflow_copy, tmp_path):
    write_cifar10(tmp_path / "data", per_batch=20, n_test=20)
    for sigma in ("0.25", "0.50"):
        (tmp_path / f"models/noise_{sigma}").mkdir(parents=True)
        torch.save(their_checkpoint(seed=int(float(sigma) * 100))[0], tmp_path / f"models/noise_{sigma}/checkpoint.pth.tar")
    config = {
        "seed": 0, "device": "cpu", "threads": 1, "data_root": str(tmp_path / "data"),
        "datasets": {"cifar10": {"source": "cifar10", "n_val": 10, "verify_checksums": False}},
        "attacks": {"none": {"type": "none"}},
        "defenses": {"cohen": {"method": "smoothing", "arch": "resnet20", "sigmas": [0.25, 0.5], "n0": 10, "n": 100,
                               "alpha": 0.01, "batch_size": 100, "points_per_job": 10, "max": 10,
                               "checkpoint": str(tmp_path / "models/noise_{sigma}/checkpoint.pth.tar")}},
        "experiments": [{"datasets": ["cifar10"], "attacks": ["none"], "defenses": ["cohen"]}],
    }
    (workflow_copy / "released.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(workflow_copy, "--cores", "2", "--configfile", "released.yaml", "--", "results/tables/all.tsv")
    assert "import_released_model" in run.stdout + run.stderr and "train_smoothed" not in run.stdout + run.stderr
    table = results.wide(results.read_rows(workflow_copy / "results/tables/all.tsv"))
    assert sorted(table["sigma_certify"]) == [0.25, 0.5] and (table["n_test"] == 10).all()
    assert set(table["checkpoint"]) == {config["defenses"]["cohen"]["checkpoint"]}

    config["attacks"]["backdoor"] = {"type": "backdoor", "preset": "localised", "target": 7, "fraction": 0.1}
    config["experiments"][0]["attacks"] = ["none", "backdoor"]
    (workflow_copy / "released.yaml").write_text(yaml.safe_dump(config))
    refused = snakemake(workflow_copy, "-n", "--configfile", "released.yaml", check=False)
    assert refused.returncode != 0 and "certifies a released checkpoint" in refused.stdout + refused.stderr
