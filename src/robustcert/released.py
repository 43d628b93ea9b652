"""Base classifiers trained elsewhere: Cohen et al.'s released checkpoints, mapped onto our models.

Their layout (locuslab/smoothing ``code/train.py``): ``checkpoint.pth.tar``, a dict with ``arch``
(``cifar_resnet20``, ``cifar_resnet110``, ``imagenet32_resnet110`` or ``resnet50``), ``epoch``,
``state_dict`` and ``optimizer``. The model is ``Sequential(NormalizeLayer, network)``: the
normalisation layer keeps its statistics as plain attributes (no keys in the state dict), so
``state_dict`` holds the network's keys under ``1.``, and the statistics are those of the dataset
(their ``datasets.py``). The CIFAR ResNets are bearpaw's (``conv1 bn1 layer1..3 fc``, basic blocks
``conv1 bn1 conv2 bn2 downsample``), the same network as our ``resnet20`` / ``resnet110`` with other
names: :func:`cifar_resnet_keys` pairs them. ImageNet's ``resnet50`` is torchvision's ResNet-50 under
``DataParallel`` (keys ``1.module.conv1.weight`` …): our ``imagenet_resnet50`` with the ``module.``
dropped (:func:`resnet50_keys`), behind the ImageNet statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from robustcert.artifacts import ArtifactError, load_weights_only
from robustcert.imagefolder import MEAN, STD

# arch name in a released checkpoint → (our architecture, depth)
RELEASED_ARCHS = {"cifar_resnet20": ("resnet20", 20), "cifar_resnet110": ("resnet110", 110),
                  "resnet50": ("imagenet_resnet50", 50)}
# the statistics of their NormalizeLayer for CIFAR-10 and ImageNet (code/datasets.py)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
STATISTICS = {"cifar_resnet20": (CIFAR10_MEAN, CIFAR10_STD), "cifar_resnet110": (CIFAR10_MEAN, CIFAR10_STD),
              "resnet50": (MEAN, STD)}
STAGES = 3
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def cifar_resnet_keys(depth: int) -> dict[str, str]:
    """Our state-dict key of every key of their CIFAR ResNet-``depth`` (both without the
    normalisation prefix: ours under ``1.``, theirs under ``1.``)."""
    n = (depth - 2) // 6
    pairs = {"conv1.weight": "0.weight", **{f"bn1.{k}": f"1.{k}" for k in BN_KEYS}}
    for stage in range(STAGES):
        for block in range(n):
            theirs, ours = f"layer{stage + 1}.{block}", f"{3 + stage * n + block}"
            pairs[f"{theirs}.conv1.weight"] = f"{ours}.body.0.weight"
            pairs[f"{theirs}.conv2.weight"] = f"{ours}.body.3.weight"
            for k in BN_KEYS:
                pairs[f"{theirs}.bn1.{k}"] = f"{ours}.body.1.{k}"
                pairs[f"{theirs}.bn2.{k}"] = f"{ours}.body.4.{k}"
            if stage > 0 and block == 0:
                pairs[f"{theirs}.downsample.0.weight"] = f"{ours}.shortcut.0.weight"
                for k in BN_KEYS:
                    pairs[f"{theirs}.downsample.1.{k}"] = f"{ours}.shortcut.1.{k}"
    fc = 3 + STAGES * n + 2  # after the pooling and the flattening
    pairs.update({"fc.weight": f"{fc}.weight", "fc.bias": f"{fc}.bias"})
    return pairs


def resnet50_keys() -> dict[str, str]:
    """Our key (``imagenet_resnet50``, torchvision's names) of every key of their ImageNet ResNet-50
    (torchvision's under ``DataParallel``: ``module.`` first), both without the normalisation prefix."""
    from robustcert.models import build_model

    body = build_model("imagenet_resnet50", 3, 1000, 224, MEAN, STD)[1]
    return {f"module.{key}": key for key in body.state_dict()}


def key_pairs(arch: str) -> dict[str, str]:
    """Our key of every key of a released architecture's network."""
    depth = RELEASED_ARCHS[arch][1]
    return resnet50_keys() if arch == "resnet50" else cifar_resnet_keys(depth)


def load_released(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Our architecture name and our model's full state dict (normalisation included) for a released
    checkpoint; anything else is an :class:`ArtifactError` that names the file and what is wrong."""
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or not {"arch", "state_dict"} <= set(payload):
        raise ArtifactError(f"{path}: not a released checkpoint (expected a dict with 'arch' and 'state_dict')")
    arch = payload["arch"]
    if arch not in RELEASED_ARCHS:
        raise ArtifactError(f"{path}: released architecture {arch!r} is not supported (supported: "
                            f"{sorted(RELEASED_ARCHS)})")
    ours = RELEASED_ARCHS[arch][0]
    theirs = {key.removeprefix("1."): value for key, value in payload["state_dict"].items()}
    pairs = key_pairs(arch)
    missing, unexpected = sorted(set(pairs) - set(theirs)), sorted(set(theirs) - set(pairs))
    if missing or unexpected:
        raise ArtifactError(f"{path}: state_dict does not match {arch}: {len(missing)} keys missing "
                            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
    state = {f"1.{pairs[key]}": value for key, value in theirs.items()}
    mean, std = STATISTICS[arch]
    state["0.mean"] = torch.tensor(mean).reshape(1, -1, 1, 1)
    state["0.std"] = torch.tensor(std).reshape(1, -1, 1, 1)
    return ours, state


def as_released(arch: str, state: Mapping[str, torch.Tensor], epoch: int = 90) -> dict:
    """A checkpoint in the released layout for one of our CIFAR ResNets or our ImageNet ResNet-50 (the
    inverse of :func:`load_released`, for tests and for sharing our models with users of their code)."""
    theirs_arch = {ours: name for name, (ours, _) in RELEASED_ARCHS.items()}[arch]
    ours_to_theirs = {ours: theirs for theirs, ours in key_pairs(theirs_arch).items()}
    state_dict = {f"1.{ours_to_theirs[key.removeprefix('1.')]}": value for key, value in state.items()
                  if key.startswith("1.")}
    return {"arch": theirs_arch, "epoch": epoch, "state_dict": state_dict, "optimizer": {}}
