"""The split stage (rules/split.smk): each dataset's fixed train/validation/test split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustcert.config import Config, canonical
from robustcert.workflow import log


def dataset_params(config: Config, wildcards: Any) -> dict[str, Any]:
    """The dataset entry the split reads."""
    return canonical(config["datasets"][wildcards.dataset])


def split_dataset(output: str, spec: Mapping[str, Any], data_root: str, seed: int) -> None:
    """Load a dataset and write its fixed train/validation/test split (of some classes, relabelled, when
the entry lists ``classes``); of a file-backed source, the split that records its files."""
    from robustcert import data

    if spec["source"] in data.FILE_SOURCES:
        split = data.split_image_folder(output, data_root, spec, seed)
        log.info("%s (file-backed, under %s): %d train, %d validation, %d test images of shape %s, %d classes",
                 spec["source"], data_root, len(split.y_train), len(split.y_val), len(split.y_test),
                 split.image_shape, split.num_classes)
        return
    source = data.load_source(spec["source"], data_root, spec["download"], spec["verify_checksums"])
    split = data.split_source(source, spec["n_val"], spec["n_test"], seed)
    if spec.get("classes") is not None:
        split = data.restrict_classes(split, list(spec["classes"]))
        log.info("classes %s relabelled 0..%d", spec["classes"], split.num_classes - 1)
    log.info("%s: %d train, %d validation, %d test images of shape %s", spec["source"], len(split.y_train),
             len(split.y_val), len(split.y_test), split.image_shape)
    data.save_split(output, split)
