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
from robustcert.artifacts import ArtifactError, Column, Repeated, TsvFormat, refuse_rows, require_derived, require_keys
from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.data import expected_test_size, image_shape
from robustcert.evaluate import CORRECT, INDEX, LABEL, PREDICTION
from robustcert.results import Metric, concatenate, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log
from robustcert.workflow.common import common_params, experiments_of, row_keys
from robustcert.workflow.smoothing import certified_points, point_shards, test_point_params

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
TOP_ONE, RANDOMIZED = "top_one", "randomized"
# a certify TSV (a shard's, or the gathered one) and an attack TSV, as the module's docstring and
# attack_patch describe them
CERTIFY_TSV = TsvFormat("patch certify", {
    "idx": INDEX, "label": LABEL, "triggered": Column("int", allowed=(0, 1)), "rule": Column("str"),
    "predict": PREDICTION, "certified_class": PREDICTION, "certified_patch": Column("int", minimum=0),
    "base_correct": Column("float", minimum=0)}, repeated=Repeated("count_", Column("int", minimum=0), minimum=2))
ATTACK_TSV = TsvFormat("patch attack", {"idx": INDEX, "label": LABEL, "patch_size": Column("int", minimum=0),
                                        "model": Column("str"), "correct": CORRECT})
SETTINGS_KEYS = ("arch", "thresholds", "randomized", "batch_size", "skip", "max", "test_indices", "points_per_job")
ATTACK_KEYS = ("arch", "thresholds", "batch_size", "skip", "max", "test_indices", "attack")


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
        """What the datasets cannot take: ablations or patch sizes larger than the image, labels twice,
        ablations or samples with which nothing can be certified, thresholds and patch sizes that say nothing
        or the same twice."""
        found = []
        for dataset, defense in sorted({(e.dataset, e.defense) for e in self.experiments}):
            entry, (_, height, width) = self.config["defenses"][defense], self._shape(dataset)
            where = f"defenses.{defense} on datasets.{dataset} ({height}×{width} images)"
            fitting = []
            for a in entry["ablations"]:
                misfits = check_ablation(a["kind"], a["size"], a.get("count", 1), height, width)
                found += [f"{where}: {p}" for p in misfits]
                if not misfits:
                    fitting.append(Ablation(a["kind"], a["size"], height, width, a.get("count", 1)))
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
            if min(entry["patch_sizes"]) <= min(height, width):
                found += [f"{where}: {p}" for p in _certifiable_problems(fitting, entry)]
        return found + undefended_problems(self.config, {e.defense for e in self.experiments}) + [
            p for name in sorted({e.defense for e in self.experiments})
            for p in _list_problems(name, self.config["defenses"][name])]

    def _shape(self, dataset: str) -> tuple[int, int, int]:
        return image_shape(self.config["datasets"][dataset])

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
        rules = {f"theta_{t:g}": {"theta": t} for t in defense["thresholds"]} | {TOP_ONE: {}}
        randomized = defense["randomized"]
        if randomized["enabled"]:
            rules[RANDOMIZED] = {key: randomized[key] for key in ("n0", "n", "alpha")}
        return rules

    def patch_sizes(self, wildcards: Any) -> list[int]:
        """The patch sides of the rows."""
        return list(self.config["defenses"][wildcards.defense]["patch_sizes"])

    def checks(self, wildcards: Any) -> dict[str, Any]:
        """What the certify and attack TSVs of an ablation are checked against where they are read: the
        ablation on the dataset's images, the voting rules (randomized: its draws and α), the certified
        points and their shards, and the attacked points, patch sizes and models."""
        defense = self.config["defenses"][wildcards.defense]
        _, height, width = self._shape(wildcards.dataset)
        randomized, attack = defense["randomized"], defense["attack"]
        attacked = {"n_points": attack["n_points"], "patch_sizes": self._attacked_sizes(defense),
                    "undefended": attack["undefended"] is not None}
        return canonical({
            "ablation": {**self._spec(wildcards), "height": height, "width": width},
            "rules": list(self.rule_params(wildcards)),
            "randomized": {"n": randomized["n"], "alpha": randomized["alpha"]} if randomized["enabled"] else None,
            "test_size": expected_test_size(self.config["datasets"][wildcards.dataset]),
            **{key: defense[key] for key in ("skip", "max", "test_indices", "points_per_job")},
            "attack": attacked if attack["enabled"] else None})


