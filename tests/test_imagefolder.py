"""ImageNet's ImageFolder layout on a tiny tree: listing, transforms, the file-backed split and its checks,
ResNet-50, training from files, and the config checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from formats import write_image_folder

from robustcert import data, imagefolder, train
from robustcert.artifacts import ArtifactError
from robustcert.config import file_source_problems
from robustcert.models import build_model

SPEC = {"source": "imagenet", "n_val": 3, "n_test": 6, "resize": 12, "crop": 8}
SCHEMAS = Path(__file__).parents[1] / "config" / "schemas"


@pytest.fixture
def split_path(tmp_path):
    write_image_folder(tmp_path / "data")
    path = tmp_path / "split.npz"
    data.split_image_folder(path, tmp_path / "data", SPEC, seed=0)
    return path


def test_listing_is_torchvisions_sorted_classes_and_labels(tmp_path):
    from robustcert.tv import torchvision

    write_image_folder(tmp_path)
    classes, listed = imagefolder.list_tree(tmp_path)
    assert classes == ["n01", "n02", "n03"]
    files, labels = listed["train"]
    reference = torchvision.datasets.ImageFolder(str(tmp_path / "imagenet/train"))
    assert [str(tmp_path / f) for f in files] == [p for p, _ in reference.samples]
    assert labels.tolist() == [c for _, c in reference.samples] == [0] * 6 + [1] * 6 + [2] * 6
    assert files[0] == "imagenet/train/n01/n01_0.JPEG"


def test_file_backed_split_round_trip_and_eval_transform(split_path, tmp_path):
    split = data.load_split(split_path)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (15, 3, 6)
    assert split.num_classes == 3 and split.image_shape == (3, 8, 8)
    assert np.array_equal(np.sort(np.concatenate([split.train_index, split.val_index])), np.arange(18))
    # the same draw as an in-memory split of the same pool size
    _, val_index, _ = data.draw_indices(18, 3, None, True, 0)
    assert np.array_equal(split.val_index, val_index)
    assert split.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    images = split.x_test[np.array([0, 5])]
    assert images.dtype == np.uint8 and images.shape == (2, 3, 8, 8)
    assert split.x_test[2:4].shape == (2, 3, 8, 8) and split.x_test[3].shape == (3, 8, 8)
    # colour = class: the eval transform (resize 12, centre crop 8) keeps it
    assert images[0].mean(axis=(1, 2)).argmax() == 0 and images[1].mean(axis=(1, 2)).argmax() == 2
    from PIL import Image

    with Image.open(tmp_path / "data" / split.x_test.files[0].decode()) as raw:
        expected = imagefolder.eval_transform(12, 8)(raw.convert("RGB"))
    assert np.array_equal(images[0], np.asarray(expected).transpose(2, 0, 1))
    assert split.x_train[np.zeros(0, np.int64)].shape == (0, 3, 8, 8)


def test_training_transform_gives_crops_of_the_configured_size(split_path):
    split = data.load_split(split_path)
    dataset = split.x_train.training_set(split.y_train)
    x, y = dataset[0]
    assert len(dataset) == 15 and x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and y == split.y_train[0]


def test_a_changed_or_corrupt_tree_is_refused(split_path, tmp_path):
    split = data.load_split(split_path)
    test_file = split.x_test.path(1)
    test_file.write_bytes(test_file.read_bytes()[:-1] + b"\0")  # same size, other bytes
    with pytest.raises(ArtifactError, match="content is not what the split recorded"):
        split.x_test[1]
    train_file = split.x_train.path(0)
    train_file.write_bytes(b"not an image")
    with pytest.raises(ArtifactError, match="changed since its split was drawn") as err:
        split.x_train.check()
    assert str(train_file) in str(err.value)
    with pytest.raises(ArtifactError, match="bytes, the split recorded"):
        split.x_train[0]
    sizes = split.x_train.sizes.copy()
    sizes[0] = len(b"not an image")
    corrupt = imagefolder.ImageFiles(split.x_train.data_root, split.x_train.files, sizes, 8, 12)
    with pytest.raises(ArtifactError, match="not a readable image"):
        corrupt[0]
    split.x_train.path(2).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        split.x_train[2]


def test_missing_tree_or_wrong_val_size_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing folder\(s\) .*imagenet/train"):
        data.split_image_folder(tmp_path / "split.npz", tmp_path, SPEC, seed=0)
    write_image_folder(tmp_path)
    with pytest.raises(ArtifactError, match="val: 6 images, the dataset entry expects 50000"):
        data.split_image_folder(tmp_path / "split.npz", tmp_path, {**SPEC, "n_test": None}, seed=0)


def test_imagenet_resnet50_is_torchvisions_behind_imagenet_normalisation():
    from robustcert.tv import torchvision

    model = build_model("imagenet_resnet50", 3, 5, 32, imagefolder.MEAN, imagefolder.STD)
    assert torch.allclose(model[0].mean.flatten(), torch.tensor(imagefolder.MEAN))
    reference = torchvision.models.resnet50(weights=None, num_classes=5)
    assert model[1].state_dict().keys() == reference.state_dict().keys()
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_streamed_training_learns_the_tiny_tree_and_is_seeded(split_path):
    split = data.load_split(split_path)
    spec = train.ModelSpec.for_split("small_cnn", split)
    cfg = train.TrainConfig(epochs=8, batch_size=5, lr=0.05, milestones=(), objective="gaussian_augmentation",
                            noise_sigma=0.1, seed=3)
    states = [train.train_streamed(split.x_train.training_set(split.y_train), spec, cfg, torch.device("cpu"), 0,
                                   imagefolder.MEAN, imagefolder.STD) for _ in range(2)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    model = spec.build([0.0] * 3, [1.0] * 3)
    model.load_state_dict(states[0])
    x = torch.from_numpy(split.x_test[:]).float() / 255
    assert (model.eval()(x).argmax(1).numpy() == split.y_test).mean() >= 5 / 6


def test_config_checks_of_a_file_backed_dataset():
    config = {
        "seed": 0,
        "datasets": {"imagenet": {**SPEC, "classes": [0, 1]}, "digits": {"source": "digits", "crop": 4}},
        "attacks": {"none": {"type": "none"}, "flip": {"type": "label_flip"}},
        "defenses": {"smoothing": {"method": "smoothing", "train": {"crop_padding": 4}}, "dpa": {"method": "dpa"}},
        "experiments": [{"datasets": ["imagenet"], "attacks": ["none", "flip"], "defenses": ["smoothing", "dpa"]}],
    }
    problems = "\n".join(file_source_problems(config, SCHEMAS))
    for named in ("datasets.digits.crop: only source imagenet reads it", "datasets.imagenet.classes",
                  "does not feed attacks.flip (type 'label_flip'", "does not feed defenses.dpa (method 'dpa'",
                  "defenses.smoothing.train.crop_padding does not apply"):
        assert named in problems


def test_a_released_resnet50_is_imported_for_a_file_backed_split(split_path, tmp_path):
    from robustcert import released
    from robustcert.workflow.smoothing import import_released

    torch.manual_seed(0)
    ours = build_model("imagenet_resnet50", 3, 3, 8, imagefolder.MEAN, imagefolder.STD)
    torch.save(released.as_released("imagenet_resnet50", ours.state_dict()), tmp_path / "checkpoint.pth.tar")
    import_released(str(tmp_path / "checkpoint.pth.tar"), str(split_path), str(tmp_path / "model.pt"))
    spec, _, (model,) = train.load_shard(str(tmp_path / "model.pt"))
    assert (spec.arch, spec.num_classes, spec.image_size) == ("imagenet_resnet50", 3, 8)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(model(x), ours.eval()(x), atol=1e-5)
