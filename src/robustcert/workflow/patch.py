"""(De)randomized smoothing against adversarial patches (rules/patch.smk; Levine & Feizi 2020): one base
classifier per ablation, trained with cross-entropy on ablated inputs of the (poisoned) training set;
certification of every ``skip``-th test point over every position, sharded into jobs of
``points_per_job`` and gathered; results rows per ablation and voting rule; a plot per dataset and
defense.

Certify TSVs (one row per test point, copy and rule) have the columns ``idx label triggered rule predict
certified_class certified_patch base_correct count_0 … count_{C−1}``: ``triggered`` 1 for the
triggered copy of a test point, of any class (attacks with a trigger), ``rule`` the certificate
(``theta_<θ>``, ``top_one``, ``randomized``), ``predict`` the smoothed prediction (−1: abstain),
``certified_class`` the class the certificate is about, ``certified_patch`` the largest patch side it is
certified for (0: none), ``base_correct`` the share of positions whose base prediction is the label,
and the votes per class (for ``randomized``: the counts of the estimation draws).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from robustcert.ablation import Ablation, check_ablation
from robustcert.artifacts import Column, TsvFormat
from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.data import expected_test_size, source_shape
from robustcert.results import Metric, concatenate, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log
from robustcert.workflow.common import common_params, experiments_of, row_keys
from robustcert.workflow.smoothing import certified_points, point_shards

METHOD = "patch"
ABLATION = "<results>/patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}"
MODEL = ABLATION + "/model.pt"
SHARD = ABLATION + "/certify/shard_{shard}.tsv"
GATHERED = ABLATION + "/certify.tsv"
ATTACK = ABLATION + "/attack.tsv"
# the ensemble stage's checkpoint
UNDEFENDED_MODEL = "<results>/models/{dataset}/seed_{seed}/{attack}/{defense}/shard_0.pt"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/patch_{ablation}.tsv"
PLOT = "<results>/plots/{dataset}/patch_size.{ext}"
ABLATION_LABEL = r"(band|row|block)_s\d+(_k\d+)?"
ATTACK_TSV = TsvFormat("patch attack", {"idx": Column("int", minimum=0), "label": Column("int", minimum=0),
                                        "patch_size": Column("int", minimum=0), "model": Column("str"),
                                        "correct": Column("int", allowed=(0, 1))})
SETTINGS_KEYS = ("thresholds", "randomized", "batch_size", "skip", "max", "test_indices", "points_per_job")
ATTACK_KEYS = ("thresholds", "batch_size", "skip", "max", "test_indices", "attack")


def ablations_of(defense: Mapping[str, Any], image_shape: tuple[int, int, int]) -> list[Ablation]:
    """The ablations of a defense for images of (C, H, W)."""
    _, height, width = image_shape
    return [Ablation(a["kind"], a["size"], height, width, a.get("count", 1)) for a in defense["ablations"]]


class Plan:
    """The patch-smoothing jobs, rows and plots of a config, checked against its datasets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])
        refuse(self.problems())

    def problems(self) -> list[str]:
        """What the datasets cannot take: ablations or patch sizes larger than the image, labels twice."""
        found = []
        for dataset, defense in sorted({(e.dataset, e.defense) for e in self.experiments}):
            entry, (_, height, width) = self.config["defenses"][defense], self._shape(dataset)
            where = f"defenses.{defense} on datasets.{dataset} ({height}×{width} images)"
            for a in entry["ablations"]:
                found += [f"{where}: {p}" for p in check_ablation(a["kind"], a["size"], a.get("count", 1), height, width)]
            too_large = [m for m in entry["patch_sizes"] if m > min(height, width)]
            if too_large:
                found.append(f"{where}: patch_sizes {too_large} larger than the image")
            attacked = entry["attack"]["patch_sizes"] or []
            if any(m > min(height, width) for m in attacked):
                found.append(f"{where}: attack.patch_sizes {attacked} larger than the image")
            found += index_problems(where, entry["test_indices"], self.config["datasets"][dataset])
            labels = [f"{a['kind']}_{a['size']}_{a.get('count', 1)}" for a in entry["ablations"]]
            if len(set(labels)) != len(labels):
                found.append(f"defenses.{defense}: an ablation is listed twice")
        return found + undefended_problems(self.config, {e.defense for e in self.experiments})

    def _shape(self, dataset: str) -> tuple[int, int, int]:
        return source_shape(self.config["datasets"][dataset]["source"])

    def ablations(self, dataset: str, defense: str) -> list[Ablation]:
        """The ablations of a defense on a dataset."""
        return ablations_of(self.config["defenses"][defense], self._shape(dataset))

    def _cells(self) -> list[tuple[Any, str]]:
        return [(e, a.label) for e in self.experiments for a in self.ablations(e.dataset, e.defense)]

    def rows(self) -> list[str]:
        """The row file of every experiment and ablation."""
        return [ROW.format(**vars(e), ablation=label) for e, label in self._cells()]

    def plots(self) -> list[str]:
        """The patch figure of every dataset."""
        return figure_plots(e.dataset for e in self.experiments)

    def recipe(self, wildcards: Any) -> dict[str, Any]:
        """What training reads: the architecture, the recipe and the ablation."""
        defense = self.config["defenses"][wildcards.defense]
        return canonical({"arch": defense["arch"], "train": defense["train"], "ablation": self._spec(wildcards)})

    def _spec(self, wildcards: Any) -> dict[str, Any]:
        ablation = self._ablation(wildcards)
        return {"kind": ablation.kind, "size": ablation.size, "count": ablation.count}

    def _ablation(self, wildcards: Any) -> Ablation:
        by_label = {a.label: a for a in self.ablations(wildcards.dataset, wildcards.defense)}
        return by_label[wildcards.ablation]

    def settings(self, wildcards: Any) -> dict[str, Any]:
        """What certification reads: the ablation, the voting rules, the patch sizes to search, and how
        the test points are sharded."""
        defense = self.config["defenses"][wildcards.defense]
        return canonical({"ablation": self._spec(wildcards), **{key: defense[key] for key in SETTINGS_KEYS}})

    def attack_settings(self, wildcards: Any) -> dict[str, Any]:
        """What the patch attack reads: the ablation, the voting rules, the attack and the test points."""
        defense = self.config["defenses"][wildcards.defense]
        settings = {"ablation": self._spec(wildcards), **{key: defense[key] for key in ATTACK_KEYS}}
        settings["attack"] = {**settings["attack"], "patch_sizes": self._attacked_sizes(defense)}
        return canonical({key: value for key, value in settings.items()})

    @staticmethod
    def _attacked_sizes(defense: Mapping[str, Any]) -> list[int]:
        return list(defense["attack"]["patch_sizes"] or defense["patch_sizes"])

    def undefended_model(self, wildcards: Any) -> list[str]:
        """The checkpoint of the undefended model attacked alongside (none if the config names none)."""
        return undefended_model(self.config, wildcards)

    def attack_results(self, wildcards: Any) -> list[str]:
        """The attack TSV of an ablation, if the attack is enabled."""
        return [ATTACK.format(**_names(wildcards))] if self.config["defenses"][wildcards.defense]["attack"]["enabled"] else []

    def shards(self, wildcards: Any) -> list[str]:
        """The shard TSVs of one ablation."""
        test_size = expected_test_size(self.config["datasets"][wildcards.dataset])
        count = len(point_shards(test_size, self.config["defenses"][wildcards.defense]))
        return [SHARD.format(**_names(wildcards), shard=i) for i in range(count)]

    def figure(self, dataset: str) -> list[tuple[dict[str, Any], str]]:
        """The curves this method adds to the patch figure of a dataset, each with the TSV it reads: the
        gathered certify TSV of every experiment and ablation, and the attack TSV of those attacked
        beside the undefended model."""
        side = min(self._shape(dataset)[1:])
        found = []
        for e, label in ((e, label) for e, label in self._cells() if e.dataset == dataset):
            spec = {"module": __name__, "attack": e.attack, "label": f"{e.defense} · {label}", "side": side}
            found.append(({**spec, "kind": "certify"}, GATHERED.format(**vars(e), ablation=label)))
            attack = self.config["defenses"][e.defense]["attack"]
            if attack["enabled"] and attack["undefended"]:
                found.append(({**spec, "kind": "attack"}, ATTACK.format(**vars(e), ablation=label)))
        return found

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open an ablation's rows (the certificate is each voting rule's)."""
        return row_keys(self.config, wildcards, "-")

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change an ablation's numbers (each rule adds its own)."""
        return defense_row_params(self.config, wildcards, ablation=wildcards.ablation)

    def rule_params(self, wildcards: Any) -> dict[str, dict[str, Any]]:
        """The parameters of each voting rule beyond the ablation's."""
        defense = self.config["defenses"][wildcards.defense]
        rules = {f"theta_{t:g}": {"theta": t} for t in defense["thresholds"]} | {"top_one": {}}
        randomized = defense["randomized"]
        if randomized["enabled"]:
            rules["randomized"] = {key: randomized[key] for key in ("n0", "n", "alpha")}
        return rules

    def patch_sizes(self, wildcards: Any) -> list[int]:
        """The patch sides of the rows."""
        return list(self.config["defenses"][wildcards.defense]["patch_sizes"])