def _certifiable_problems(ablations: Sequence[Ablation], defense: Mapping[str, Any]) -> list[str]:
    """Ablations with which no point can ever be certified: derandomized, when a 1×1 patch already
    overlaps more than half the positions (n_top − n_second ≤ P < 2Δ); randomized, when even a bound
    from n unanimous draws, α^(1/n), does not exceed 1/2 + Δ/P at the smallest patch size."""
    from robustcert.metrics import fewest_draws, highest_lower_bound

    randomized, smallest = defense["randomized"], min(defense["patch_sizes"])
    problems = []
    for ablation in ablations:
        positions, overlap = ablation.num_positions, ablation.delta(1)
        if 2 * overlap > positions:
            covered = ablation.size * ablation.count
            whole = {"band": covered >= ablation.width, "row": covered >= ablation.height,
                     "block": covered >= max(ablation.height, ablation.width)}[ablation.kind]
            kept = "keeps the whole image" if whole else "keeps too much of the image"
            problems.append(f"ablation {ablation.label} {kept}: a 1×1 patch already overlaps Δ = {overlap} of its "
                            f"{positions} positions, more than half, so no point could ever be certified")
            continue
        needed = 0.5 + ablation.delta(smallest) / positions
        bound = highest_lower_bound(randomized["n"], randomized["alpha"])
        if randomized["enabled"] and needed >= 1:
            problems.append(f"randomized: with ablation {ablation.label} a certificate at patch size {smallest} needs a "
                            f"lower bound above 1/2 + Δ/P = 1/2 + {ablation.delta(smallest)}/{positions} ≥ 1, which no "
                            "number of draws reaches, so no point could ever be certified")
        elif randomized["enabled"] and bound <= needed:
            problems.append(f"randomized.n is {randomized['n']}, too few for alpha {randomized['alpha']:g} with ablation "
                            f"{ablation.label}: even if every draw votes for the top class the lower bound is {bound:.3f}, "
                            f"not above 1/2 + Δ/P = {needed:.3f} at patch size {smallest}, so no point could ever be "
                            f"certified; n must be at least {fewest_draws(randomized['alpha'], needed)}")
    return problems


def _list_problems(name: str, defense: Mapping[str, Any]) -> list[str]:
    """Thresholds that vote for nothing meaningful or share a certificate name, patch sizes listed twice."""
    where = f"defenses.{name}"
    problems = [f"{where}.thresholds: θ = 1 votes only for a class whose softmax is exactly 1 (a rounding "
                "accident), so its votes and certificate mean nothing; use θ < 1" for t in defense["thresholds"] if t >= 1]
    names: dict[str, list[float]] = {}
    for t in defense["thresholds"]:
        names.setdefault(f"theta_{t:g}", []).append(t)
    problems += [f"{where}.thresholds {same} all make the certificate {label} (θ is named to 6 significant "
                 "digits): list each threshold once, different in its first 6 digits"
                 for label, same in names.items() if len(same) > 1]
    attacked = defense["attack"]["patch_sizes"] or []
    for key, sizes in (("patch_sizes", defense["patch_sizes"]), ("attack.patch_sizes", attacked)):
        twice = sorted({m for m in sizes if sizes.count(m) > 1})
        if twice:
            problems.append(f"{where}.{key} lists {twice} more than once")
    return problems


def defense_row_params(config: Config, wildcards: Any, **extra: Any) -> dict[str, Any]:
    """The parameters of a patch defense's rows: the common ones, the model, ``extra``, the test points
    and the empirical attack's settings (if enabled)."""
    defense = config["defenses"][wildcards.defense]
    skip, limit, indices = defense["skip"], defense["max"], defense["test_indices"]
    attack = defense["attack"]
    attacked = ({f"attack_{key}": attack[key] for key in ("n_points", "steps", "step_size", "restarts", "stride")}
                | {"attack_undefended": attack["undefended"] or "-"} if attack["enabled"] else {})
    return {**common_params(config, wildcards), "arch": defense["arch"], "epochs": defense["train"]["epochs"],
            **extra, **test_point_params(skip, limit, indices), **attacked}


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
    train.save_shard(output, spec, [0], states, trained_for={"method": METHOD, "ablation": dict(ablation)})


