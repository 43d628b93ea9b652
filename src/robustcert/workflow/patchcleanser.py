"""PatchCleanser against adversarial patches (rules/patchcleanser.smk; Xiang, Mahloujifar, Mittal 2022):
one ordinary classifier per training (``plain`` cross-entropy, or ``masked``: masking augmentation),
certified on the test points of patch smoothing's selection (``skip``, ``max``, ``test_indices``), sharded
into jobs of ``points_per_job`` and gathered; results rows per training on axis ``patch_size``; its
curves in the patch figure of the dataset (robustcert.workflow.patch).

Each patch side p of ``patch_sizes`` has its own mask set (k per axis), prediction map, double-masking
prediction and certificate. The defense as deployed (``accuracy``, the trigger metrics) is the one of the
largest side, the one masked training trains against.

Certify TSVs (:data:`CERTIFY`, one row per test point, copy and patch side) have the columns ``idx label
triggered patch_size predict certified disagreeing``: ``triggered`` 1 for the triggered copy of a test
point (attacks with a trigger), ``predict`` the double-masking prediction with the mask set of
``patch_size``, ``certified`` 1 iff every one- and two-mask prediction is the label, ``disagreeing`` the
masks whose one-mask prediction is not ``predict``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robustcert.artifacts import Column, TsvFormat
from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.data import expected_test_size, image_shape
from robustcert.masks import check_mask_set
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log, patch
from robustcert.workflow.common import experiments_of, row_keys
from robustcert.workflow.smoothing import certified_points, point_shards

METHOD = "patchcleanser"
CERTIFICATE = "double_masking"
VARIANT = "<results>/patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}"
MODEL = VARIANT + "/model.pt"
SHARD = VARIANT + "/certify/shard_{shard}.tsv"
GATHERED = VARIANT + "/certify.tsv"
ATTACK = VARIANT + "/attack.tsv"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/patchcleanser_{variant}.tsv"
VARIANT_LABEL = r"(plain|masked)_k\d+"
SETTINGS_KEYS = ("k", "patch_sizes", "mask_value", "batch_size", "skip", "max", "test_indices", "points_per_job")
_COUNT, _FLAG = Column("int", minimum=0), Column("int", allowed=(0, 1))
CERTIFY = TsvFormat("patchcleanser certify", {"idx": _COUNT, "label": _COUNT, "triggered": _FLAG,
                                              "patch_size": Column("int", minimum=1), "predict": _COUNT,
                                              "certified": _FLAG, "disagreeing": _COUNT})


def variant_label(training: str, k: int) -> str:
    """How a training of a defense appears in paths and tables: ``masked_k6``."""
    return f"{training}_k{k}"


class Plan:
    """The PatchCleanser jobs, rows and figure curves of a config, checked against its datasets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])
        refuse(self.problems())

    def problems(self) -> list[str]:
        """What the datasets cannot take: a mask set that does not fit (patch larger than the image, k
        collapsing), attacked sides that are not certified, test indices beyond the test set."""
        found = []
        for dataset, name in sorted({(e.dataset, e.defense) for e in self.experiments}):
            defense, (_, height, width) = self.config["defenses"][name], self._shape(dataset)
            where = f"defenses.{name} on datasets.{dataset} ({height}×{width} images)"
            found += [f"{where}: patch_sizes: {p}" for m in defense["patch_sizes"]
                      for p in check_mask_set(height, width, m, defense["k"])]
            found += patch.index_problems(where, defense["test_indices"], self.config["datasets"][dataset])
            stray = sorted(set(defense["attack"]["patch_sizes"] or []) - set(defense["patch_sizes"]))
            if stray:
                found.append(f"defenses.{name}: attack.patch_sizes {stray} are not among patch_sizes")
        return found + patch.undefended_problems(self.config, {e.defense for e in self.experiments})

    def _shape(self, dataset: str) -> tuple[int, int, int]:
        return image_shape(self.config["datasets"][dataset])

    def _cells(self) -> list[tuple[Any, str]]:
        return [(e, variant_label(t, self.config["defenses"][e.defense]["k"])) for e in self.experiments
                for t in self.config["defenses"][e.defense]["trainings"]]

    def rows(self) -> list[str]:
        """The row file of every experiment and training."""
        return [ROW.format(**vars(e), variant=label) for e, label in self._cells()]

    def plots(self) -> list[str]:
        """The patch figure of every dataset (shared with patch smoothing)."""
        return patch.figure_plots(e.dataset for e in self.experiments)

    def figure(self, dataset: str) -> list[tuple[dict[str, Any], str]]:
        """The curves this method adds to the patch figure of a dataset (robustcert.workflow.patch):
        certified accuracy per experiment and training, and the attack TSVs with an undefended model."""
        found = []
        for e, label in ((e, label) for e, label in self._cells() if e.dataset == dataset):
            spec = {"module": __name__, "attack": e.attack, "label": f"{e.defense} · {label}"}
            found.append(({**spec, "kind": "certify"}, GATHERED.format(**vars(e), variant=label)))
            attack = self.config["defenses"][e.defense]["attack"]
            if attack["enabled"] and attack["undefended"]:
                found.append(({**spec, "kind": "attack"}, ATTACK.format(**vars(e), variant=label)))
        return found

    def recipe(self, wildcards: Any) -> dict[str, Any]:
        """What training reads: the architecture, the recipe, and the mask set masked training draws from."""
        defense = self.config["defenses"][wildcards.defense]
        training = wildcards.variant.split("_k")[0]
        masking = ({"patch": max(defense["patch_sizes"]), "k": defense["k"], "value": defense["mask_value"]}
                   if training == "masked" else None)
        return canonical({"arch": defense["arch"], "train": defense["train"], "masking": masking})

    def settings(self, wildcards: Any) -> dict[str, Any]:
        """What certification reads: the mask sets and how the test points are sharded."""
        defense = self.config["defenses"][wildcards.defense]
        return canonical({key: defense[key] for key in SETTINGS_KEYS})

    def attack_settings(self, wildcards: Any) -> dict[str, Any]:
        """What the patch attack reads: the mask sets, the attack and the test points."""
        defense = self.config["defenses"][wildcards.defense]
        attack = {**defense["attack"], "patch_sizes": list(defense["attack"]["patch_sizes"] or defense["patch_sizes"])}
        keys = ("k", "patch_sizes", "mask_value", "batch_size", "skip", "max", "test_indices")
        return canonical({**{key: defense[key] for key in keys}, "attack": attack})

    def undefended_model(self, wildcards: Any) -> list[str]:
        """The checkpoint of the undefended model attacked alongside (none if the config names none)."""
        return patch.undefended_model(self.config, wildcards)

    def attack_results(self, wildcards: Any) -> list[str]:
        """The attack TSV of a training, if the attack is enabled."""
        enabled = self.config["defenses"][wildcards.defense]["attack"]["enabled"]
        return [ATTACK.format(**_names(wildcards))] if enabled else []

    def shards(self, wildcards: Any) -> list[str]:
        """The shard TSVs of one training."""
        test_size = expected_test_size(self.config["datasets"][wildcards.dataset])
        count = len(point_shards(test_size, self.config["defenses"][wildcards.defense]))
        return [SHARD.format(**_names(wildcards), shard=i) for i in range(count)]

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open a training's rows."""
        return row_keys(self.config, wildcards, CERTIFICATE)

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change a training's numbers."""
        defense = self.config["defenses"][wildcards.defense]
        return patch.defense_row_params(self.config, wildcards, training=wildcards.variant.split("_k")[0],
                                        k=defense["k"], mask_value=defense["mask_value"],
                                        inference_patch=max(defense["patch_sizes"]))

    def patch_sizes(self, wildcards: Any) -> list[int]:
        """The certified patch sides (the rows' axis)."""
        return sorted(self.config["defenses"][wildcards.defense]["patch_sizes"])