def defense_row_params(config: Config, wildcards: Any, **extra: Any) -> dict[str, Any]:
    """The parameters of a patch defense's rows: the common ones, the model, ``extra``, the test points
    and the empirical attack's settings (if enabled)."""
    defense = config["defenses"][wildcards.defense]
    test_size = expected_test_size(config["datasets"][wildcards.dataset])
    skip, limit, indices = defense["skip"], defense["max"], defense["test_indices"]
    points = f"range(0, {test_size}, {skip})" if indices is None else f"{len(indices)} given indices[::{skip}]"
    attack = defense["attack"]
    attacked = ({f"attack_{key}": attack[key] for key in ("n_points", "steps", "step_size", "restarts", "stride")}
                | {"attack_undefended": attack["undefended"] or "-"} if attack["enabled"] else {})
    return {**common_params(config, wildcards), "arch": defense["arch"], "epochs": defense["train"]["epochs"],
            **extra, "test_points": points + (f"[:{limit}]" if limit else ""), **attacked}


def index_problems(where: str, indices: Sequence[int] | None, dataset: Mapping[str, Any]) -> list[str]:
    """Given test indices beyond the test set (only where its size is known before the split)."""
    if indices is None or dataset.get("classes") is not None:
        return []
    size = expected_test_size(dataset)
    beyond = sorted(i for i in indices if i >= size)
    return [f"{where}: test_indices {beyond[:5]}{' …' if len(beyond) > 5 else ''} beyond the {size} test points"] if beyond else []


