"""The split stage (rules/split.smk): each dataset's fixed train/validation/test split, drawn with the
config's seed and shared by every replicate; or, for a dataset with ``replicate_split``, one split per
replicate drawn with its seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustcert.config import Config, canonical
from robustcert.workflow import log

SPLIT = "<results>/data/{dataset}/split.npz"
REPLICATE_SPLIT = "<results>/data/{dataset}/seed_{seed}/split.npz"
# what chooses the split file, not what is in it
PLAN_KEYS = ("replicate_split",)


def split_of(config: Config, dataset: str, seed: int | str) -> str:
    """The split a replicate (``seed``) of an experiment on ``dataset`` reads."""
    if config["datasets"][dataset]["replicate_split"]:
        return REPLICATE_SPLIT.format(dataset=dataset, seed=seed)
    return SPLIT.format(dataset=dataset)


def dataset_params(config: Config, wildcards: Any) -> dict[str, Any]:
    """The dataset entry the split reads (not which replicates share it)."""
    entry = config["datasets"][wildcards.dataset]
    return canonical({key: value for key, value in entry.items() if key not in PLAN_KEYS})


def split_dataset(output: str, spec: Mapping[str, Any], data_root: str, seed: int) -> None:
    """Load a dataset and write its fixed train/validation/test split (of some classes, relabelled, when
the entry lists ``classes``); of a file-backed source, the split that records its files."""
    from robustcert import data

    if data.source_of(spec).file_backed:
        split = data.split_image_folder(output, data_root, spec, seed)
        log.info("%s (file-backed, under %s): %d train, %d validation, %d test images of shape %s, %d classes",
                 spec["source"], data_root, len(split.y_train), len(split.y_val), len(split.y_test),
                 split.image_shape, split.num_classes)
        return
    source = data.load_entry(spec, data_root)
    split = data.split_source(source, spec["n_val"], spec["n_test"], seed)
    if spec.get("classes") is not None:
        split = data.restrict_classes(split, list(spec["classes"]))
        log.info("classes %s relabelled 0..%d", spec["classes"], split.num_classes - 1)
    log.info("%s: %d train, %d validation, %d test images of shape %s", spec["source"], len(split.y_train),
             len(split.y_val), len(split.y_test), split.image_shape)
    data.save_split(output, split)