def _names(wildcards: Any) -> dict[str, str]:
    return {"dataset": wildcards.dataset, "seed": wildcards.seed, "attack": wildcards.attack,
            "defense": wildcards.defense, "variant": wildcards.variant}


def train_patchcleanser(split_path: str, poison_path: str, output: str, recipe: Mapping[str, Any], seed: int,
                        device: str, threads: int) -> None:
    """Train the classifier on the whole (poisoned) training set, normalised by its statistics: plain
    cross-entropy, or with masking augmentation (``recipe["masking"]``)."""
    target = compute_prologue(threads, device)
    from robustcert import partition, train
    from robustcert.poison import load_poisoned_training_set

    split, _, x, y = load_poisoned_training_set(split_path, poison_path)
    whole = partition.assign("whole", x, y, k=1)
    masking = recipe["masking"]
    objective = ({"objective": "masking", "masking_patch": masking["patch"], "masking_k": masking["k"],
                  "masking_value": masking["value"]} if masking else {})
    cfg = train.TrainConfig(**recipe["train"], **objective, seed=derive_seed(seed))
    spec = train.ModelSpec.for_split(recipe["arch"], split)
    states = train.train_shard(x, y, whole, [0], spec, cfg, target)
    train.save_shard(output, spec, [0], states, trained_for={"method": METHOD, "masking": masking})