def _names(wildcards: Any) -> dict[str, str]:
    return {"dataset": wildcards.dataset, "seed": wildcards.seed, "attack": wildcards.attack,
            "defense": wildcards.defense, "ablation": wildcards.ablation}


def train_patch(split_path: str, poison_path: str, output: str, recipe: Mapping[str, Any], seed: int,
                device: str, threads: int) -> None:
    """Train the base classifier on ablated inputs of the (poisoned) training set (no normalisation)."""
    target = compute_prologue(threads, device)
    from dataclasses import replace

    from robustcert import partition, train
    from robustcert.poison import load_poisoned_training_set

    split, _, x, y = load_poisoned_training_set(split_path, poison_path)
    channels = 2 * split.image_shape[0]
    whole = replace(partition.assign("whole", x, y, k=1), mean=np.zeros((1, channels), np.float32),
                    std=np.ones((1, channels), np.float32))
    ablation = recipe["ablation"]
    cfg = train.TrainConfig(**recipe["train"], objective="ablation", ablation_kind=ablation["kind"],
                            ablation_size=ablation["size"], ablation_count=ablation["count"], seed=derive_seed(seed))
    spec = train.ModelSpec(recipe["arch"], channels, split.num_classes, split.image_shape[1])
    states = train.train_shard(x, y, whole, [0], spec, cfg, target)
    train.save_shard(output, spec, [0], states)