def gather_patch(shard_paths: Sequence[str], output: str, checks: Mapping[str, Any]) -> None:
    """Concatenate the certify shards of one ablation in ``idx`` order, each checked (:func:`read_certify`)
    against the points of its shard; the triggered copies in every shard or in none."""
    import pandas as pd

    shards = point_shards(checks["test_size"], checks)
    if len(shards) != len(shard_paths):
        raise ArtifactError(f"{output}: {len(shard_paths)} certify shards given, the config implies {len(shards)}")
    frames = [read_certify(path, checks, points) for path, points in zip(shard_paths, shards)]
    copies = {path: bool(frame["triggered"].any()) for path, frame in zip(shard_paths, frames)}
    if len(set(copies.values())) > 1:
        without = [path for path, triggered in copies.items() if not triggered]
        raise ArtifactError(f"{without[0]}: no triggered copies, while other shards of {output} have them")
    frame = pd.concat(frames, ignore_index=True).sort_values(["idx", "triggered", "rule"], kind="stable")
    CERTIFY_TSV.write(frame, output)


def read_certify(path: str, checks: Mapping[str, Any], points: np.ndarray, triggered: bool | None = None) -> Any:
    """A certify TSV checked against the config (:meth:`Plan.checks`): its format, a row for every test
    point of ``points``, voting rule and copy (the triggered copies when ``triggered``; None: if the file
    has any) and no other, and every derived field recomputed from the votes (prediction, certified
    class and patch size, the base classifier's accuracy)."""
    import pandas as pd

    frame = CERTIFY_TSV.read(path)
    copies = [0, 1] if (frame["triggered"].any() if triggered is None else triggered) else [0]
    rules = list(checks["rules"])
    expected = len(points) * len(rules) * len(copies)
    if len(frame) != expected:
        raise ArtifactError(f"{path}: {len(frame)} rows, the config implies {expected} ({len(points)} test points × "
                            f"{len(rules)} voting rules × {len(copies)} copies)")
    require_keys(path, frame, pd.MultiIndex.from_product([copies, rules, np.sort(points)],
                                                         names=["triggered", "rule", "idx"]))
    _require_votes_follow(path, frame, checks)
    return frame


def read_attack(path: str, checks: Mapping[str, Any], labels: Mapping[int, int]) -> Any:
    """An attack TSV checked against the config: its format, a row for every attacked point, patch size
    (0: none) and model and no other, and each point's label as the certify TSV's (``labels``: idx → label)."""
    import pandas as pd

    spec = checks["attack"]
    points = certified_points(checks["test_size"], checks["skip"], checks["max"], checks["test_indices"])
    points = points[:spec["n_points"]]
    models = [*(rule for rule in checks["rules"] if rule != RANDOMIZED), *(["undefended"] if spec["undefended"] else [])]
    sizes = [0, *spec["patch_sizes"]]
    frame = ATTACK_TSV.read(path, rows=len(points) * len(sizes) * len(models))
    require_keys(path, frame, pd.MultiIndex.from_product([models, sizes, np.sort(points)],
                                                         names=["model", "patch_size", "idx"]))
    require_derived(path, frame, "label", frame["idx"].map(labels), "the certify TSV's label of the point")
    return frame


def _require_votes_follow(path: str, frame: Any, checks: Mapping[str, Any]) -> None:
    """Refuse a certify TSV whose prediction, certificate or base accuracy does not follow from its votes."""
    import pandas as pd

    from robustcert import patch

    spec = checks["ablation"]
    ablation = Ablation(spec["kind"], spec["size"], spec["height"], spec["width"], spec["count"])
    positions, sizes = ablation.num_positions, range(1, min(ablation.height, ablation.width) + 1)
    counts = frame[[c for c in frame.columns if c.startswith("count_")]].to_numpy()
    classes = frame[["label", "predict", "certified_class"]].to_numpy()
    refuse_rows(path, frame, (classes >= counts.shape[1]).any(axis=1),
                f"a class without a vote column (count_0 … count_{counts.shape[1] - 1})")
    require_derived(path, frame, "label", frame.groupby("idx")["label"].transform("first"),
                    "the label of the point's other rows")
    top = (frame["rule"] == TOP_ONE).to_numpy()
    refuse_rows(path, frame, top & (counts.sum(axis=1) != positions),
                f"top-one votes that do not add up to the {positions} positions")
    refuse_rows(path, frame, (frame["rule"] != RANDOMIZED).to_numpy() & (counts > positions).any(axis=1),
                f"more votes for a class than the {positions} positions")
    for rule in checks["rules"]:
        rows = (frame["rule"] == rule).to_numpy()
        if rule == RANDOMIZED:
            _require_randomized(path, frame[rows], counts[rows], checks["randomized"], ablation, sizes)
            continue
        prediction, _ = patch.certify_votes(counts[rows], 0)
        for column, derived in (("predict", prediction), ("certified_class", prediction),
                                ("certified_patch", patch.largest_certified(counts[rows], ablation, sizes))):
            require_derived(path, frame[rows], column, derived, "the votes")
    key = pd.MultiIndex.from_frame(frame[["idx", "triggered"]])
    share = counts[np.arange(len(frame)), frame["label"]] / positions
    base = pd.Series(share[top], index=key[top]).reindex(key).to_numpy()
    require_derived(path, frame, "base_correct", base, "the top-one votes for the label", close=True)


