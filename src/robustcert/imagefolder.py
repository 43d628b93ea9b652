"""ImageNet, and any image tree in torchvision's ImageFolder layout, read from its files when needed.

The tree is ``<data_root>/imagenet/train/<class>/<image>`` and ``<data_root>/imagenet/val/<class>/<image>``
(one folder per class, as ``torchvision.datasets.ImageFolder`` reads it: classes are the sorted folder
names, labels their positions). Such a dataset does not fit in memory, so its split is file-backed: the
split file records every image's path (relative to the data root, which it records too), label and size,
the validation images drawn from ``train/``, and a digest of every test image (``val/``); nothing else of
the workflow changes. Loaded, the split's images are :class:`ImageFiles`: indexed like the uint8 arrays
[n, C, H, W] of the in-memory datasets, they read and decode the chosen files with the evaluation
transform (resize to ``resize``, centre crop ``crop``: 256 and 224 for ImageNet), and
:meth:`ImageFiles.training_set` is a torch map-style dataset with the training transform (random
resized crop ``crop``, horizontal flip) for a DataLoader. A file that is missing, has another size than
the split recorded, (for a test image) other bytes, or does not decode is an
:class:`~robustcert.artifacts.ArtifactError` naming it: a changed tree is refused, not silently read.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustcert.artifacts import Array, ArtifactError, NpzFormat

FOLDER = "imagenet"
PARTS = ("train", "val")
# torchvision's (and Cohen et al.'s) ImageNet statistics, the normalisation layer of its models
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
TEST_SIZE = 50_000  # ImageNet's validation set, the test set of the references
_DIGEST_BYTES = 16

FILE_SPLIT = NpzFormat("image_folder_split", {
    "data_root": Array("U", 0), "classes": Array("U", 1), "resize": Array("iu", 0), "crop": Array("iu", 0),
    **{f"{part}_files": Array("S", 1) for part in ("train", "val", "test")},
    **{f"{part}_sizes": Array("iu", 1) for part in ("train", "val", "test")},
    **{f"y_{part}": Array("iu", 1) for part in ("train", "val", "test")},
    "test_digests": Array("S", 1), "train_index": Array("iu", 1), "val_index": Array("iu", 1),
})


def is_file_split(path: str | Path) -> bool:
    """Whether the split file at ``path`` is file-backed (written by :func:`save_file_split`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "train_files.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False  # the in-memory reader reports what is wrong with it


@dataclass(frozen=True)
class ImageFiles:
    """Images stored as files under ``data_root`` (paths relative to it), read when indexed.

    ``images[i]`` is the uint8 array [3, crop, crop] of image i after the evaluation transform, and
    ``images[index]`` (an index array or a slice) their stack [n, 3, crop, crop], as an array's would be.
    ``digests`` (optional): each file's recorded digest, checked at every read.
    """

    data_root: Path
    files: np.ndarray
    sizes: np.ndarray
    crop: int
    resize: int
    digests: np.ndarray | None = None

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """[n, 3, crop, crop], as the array of these images would have."""
        return (len(self.files), 3, self.crop, self.crop)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._eval_array(int(index))
        chosen = np.arange(len(self.files))[index]
        if not len(chosen):
            return np.zeros((0, *self.shape[1:]), np.uint8)
        return np.stack([self._eval_array(int(i)) for i in chosen])

    def path(self, i: int) -> Path:
        """The file of image i."""
        return self.data_root / self.files[i].decode()

    def open(self, i: int) -> Any:
        """Image i as an RGB PIL image, its file checked against the split's record."""
        from PIL import Image

        path = self.path(i)
        data = self._checked_bytes(i, path)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ArtifactError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None

    def check(self) -> None:
        """Refuse the files if any is missing or has another size than the split recorded (a changed tree)."""
        problems = []
        for i in range(len(self.files)):
            try:
                size = os.stat(self.path(i)).st_size
            except FileNotFoundError:
                problems.append(f"{self.path(i)} is missing")
                continue
            if size != self.sizes[i]:
                problems.append(f"{self.path(i)} has {size} bytes, the split recorded {self.sizes[i]}")
        if problems:
            raise ArtifactError(f"the image tree under {self.data_root} changed since its split was drawn "
                                f"({len(problems)} files): {'; '.join(problems[:3])}. Rerun the split "
                                "(snakemake -R split_dataset) to use the tree as it is now.")

    def training_set(self, labels: np.ndarray) -> TrainingImages:
        """A torch map-style dataset of (image tensor in [0, 1], label) under the training transform."""
        return TrainingImages(self, np.asarray(labels, np.int64))

    def _checked_bytes(self, i: int, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{path}: missing (the image tree changed since its split was drawn: rerun "
                                "the split, snakemake -R split_dataset)") from None
        if len(data) != self.sizes[i]:
            raise ArtifactError(f"{path}: {len(data)} bytes, the split recorded {self.sizes[i]} (the image "
                                "tree changed since its split was drawn: rerun the split, snakemake -R split_dataset)")
        if self.digests is not None and digest(data) != self.digests[i]:
            raise ArtifactError(f"{path}: its content is not what the split recorded (the image tree changed "
                                "since its split was drawn: rerun the split, snakemake -R split_dataset)")
        return data

    def _eval_array(self, i: int) -> np.ndarray:
        """Image i after the evaluation transform, uint8 [3, crop, crop] (ToTensor's values × 255)."""
        image = eval_transform(self.resize, self.crop)(self.open(i))
        return np.ascontiguousarray(np.asarray(image, np.uint8).transpose(2, 0, 1))


@dataclass(frozen=True)
class TrainingImages:
    """(image, label) pairs under the training transform: RandomResizedCrop(crop), RandomHorizontalFlip,
    ToTensor (Cohen et al.'s ImageNet training); the random draws are torch's (seed the DataLoader)."""

    images: ImageFiles
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from robustcert.tv import torchvision

        transforms = torchvision.transforms
        transform = transforms.Compose([transforms.RandomResizedCrop(self.images.crop),
                                        transforms.RandomHorizontalFlip(), transforms.ToTensor()])
        return transform(self.images.open(i)), int(self.labels[i])


def eval_transform(resize: int, crop: int) -> Any:
    """Resize(resize) then CenterCrop(crop), on PIL images (the references' ImageNet test transform)."""
    from robustcert.tv import torchvision

    transforms = torchvision.transforms
    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])