def _cleanser(model: Any, split: Any, settings: Mapping[str, Any], patch_size: int, target: Any) -> Any:
    """PatchCleanser around a trained model for the mask set of one patch side."""
    from robustcert import patchcleanser

    _, height, width = split.image_shape
    batch_size = (patchcleanser.auto_batch_size(target, split.image_shape) if settings["batch_size"] == "auto"
                  else int(settings["batch_size"]))
    return patchcleanser.Cleanser(model, height, width, patch_size, settings["k"], settings["mask_value"], batch_size)


def _model(model_path: str, target: Any) -> Any:
    """The classifier of a PatchCleanser checkpoint (one trained for another method is refused)."""
    from robustcert import train

    return train.load_shard(model_path, {"method": METHOD})[2][0].to(target)


def certify_patchcleanser(model_path: str, split_path: str, poison_path: str, output: str,
                          settings: Mapping[str, Any], shard: int, device: str, threads: int) -> None:
    """Certify the test points of one shard (and their triggered copies) at every patch side: the
    double-masking prediction, the certificate and the number of disagreeing masks."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert import data, patchcleanser
    from robustcert.poison import load_poison, triggered_test_set

    split = data.load_split(split_path)
    points = point_shards(len(split.y_test), settings)[shard]
    attack = load_poison(poison_path, len(split.y_train), split.image_shape)
    model, frames = _model(model_path, target), []
    start = time.perf_counter()
    for m in sorted(settings["patch_sizes"]):
        cleanser = _cleanser(model, split, settings, m, target)
        for triggered, (index, images) in enumerate(patch.point_copies(split, attack, points, triggered_test_set)):
            labels = split.y_test[index]
            prediction_map = cleanser.prediction_map(torch.from_numpy(images).float() / 255.0)
            predict = patchcleanser.double_masking(prediction_map)
            frames.append(pd.DataFrame({
                "idx": index, "label": labels, "triggered": triggered, "patch_size": m, "predict": predict,
                "certified": patchcleanser.certified(prediction_map, labels).astype(int),
                "disagreeing": patchcleanser.disagreeing(prediction_map, predict)}))
    log.info("certified %d test points at patch sizes %s (k=%d, batches of %d): %.4f s per image and its copies",
             len(points), list(settings["patch_sizes"]), settings["k"], cleanser.batch_size,
             (time.perf_counter() - start) / max(len(points), 1))
    CERTIFY.write(pd.concat(frames, ignore_index=True), output)


def gather_patchcleanser(shard_paths: Sequence[str], output: str) -> None:
    """Concatenate the checked certify shards of one training (no point certified twice at a side)."""
    patch.concatenate_shards(shard_paths, output, ("idx", "triggered", "patch_size"), read=CERTIFY.read)


def attack_patchcleanser(model_path: str, split_path: str, undefended_paths: Sequence[str], output: str,
                         settings: Mapping[str, Any], seed: int, device: str, threads: int) -> None:
    """Patch smoothing's empirical patch attack on the first ``n_points`` certified test points, for each
    attacked patch side: against double masking with the mask set of that side (model
    ``double_masking``; side 0: the deployed mask set, of the largest side) and the undefended model."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert import data, patchcleanser

    split = data.load_split(split_path)
    spec = settings["attack"]
    points = certified_points(len(split.y_test), settings["skip"], settings["max"],
                              settings["test_indices"])[:spec["n_points"]]
    model = _model(model_path, target)
    x = (torch.from_numpy(split.x_test[points]).float() / 255.0).to(target)
    y = torch.from_numpy(split.y_test[points]).to(target)
    pgd, generator = patch.attack_pgd(spec), torch.Generator().manual_seed(derive_seed(seed))
    deployed = _cleanser(model, split, settings, max(settings["patch_sizes"]), target)
    names = [CERTIFICATE]
    frames = [patch.attack_frame(points, y, 0, names, patchcleanser.cleansed_correct(deployed)(x, y).numpy())]
    for m in spec["patch_sizes"]:
        cleanser = _cleanser(model, split, settings, m, target)
        victim = (lambda labels, c=cleanser: patchcleanser.surrogate_loss(c, labels),
                  patchcleanser.cleansed_correct(cleanser), max(1, cleanser.batch_size // len(cleanser.masks)))
        frames.append(patch.attacked_frame(points, x, y, m, names, victim, spec, pgd, generator))
    for undefended_names, loss_of, judge, chunk in patch.undefended_victims(undefended_paths, target,
                                                                            deployed.batch_size).values():
        with torch.no_grad():
            frames.append(patch.attack_frame(points, y, 0, undefended_names, judge(x, y).numpy()))
        for m in spec["patch_sizes"]:
            frames.append(patch.attacked_frame(points, x, y, m, undefended_names, (loss_of, judge, chunk), spec, pgd,
                                               generator))
    patch.ATTACK_TSV.write(pd.concat(frames, ignore_index=True), output)


def summarize_patchcleanser(certify_path: str, poison_path: str, attack_paths: Sequence[str], output: str,
                            keys: Mapping[str, str], params: Mapping[str, Any], patch_sizes: Sequence[int]) -> None:
    """The results rows of one training: clean accuracy of the deployed defense (mask set of the largest
    side) and of each side's (``clean_acc``), certified accuracy against the patch side (``cert_acc``),
    for an attack with a trigger the trigger metrics of the deployed defense (its ``certified_ra``: the
    trigger covered by a square of at most the deployed side and the point certified), and with the
    empirical attack its accuracy beside the certified accuracy on the same points."""
    from robustcert.poison import load_poison

    frame = CERTIFY.read(certify_path)
    attack = load_poison(poison_path)
    sizes, deployed = sorted(patch_sizes), max(patch_sizes)
    clean, triggered = frame[frame["triggered"] == 0], frame[frame["triggered"] == 1]
    at = {m: clean[clean["patch_size"] == m] for m in sizes}
    used = at[deployed]
    numbers = [Metric("n_test", len(used)), Metric("accuracy", float((used["predict"] == used["label"]).mean())),
               *on_axis("clean_acc", "patch_size", sizes, [float((at[m]["predict"] == at[m]["label"]).mean()) for m in sizes]),
               *on_axis("cert_acc", "patch_size", sizes, [float(at[m]["certified"].mean()) for m in sizes])]
    if attack.trigger is not None:
        numbers += _trigger_metrics(triggered[triggered["patch_size"] == deployed], attack.target,
                                    patch.trigger_side(attack.trigger.mask), deployed)
    for path in attack_paths:
        numbers += _attack_metrics(patch.ATTACK_TSV.read(path), clean)
    write_rows(output, tidy_rows(keys, params, numbers))


def _trigger_metrics(triggered: Any, target: int, side: int, deployed: int) -> list[Metric]:
    from robustcert import metrics

    labels, predictions = triggered["label"].to_numpy(), triggered["predict"].to_numpy()
    reach = np.where(triggered["certified"].to_numpy() == 1, deployed, 0)
    counted = metrics.non_target(labels, target)
    return [*(Metric(name, value) for name, value in metrics.trigger_metrics(predictions, labels, target).items()),
            Metric("certified_ra", metrics.certified_robust_accuracy(predictions, labels, reach, side, target)),
            Metric("trigger_side", side),
            Metric("trigger_within_certified", float((reach[counted] >= side).mean()) if counted.any() else float("nan"))]


def _attack_metrics(attacked: Any, clean: Any) -> list[Metric]:
    """Accuracy under the patch attack (axis patch_size) of double masking and of the undefended model,
    and the certified accuracy at each attacked side on the same points."""
    points = clean[clean["idx"].isin(attacked["idx"])]
    sizes = sorted(int(m) for m in attacked["patch_size"].unique() if m > 0)
    certified = [float(points.loc[points["patch_size"] == m, "certified"].mean()) for m in sizes]
    return [Metric("attack_points", int(points["idx"].nunique())), *on_axis("cert_acc_attacked", "patch_size", sizes, certified),
            *patch.attack_accuracies(attacked, CERTIFICATE, sizes)]


def patch_curves(path: str, spec: Mapping[str, Any]) -> list[Any]:
    """The curves of one TSV of :meth:`Plan.figure`: certified accuracy at each certified side, or the
    undefended model's accuracy under the patch attack."""
    from robustcert.plot import PatchCurve

    if spec["kind"] == "attack":
        return patch.undefended_curves(patch.ATTACK_TSV.read(path), spec)
    clean = CERTIFY.read(path)
    clean = clean[clean["triggered"] == 0]
    share = clean.groupby("patch_size")["certified"].mean()
    return [PatchCurve(spec["attack"], f"{spec['label']} · {CERTIFICATE}", "marker", share.index.to_numpy(),
                       share.to_numpy(), int((clean["patch_size"] == share.index[0]).sum()))]