def gather_patch(shard_paths: Sequence[str], output: str, keys: Sequence[str] = ("idx", "triggered", "rule"),
                 read: Callable[[str], Any] | None = None) -> None:
    """Concatenate the certify shards of one ablation in ``idx`` order (each shard non-empty, no test
    point certified twice under the same ``keys``: the rule, clean or triggered); each shard read by
    ``read`` (a plain TSV reader if None)."""
    import pandas as pd

    from robustcert.artifacts import ArtifactError, read_tsv, write_tsv

    frames = [(read or read_tsv)(path) for path in shard_paths]
    empty = [path for path, frame in zip(shard_paths, frames) if frame.empty]
    if empty:
        raise ArtifactError(f"{empty[0]}: a certify shard with no rows")
    frame = pd.concat(frames, ignore_index=True).sort_values(list(keys), kind="stable")
    repeated = frame.duplicated(list(keys))
    if repeated.any():
        raise ArtifactError(f"{output}: the shards {list(shard_paths)} repeat test points "
                            f"{frame.loc[repeated, 'idx'].unique().tolist()[:5]}")
    write_tsv(frame, output)


def certify_patch(model_path: str, split_path: str, poison_path: str, output: str, settings: Mapping[str, Any],
                  seed: int, shard: int, device: str, threads: int) -> None:
    """Certify the test points of one shard (and their triggered copies) under every voting rule; the
    largest certified patch size of each."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert import data, patch
    from robustcert.artifacts import write_tsv
    from robustcert.poison import load_poison, triggered_test_set

    split = data.load_split(split_path)
    points = point_shards(len(split.y_test), settings)[shard]
    attack = load_poison(poison_path, len(split.y_train), split.image_shape)
    smooth = _smoothed(model_path, split, settings, target)
    ablation, (_, height, width) = smooth.ablation, split.image_shape
    sizes = list(range(1, min(height, width) + 1))
    frames, generator = [], torch.Generator().manual_seed(derive_seed(seed, shard))
    start = time.perf_counter()
    for triggered, (index, images) in enumerate(point_copies(split, attack, points, triggered_test_set)):
        x = torch.from_numpy(images).float() / 255.0
        labels = split.y_test[index]
        results = smooth.certify(x, list(settings["thresholds"]), sizes)
        if settings["randomized"]["enabled"]:
            r = settings["randomized"]
            results["randomized"] = smooth.randomized(x, r["n0"], r["n"], r["alpha"], sizes, generator)
        base = results[patch.TOP_ONE]["counts"][np.arange(len(index)), labels] / ablation.num_positions
        frames += [_frame(index, labels, triggered, rule, result, base) for rule, result in results.items()]
    per_image = (time.perf_counter() - start) / max(len(points), 1)
    log.info("certified %d test points (%s, %d positions, batches of %d): %.4f s per image and its copies",
             len(points), ablation.label, ablation.num_positions, smooth.batch_size, per_image)
    write_tsv(pd.concat(frames, ignore_index=True), output)  # the job's time: in the log and results/benchmarks


def _smoothed(model_path: str, split: Any, settings: Mapping[str, Any], target: Any) -> Any:
    """The smoothed classifier of a trained base model, batches sized by the settings."""
    from robustcert import patch, train

    channels, height, width = split.image_shape
    _, _, models = train.load_shard(model_path)
    batch_size = (patch.auto_batch_size(target, split.image_shape) if settings["batch_size"] == "auto"
                  else int(settings["batch_size"]))
    ablation = Ablation(**settings["ablation"], height=height, width=width)
    return patch.PatchSmooth(models[0].to(target), split.num_classes, ablation, channels, batch_size)


def attack_patch(model_path: str, split_path: str, undefended_paths: Sequence[str], output: str,
                 settings: Mapping[str, Any], seed: int, device: str, threads: int) -> None:
    """The empirical patch attack on the first ``n_points`` certified test points, for each attacked
    patch size: against the smoothed classifier (every voting rule) and the undefended model, if any.
    Writes ``idx label patch_size model correct`` (``patch_size`` 0: no attack; ``model``: a voting rule
    or ``undefended``)."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert import data, patch

    split = data.load_split(split_path)
    spec = settings["attack"]
    points = certified_points(len(split.y_test), settings["skip"], settings["max"],
                              settings["test_indices"])[:spec["n_points"]]
    smooth = _smoothed(model_path, split, settings, target)
    x = (torch.from_numpy(split.x_test[points]).float() / 255.0).to(target)
    y = torch.from_numpy(split.y_test[points]).to(target)
    thresholds = list(settings["thresholds"])
    victims = {"smoothed": ([*(f"theta_{t:g}" for t in thresholds), patch.TOP_ONE],
                            lambda labels: patch.soft_vote_loss(smooth, labels), patch.smoothed_correct(smooth, thresholds),
                            max(1, smooth.batch_size // smooth.ablation.num_positions))}
    victims |= undefended_victims(undefended_paths, target, smooth.batch_size)
    pgd = attack_pgd(spec)
    generator = torch.Generator().manual_seed(derive_seed(seed))
    frames = []
    for names, loss_of, judge, chunk in victims.values():
        with torch.no_grad():
            frames.append(attack_frame(points, y, 0, names, judge(x, y).numpy()))
        for m in spec["patch_sizes"]:
            frames.append(attacked_frame(points, x, y, m, names, (loss_of, judge, chunk), spec, pgd, generator))
    ATTACK_TSV.write(pd.concat(frames, ignore_index=True), output)


def undefended_victims(paths: Sequence[str], target: Any, chunk: int) -> dict[str, tuple]:
    """The undefended model (of ``paths``: none or one checkpoint) as a victim of the patch attack:
    (names, loss, judge, images × placements per chunk)."""
    from robustcert import train
    from robustcert.pgd import cross_entropy_loss

    victims = {}
    for path in paths:
        model = train.load_shard(path)[2][0].to(target)
        victims["undefended"] = (["undefended"], lambda labels, model=model: cross_entropy_loss(model, labels),
                                 lambda adv, labels, model=model: (model(adv).argmax(1) == labels)[:, None].cpu(),
                                 chunk)
    return victims


def attack_pgd(spec: Mapping[str, Any]) -> Any:
    """The PGD of the patch attack: L∞ of radius 1 in [0, 1], random start, the spec's steps and restarts."""
    from robustcert.pgd import PGD

    return PGD("linf", 1.0, spec["step_size"], spec["steps"], random_start=True, restarts=spec["restarts"])


def attacked_frame(points: np.ndarray, x: Any, y: Any, patch_size: int, names: Sequence[str], victim: tuple,
                   spec: Mapping[str, Any], pgd: Any, generator: Any) -> Any:
    """The patch attack of one side on one victim (loss, judge, chunk), as rows of an attack TSV."""
    from robustcert import patch

    loss_of, judge, chunk = victim
    start = time.perf_counter()
    correct = patch.patch_attack(loss_of, judge, x, y, patch_size, spec["stride"], pgd, chunk, generator)
    log.info("patch attack of side %d on %s: %.1f s, accuracy %s", patch_size, names, time.perf_counter() - start,
             correct.mean(axis=0).round(3).tolist())
    return attack_frame(points, y, patch_size, names, correct)


def attack_frame(points: np.ndarray, labels: Any, patch_size: int, names: Sequence[str], correct: np.ndarray) -> Any:
    import pandas as pd

    return pd.concat([pd.DataFrame({"idx": points, "label": labels.cpu().numpy(), "patch_size": patch_size,
                                    "model": name, "correct": correct[:, r].astype(int)})
                      for r, name in enumerate(names)], ignore_index=True)


def point_copies(split: Any, attack: Any, points: np.ndarray, triggered_test_set: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(test indices, images): the shard's clean points, then their triggered copies."""
    copies = [(points, split.x_test[points])]
    if attack.trigger is not None:
        index, triggered = triggered_test_set(attack, split.x_test[points], split.y_test[points])
        copies.append((points[index], triggered))
    return copies


def _frame(index: np.ndarray, labels: np.ndarray, triggered: int, rule: str, result: Mapping[str, np.ndarray],
           base: np.ndarray) -> Any:
    import pandas as pd

    counts = result["counts"]
    return pd.DataFrame({"idx": index, "label": labels, "triggered": triggered, "rule": rule,
                         "predict": result["predict"], "certified_class": result.get("certified_class", result["predict"]),
                         "certified_patch": result["certified_patch"], "base_correct": base,
                         **{f"count_{c}": counts[:, c] for c in range(counts.shape[1])}})


def summarize_patch(certify_path: str, poison_path: str, attack_paths: Sequence[str], output: str,
                    keys: Mapping[str, str], params: Mapping[str, Any], rule_params: Mapping[str, Mapping[str, Any]],
                    patch_sizes: Sequence[int]) -> None:
    """The results rows of one ablation, one certificate per voting rule: clean accuracy of the smoothed
    and of the base classifier, certified accuracy against the patch size and, for an attack with a
    trigger, attack success rate (without and with the target class), robust accuracy, and the robust
    accuracy certified for the trigger's size (a trigger is a patch: its side is that of the square that
    covers it). With the empirical patch
    attack (``attack_paths``: none or one TSV), its accuracy beside the certified accuracy on the same
    points, and the undefended model's."""
    from robustcert import metrics
    from robustcert.artifacts import read_tsv
    from robustcert.poison import load_poison

    frame = read_tsv(certify_path)
    attack = load_poison(poison_path)
    side = trigger_side(attack.trigger.mask) if attack.trigger is not None else None
    tables = []
    for rule, extra in rule_params.items():
        rows = frame[frame["rule"] == rule]
        clean, triggered = rows[rows["triggered"] == 0], rows[rows["triggered"] == 1]
        certified = clean["certified_class"] == clean["label"]
        numbers = [Metric("n_test", len(clean)), Metric("accuracy", float((clean["predict"] == clean["label"]).mean())),
                   Metric("base_accuracy", float(clean["base_correct"].mean())),
                   *on_axis("cert_acc", "patch_size", patch_sizes,
                            metrics.certified_accuracy(clean["certified_patch"], certified, patch_sizes))]
        if side is not None:
            numbers += _trigger_metrics(triggered, attack.target, side)
        for path in attack_paths:
            numbers += _attack_metrics(read_attack(path), clean, rule)
        tables.append(tidy_rows({**keys, "certificate": rule}, {**params, **extra}, numbers))
    write_rows(output, concatenate(tables))


def _attack_metrics(attacked: Any, clean: Any, rule: str) -> list[Metric]:
    """Accuracy under the patch attack (axis patch_size) of the smoothed classifier's rule and of the
    undefended model, and the certified accuracy on the same points."""
    from robustcert import metrics

    if rule not in set(attacked["model"]):
        return []
    points = clean[clean["idx"].isin(attacked["idx"])]
    sizes = sorted(m for m in attacked["patch_size"].unique() if m > 0)
    numbers = [Metric("attack_points", len(points)),
               *on_axis("cert_acc_attacked", "patch_size", sizes,
                        metrics.certified_accuracy(points["certified_patch"], points["certified_class"] == points["label"],
                                                   sizes))]
    return numbers + attack_accuracies(attacked, rule, sizes)


def attack_accuracies(attacked: Any, model: str, sizes: Sequence[int]) -> list[Metric]:
    """Accuracy without (``attacked_clean_acc``) and under the patch attack (``attack_acc``, axis
    patch_size) of ``model`` and of the undefended model (prefix ``undefended_``) in an attack TSV."""
    numbers = []
    for name, prefix in ((model, ""), ("undefended", "undefended_")):
        rows = attacked[attacked["model"] == name]
        if len(rows):
            accuracy = rows.groupby("patch_size")["correct"].mean()
            numbers += [Metric(f"{prefix}attacked_clean_acc", float(accuracy[0])),
                        *on_axis(f"{prefix}attack_acc", "patch_size", sizes, [float(accuracy[m]) for m in sizes])]
    return numbers


def trigger_side(mask: np.ndarray) -> int:
    """The side of the smallest square patch that covers a trigger's pixels (mask [C, H, W])."""
    rows, cols = np.nonzero(np.asarray(mask).any(axis=0))
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1) if len(rows) else 0


def _trigger_metrics(triggered: Any, target: int, side: int) -> list[Metric]:
    from robustcert import metrics

    predictions, labels = triggered["predict"].to_numpy(), triggered["label"].to_numpy()
    certified = triggered["certified_patch"].to_numpy()
    counted = metrics.non_target(labels, target)
    return [*(Metric(name, value) for name, value in metrics.trigger_metrics(predictions, labels, target).items()),
            Metric("certified_ra", metrics.certified_robust_accuracy(triggered["certified_class"].to_numpy(), labels,
                                                                     certified, side, target)),
            Metric("trigger_side", side),
            Metric("trigger_within_certified", float((certified[counted] >= side).mean()) if counted.any()
                   else float("nan"))]


def figure_plots(datasets: Iterable[str]) -> list[str]:
    """The patch figure (PNG and PDF) of each dataset."""
    return [PLOT.format(dataset=d, ext=ext) for d in dict.fromkeys(datasets) for ext in ("png", "pdf")]


def figure_parts(plans: Sequence[Any], wildcards: Any) -> list[tuple[dict[str, Any], str]]:
    """The curves of the patch figure of a dataset from every plan that draws on it (each with a
    ``figure(dataset)``), with their TSVs; the undefended model under attack once per attack."""
    parts, attacked = [], set()
    for spec, path in (part for plan in plans for part in plan.figure(wildcards.dataset)):
        if spec["kind"] == "attack":
            if spec["attack"] in attacked:
                continue
            attacked.add(spec["attack"])
        parts.append((spec, path))
    return parts


def patch_curves(path: str, spec: Mapping[str, Any]) -> list[Any]:
    """The curves of one TSV of :meth:`Plan.figure`: certified accuracy of each voting rule at every
    patch side up to the image's, or the undefended model's accuracy under the patch attack."""
    from robustcert import metrics
    from robustcert.artifacts import read_tsv
    from robustcert.plot import PatchCurve

    if spec["kind"] == "attack":
        return undefended_curves(read_attack(path), spec)
    frame = read_tsv(path)
    clean, sizes = frame[frame["triggered"] == 0], np.arange(0, spec["side"] + 1)
    return [PatchCurve(spec["attack"], f"{spec['label']} · {rule}", "step", sizes,
                       metrics.certified_accuracy(rows["certified_patch"], rows["certified_class"] == rows["label"], sizes),
                       len(rows))
            for rule, rows in clean.groupby("rule")]


def undefended_curves(attacked: Any, spec: Mapping[str, Any]) -> list[Any]:
    """The undefended model's accuracy under the patch attack (patch side 0: none) in an attack TSV."""
    from robustcert.plot import PatchCurve

    rows = attacked[attacked["model"] == "undefended"]
    accuracy = rows.groupby("patch_size")["correct"].mean()
    return [PatchCurve(spec["attack"], "undefended · patch attack", "attack", accuracy.index.to_numpy(),
                       accuracy.to_numpy(), int((rows["patch_size"] == 0).sum()))] if len(rows) else []


def plot_patch(paths: Sequence[str], curves: Sequence[Mapping[str, Any]], title: str,
               outputs: Sequence[str], intervals: bool = False) -> None:
    """Accuracy against the patch size of every patch defense of a dataset and the undefended model under
    the patch attack: each TSV drawn by the ``patch_curves`` of the stage module its curve names."""
    import importlib

    from robustcert import plot

    drawn = [c for spec, path in zip(curves, paths) for c in importlib.import_module(spec["module"]).patch_curves(path, spec)]
    plot.plot_patch_sizes(drawn, title, outputs, intervals)


def undefended_model(config: Config, wildcards: Any) -> list[str]:
    """The checkpoint of the undefended model a patch defense's attack runs alongside (none if it names none)."""
    name = config["defenses"][wildcards.defense]["attack"]["undefended"]
    return [UNDEFENDED_MODEL.format(dataset=wildcards.dataset, seed=wildcards.seed, attack=wildcards.attack,
                                    defense=name)] if name else []


def read_attack(path: str) -> Any:
    """An attack TSV (``idx label patch_size model correct``), checked against its format."""
    return ATTACK_TSV.read(path)


def undefended_problems(config: Config, defenses: Iterable[str]) -> list[str]:
    """Attacks of these defenses alongside an undefended model that is not a defense of method undefended."""
    found = []
    for name in sorted(set(defenses)):
        undefended = config["defenses"][name]["attack"]["undefended"]
        if undefended is not None and config["defenses"].get(undefended, {}).get("method") != "undefended":
            found.append(f"defenses.{name}.attack.undefended is {undefended!r}, not a defense of method undefended")
    return found