def digest(data: bytes) -> bytes:
    """The digest of a file's bytes that the split records (BLAKE2b, 16 bytes, hex)."""
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest().encode()


def transform_sizes(spec: Mapping[str, Any]) -> tuple[int, int]:
    """(resize, crop) of a dataset entry (ImageNet's 256 and 224 unless it sets them)."""
    return int(spec.get("resize", RESIZE)), int(spec.get("crop", CROP))


def tree_of(data_root: str | Path) -> Path:
    """The ImageFolder tree under a data root."""
    return Path(data_root) / FOLDER


def list_tree(data_root: str | Path) -> tuple[list[str], dict[str, tuple[list[str], np.ndarray]]]:
    """The classes (sorted folder names) and, of ``train`` and ``val``, the image paths (relative to the
    data root) and labels, as torchvision's ImageFolder lists them; a missing folder or a ``val/`` with
    other classes than ``train/`` is refused naming it."""
    from robustcert.tv import torchvision

    root = Path(data_root)
    missing = [str(tree_of(root) / part) for part in PARTS if not (tree_of(root) / part).is_dir()]
    if missing:
        raise FileNotFoundError(f"dataset source 'imagenet' not found: missing folder(s) {', '.join(missing)}. "
                                f"Expected the ImageFolder layout {tree_of(root)}/train/<class>/<image> and "
                                f"{tree_of(root)}/val/<class>/<image> (data_root {root}).")
    listed, classes = {}, {}
    for part in PARTS:
        try:
            folder = torchvision.datasets.ImageFolder(str(tree_of(root) / part))
        except (FileNotFoundError, RuntimeError) as err:  # no class folder, or a class folder without images
            raise FileNotFoundError(f"{tree_of(root) / part}: not an ImageFolder tree ({err})") from None
        classes[part] = folder.classes
        listed[part] = ([os.path.relpath(path, root) for path, _ in folder.samples],
                        np.array([label for _, label in folder.samples], np.int64))
    if classes["val"] != classes["train"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))
        raise ArtifactError(f"{tree_of(root)}: val/ and train/ must hold the same class folders; "
                            f"{len(only)} are in one only: {only[:5]}")
    return classes["train"], listed


def save_file_split(path: str | Path, data_root: str | Path, classes: list[str], files: Mapping[str, list[str]],
                    labels: Mapping[str, np.ndarray], indices: Mapping[str, np.ndarray], resize: int,
                    crop: int) -> None:
    """Write a file-backed split: for ``train``, ``val`` and ``test`` the image paths (relative to
    ``data_root``) and labels, every file's size, a digest of every test image, and the
    ``train_index``/``val_index`` of ``indices`` (positions in ``train/``)."""
    root, arrays = Path(data_root), {}
    for part in ("train", "val", "test"):
        arrays[f"{part}_files"] = np.array([f.encode() for f in files[part]], dtype=bytes)
        arrays[f"{part}_sizes"] = np.array([os.stat(root / f).st_size for f in files[part]], np.int64)
        arrays[f"y_{part}"] = np.asarray(labels[part], np.int64)
    arrays["test_digests"] = np.array([digest((root / f).read_bytes()) for f in files["test"]], dtype=bytes)
    FILE_SPLIT.write(path, data_root=str(data_root), classes=np.array(classes, str), resize=resize, crop=crop,
                     train_index=indices["train"], val_index=indices["val"], **arrays)


def load_file_split(path: str | Path) -> dict[str, Any]:
    """The fields of a :class:`robustcert.data.Split` from a file-backed split: its images as
    :class:`ImageFiles`; a data root that is gone is an :class:`ArtifactError` naming it."""
    arrays = FILE_SPLIT.read(path)
    root = Path(str(arrays["data_root"]))
    if not tree_of(root).is_dir():
        raise ArtifactError(f"{path}: its images were under {tree_of(root)}, which does not exist (data_root "
                            f"moved? set data_root and rerun the split)")
    resize, crop = int(arrays["resize"]), int(arrays["crop"])
    fields: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        files, sizes, labels = arrays[f"{part}_files"], arrays[f"{part}_sizes"], arrays[f"y_{part}"]
        if not len(files) == len(sizes) == len(labels):
            raise ArtifactError(f"{path}: {part}: {len(files)} files, {len(sizes)} sizes and {len(labels)} labels")
        if len(labels) and labels.max() >= len(arrays["classes"]):
            raise ArtifactError(f"{path}: {part}: labels up to {labels.max()}, but {len(arrays['classes'])} classes")
        digests = arrays["test_digests"] if part == "test" else None
        fields[f"x_{part}"] = ImageFiles(root, files, sizes, crop, resize, digests)
        fields[f"y_{part}"] = labels
    fields.update(train_index=arrays["train_index"], val_index=arrays["val_index"],
                  num_classes=len(arrays["classes"]))
    return fields