def _require_randomized(path: str, frame: Any, counts: np.ndarray, spec: Mapping[str, Any], ablation: Ablation,
                        sizes: range) -> None:
    """Refuse randomized rows whose votes are not the ``n`` draws, or whose prediction or certificate
    does not follow from them (a certified class must have a lower bound above 1/2)."""
    from robustcert import patch

    refuse_rows(path, frame, counts.sum(axis=1) != spec["n"], f"votes that do not add up to the {spec['n']} draws")
    certified = frame["certified_class"].to_numpy()
    top = np.where(certified >= 0, certified, counts.argmax(axis=1))
    derived = patch.randomized_certificate(counts, top, spec["n"], spec["alpha"], ablation, sizes)
    require_derived(path, frame, "predict", derived["predict"], "the draws")
    abstained = certified < 0
    require_derived(path, frame, "certified_class", np.where(abstained, certified, derived["certified_class"]),
                    "the draws")
    require_derived(path, frame, "certified_patch", np.where(abstained, 0, derived["certified_patch"]), "the draws")


def concatenate_shards(shard_paths: Sequence[str], output: str, keys: Sequence[str],
                       read: Callable[[str], Any] | None = None) -> None:
    """Concatenate certify shards in ``keys`` order (each shard non-empty, no test point certified twice
    under the same ``keys``); each shard read by ``read`` (a plain TSV reader if None)."""
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
    CERTIFY_TSV.write(pd.concat(frames, ignore_index=True), output)  # the job's time: in the log and results/benchmarks


def _smoothed(model_path: str, split: Any, settings: Mapping[str, Any], target: Any) -> Any:
    """The smoothed classifier of a trained base model, batches sized by the settings."""
    from robustcert import patch, train

    channels, height, width = split.image_shape
    purpose = {"method": METHOD, "ablation": dict(settings["ablation"]), "arch": settings["arch"],
               "in_channels": 2 * channels}
    _, _, models = train.load_shard(model_path, purpose)
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
        model = train.load_shard(path, {"method": "undefended"})[2][0].to(target)
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
                    patch_sizes: Sequence[int], checks: Mapping[str, Any]) -> None:
    """The results rows of one ablation, one certificate per voting rule: clean accuracy of the smoothed
    and of the base classifier, certified accuracy against the patch size and, for an attack with a
    trigger, attack success rate (without and with the target class), robust accuracy, and the robust
    accuracy certified for the trigger's size (a trigger is a patch: its side is that of the square that
    covers it). With the empirical patch
    attack (``attack_paths``: none or one TSV), its accuracy beside the certified accuracy on the same
    points, and the undefended model's."""
    from robustcert import metrics
    from robustcert.poison import load_poison

    attack = load_poison(poison_path)
    points = certified_points(checks["test_size"], checks["skip"], checks["max"], checks["test_indices"])
    frame = read_certify(certify_path, checks, points, triggered=attack.trigger is not None)
    labels = dict(zip(frame["idx"], frame["label"]))
    attacked = [read_attack(path, checks, labels) for path in attack_paths]
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
        for attack_frame in attacked:
            numbers += _attack_metrics(attack_frame, clean, rule)
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
    from robustcert.plot import PatchCurve

    if spec["kind"] == "attack":
        return undefended_curves(ATTACK_TSV.read(path), spec)
    frame = CERTIFY_TSV.read(path)
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


def undefended_problems(config: Config, defenses: Iterable[str]) -> list[str]:
    """Attacks of these defenses alongside an undefended model that is not a defense of method undefended."""
    found = []
    for name in sorted(set(defenses)):
        undefended = config["defenses"][name]["attack"]["undefended"]
        if undefended is not None and config["defenses"].get(undefended, {}).get("method") != "undefended":
            found.append(f"defenses.{name}.attack.undefended is {undefended!r}, not a defense of method undefended")
    return found
