"""Backdoor detection in robust models (rules/detection.smk; Soremekun et al., robustcert.detection).

A defense of method ``detection`` trains one model on the whole (poisoned) training set with the
ensemble rules, its recipe's objective PGD adversarial training (:func:`recipe`). Per model this stage
then computes the adversarial accuracy under the training attack, translates validation images into
every label and clusters their features (a TSV of labels × clusters, the 2-D points, a gallery of
translated images), plots the clusters and the gallery, and writes the results rows: clean accuracy,
adversarial accuracy, attack success rate, clusters and verdict per label, the flagged labels, the
true target, whether the backdoor was detected (only when its target label is flagged) and whether
another label was flagged (a false positive). Over all models, a table of each model's flagged labels,
true target and verdict, and one of the verdicts against the truth (true and false positives and
negatives, precision, recall) per label and per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.artifacts import Array, Column, NpzFormat, TsvFormat
from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log
from robustcert.workflow.common import common_params, experiments_of, row_keys
from robustcert.workflow.ensemble import SHARD, Layout

METHOD = "detection"
CERTIFICATE = "translation_clusters"
FOLDER = "<results>/detection/{dataset}/seed_{seed}/{attack}/{defense}"
ADVERSARIAL = FOLDER + "/adversarial.tsv"
CLUSTERS = FOLDER + "/clusters.tsv"
EMBEDDING = FOLDER + "/embedding.npz"
GALLERY = FOLDER + "/gallery.npz"
CLUSTER_PLOT = "<results>/plots/{dataset}/seed_{seed}/detection/{attack}/{defense}_clusters.{ext}"
GALLERY_PLOT = "<results>/plots/{dataset}/seed_{seed}/detection/{attack}/{defense}_gallery.{ext}"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/detection.tsv"
VERDICTS = "<results>/tables/detection/verdicts.tsv"
CONFUSION = "<results>/tables/detection/confusion.tsv"
_COUNT = Column("int", minimum=0)
# clusters.tsv: a row per label; embedding.npz: a point per translated or clean image probed;
# gallery.npz: translated images per label
CLUSTERS_TSV = TsvFormat("clusters", {"label": _COUNT, "clusters": _COUNT, "flagged": Column("int", allowed=(0, 1)),
                                      "sizes": Column("str"), "n_translated": _COUNT, "n_clean": _COUNT})
CLUSTER_COLUMNS = list(CLUSTERS_TSV.columns)
EMBEDDING_NPZ = NpzFormat("embedding", {"label": Array("iu", 1), "embedding": Array("f", 2), "cluster": Array("iu", 1),
                                        "translated": Array("b", 1)})
GALLERY_NPZ = NpzFormat("gallery", {"source_index": Array("iu", 1), "sources": Array("u", 4), "examples": Array("u"),
                                    "mean": Array("f"), "success": Array("f")})


def layout(defense: Mapping[str, Any]) -> Layout:
    """One model on the whole training set."""
    return Layout("whole", k=1)


def recipe(defense: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's ``train`` recipe with PGD adversarial training by its ``adversary``."""
    adversary = defense["adversary"]
    return {**defense["train"], "objective": "adversarial", "pgd_norm": adversary["norm"],
            "pgd_epsilon": adversary["epsilon"], "pgd_step_size": adversary["step_size"],
            "pgd_steps": adversary["steps"], "pgd_random_start": adversary["random_start"]}


def setting_problems(name: str, defense: Mapping[str, Any]) -> list[str]:
    """Settings that make detection meaningless: adversarial training that does not attack (0 steps or
    ε = 0), a cluster threshold of 1 with the estimated bandwidth (which splits every label's translated
    and clean images into 2 clusters; a fixed bandwidth as wide as a clean label's cloud may flag at 1)."""
    where, adversary = f"defenses.{name}", defense["adversary"]
    problems = [f"{where}.adversary.{key} is 0: the model would not be adversarially trained (robust models "
                "are what makes a backdoor's translations cluster apart), and its adversarial accuracy would be "
                "its clean accuracy" for key in ("steps", "epsilon") if adversary[key] == 0]
    if defense["clustering"]["threshold"] < 2 and defense["clustering"].get("bandwidth") is None:
        problems.append(f"{where}.clustering.threshold is {defense['clustering']['threshold']}: a label is flagged with "
                        "more clusters than this, and with the estimated bandwidth the translated and the clean images "
                        "of every label, infected or not, form 2, so every label would be flagged; use 2 (or more), "
                        "or set clustering.bandwidth as wide as a clean label's cloud on the t-SNE plane")
    return problems


def _fresh_model(arch: str, dataset: Mapping[str, Any]) -> Any:
    """The architecture, freshly initialised, for a dataset's images and classes."""
    from robustcert.data import NUM_CLASSES, image_shape
    from robustcert.models import build_model

    channels, height, _ = image_shape(dataset)
    return build_model(arch, channels, len(dataset.get("classes") or []) or NUM_CLASSES, height,
                       [0.0] * channels, [1.0] * channels)


class Plan:
    """The robust models of a config that are probed for backdoors."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])
        refuse([p for name in sorted({e.defense for e in self.experiments})
                for p in setting_problems(name, config["defenses"][name])] + self._layer_problems())

    def _layer_problems(self) -> list[str]:
        """``features.layer`` names that the architecture, built for the dataset, does not have: checked
        here, before the robust model is trained, rather than after it (torch is loaded only for a
        config that names a layer)."""
        problems = []
        for dataset, name in sorted({(e.dataset, e.defense) for e in self.experiments}):
            defense = self.config["defenses"][name]
            if defense["features"]["layer"] is not None:
                from robustcert.models import find_layer

                try:
                    find_layer(_fresh_model(defense["arch"], self.config["datasets"][dataset]), defense["features"]["layer"])
                except ValueError as error:
                    problems.append(f"defenses.{name}.features.layer ({defense['arch']} on datasets.{dataset}): {error}")
        return problems

    def rows(self) -> list[str]:
        """The row file of every model."""
        return [ROW.format(**vars(e)) for e in self.experiments]

    def plots(self) -> list[str]:
        """The cluster grid and the gallery of every model, and the verdict tables over all models."""
        figures = [path.format(**vars(e), ext=ext) for e in self.experiments for path in (CLUSTER_PLOT, GALLERY_PLOT)
                   for ext in ("png", "pdf")]
        return [*figures, VERDICTS, CONFUSION] if self.experiments else []

    def model(self, wildcards: Any) -> str:
        """The checkpoint of the one robust model (the ensemble's only shard)."""
        return SHARD.format(dataset=wildcards.dataset, seed=wildcards.seed, attack=wildcards.attack,
                            defense=wildcards.defense, shard=0)

    def adversary_params(self, wildcards: Any) -> dict[str, Any]:
        """The attack of the adversarial accuracy: the training attack."""
        return canonical(self.config["defenses"][wildcards.defense]["adversary"])

    def probe_params(self, wildcards: Any) -> dict[str, Any]:
        """What translation, features and clustering read."""
        defense = self.config["defenses"][wildcards.defense]
        return canonical({key: defense[key] for key in ("translation", "features", "clustering")})

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open the model's rows."""
        return row_keys(self.config, wildcards, CERTIFICATE)

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change the model's numbers."""
        defense = self.config["defenses"][wildcards.defense]
        adversary, translation = defense["adversary"], defense["translation"]
        return {**common_params(self.config, wildcards), "arch": defense["arch"], "epochs": defense["train"]["epochs"],
                "adv_norm": adversary["norm"], "adv_epsilon": adversary["epsilon"], "adv_steps": adversary["steps"],
                "translation_n": translation["n"], "translation_epsilon": translation["epsilon"],
                "translation_steps": translation["steps"], "layer": defense["features"]["layer"] or "penultimate",
                "threshold": defense["clustering"]["threshold"]}

    def threshold(self, wildcards: Any) -> int:
        """The verdict's threshold: a label with more clusters is flagged."""
        return int(self.config["defenses"][wildcards.defense]["clustering"]["threshold"])

    def title(self, wildcards: Any) -> str:
        """The figures' title."""
        return f"{wildcards.dataset} · {wildcards.attack} · {wildcards.defense}"


def _load_model(model_path: str, target: Any) -> Any:
    from robustcert import train

    _, _, models = train.load_shard(model_path, {"method": METHOD})
    if len(models) != 1:
        raise ValueError(f"{model_path}: {len(models)} models, detection probes one")
    return models[0].to(target).eval()


def evaluate_robust_model(split_path: str, model_path: str, output: str, adversary: Mapping[str, Any], seed: int,
                          device: str, threads: int) -> None:
    """Write the model's predictions on the adversarial examples of the test set (``idx label predict
    correct``) under the training attack, its random start (if any) seeded with the config's seed."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert import data, detection
    from robustcert.evaluate import PREDICTIONS
    from robustcert.pgd import PGD

    split = data.load_split(split_path)
    model = _load_model(model_path, target)
    attack = PGD(adversary["norm"], adversary["epsilon"], adversary["step_size"], adversary["steps"],
                 adversary["random_start"])
    y = torch.from_numpy(split.y_test).to(target)
    predict = detection.adversarial_predictions(model, _images(split.x_test, target), y, attack,
                                                torch.Generator().manual_seed(derive_seed(seed)))
    predict = predict.cpu().numpy()
    frame = pd.DataFrame({"idx": range(len(y)), "label": split.y_test, "predict": predict,
                          "correct": (predict == split.y_test).astype(int)})
    log.info("adversarial accuracy %.4f under %s", frame["correct"].mean(), attack)
    PREDICTIONS.write(frame, output)


def detect_backdoor(split_path: str, model_path: str, clusters_output: str, embedding_output: str,
                    gallery_output: str, probe: Mapping[str, Any], seed: int, device: str, threads: int) -> None:
    """Translate validation images into every label, cluster the features per label, write the verdicts.

    One generator seeded with the config's seed draws, in order: the translated images, then per
    label the order of its clean images and the seed of its PCA and t-SNE.
    """
    target = compute_prologue(threads, device)
    import numpy as np
    import pandas as pd

    from robustcert import data, detection

    split = data.load_split(split_path)
    model = _load_model(model_path, target)
    translation = probe["translation"]
    rng = np.random.default_rng(derive_seed(seed))
    source = np.sort(rng.choice(len(split.y_val), min(translation["n"], len(split.y_val)), replace=False))
    translator = detection.Translation(translation["epsilon"], translation["step_size"], translation["steps"],
                                       translation["batch_size"])
    translated = translator.translate(model, _images(split.x_val[source], target), range(split.num_classes))
    clustering = detection.Clustering(**probe["clustering"])
    found = [_cluster_label(model, split, t, translated[t], probe, clustering, rng, target)
             for t in range(split.num_classes)]
    rows = [{"label": r.label, "clusters": r.count, "flagged": int(r.flagged(clustering.threshold)),
             "sizes": ",".join(map(str, r.sizes)), "n_translated": int(r.translated.sum()),
             "n_clean": int((~r.translated).sum())} for r in found]
    CLUSTERS_TSV.write(pd.DataFrame(rows, columns=CLUSTER_COLUMNS), clusters_output)
    EMBEDDING_NPZ.write(embedding_output, label=np.concatenate([np.full(len(r.cluster), r.label) for r in found]),
             embedding=np.concatenate([r.embedding for r in found]), cluster=np.concatenate([r.cluster for r in found]),
             translated=np.concatenate([r.translated for r in found]))
    shown = translated[:, :translation["gallery"]].cpu()
    GALLERY_NPZ.write(gallery_output, source_index=split.val_index[source], sources=split.x_val[source[:translation["gallery"]]],
             examples=(shown * 255).round().byte().numpy(), mean=translated.mean(dim=1).cpu().numpy(),
             success=detection.share_reaching_labels(model, translated, translation["batch_size"]).cpu().numpy())


def _images(x: Any, target: Any) -> Any:
    """uint8 images as a float tensor in [0, 1] on the device."""
    import torch

    return (torch.from_numpy(x).float() / 255.0).to(target)


def _cluster_label(model: Any, split: Any, t: int, translated: Any, probe: Mapping[str, Any], clustering: Any,
                   rng: Any, target: Any) -> Any:
    """The clusters of label t: its translated images and (at most n of) its clean validation images."""
    import numpy as np

    from robustcert import detection

    layer, batch = probe["features"]["layer"], probe["translation"]["batch_size"]
    clean = rng.permutation(np.flatnonzero(split.y_val == t))[:probe["translation"]["n"]]
    result = clustering.label_clusters(t, detection.features(model, translated, layer, batch),
                                       detection.features(model, _images(split.x_val[clean], target), layer, batch),
                                       int(rng.integers(2**31)))
    log.info("label %d: %d clusters %s", t, result.count, result.sizes)
    return result


def plot_detection(embedding_path: str, gallery_path: str, clusters_path: str, scores_path: str, title: str,
                   cluster_outputs: Sequence[str], gallery_outputs: Sequence[str]) -> None:
    """The scatter grid of the clusters per label (the flagged labels, the true target and the verdict
    marked) and the gallery of translated images."""
    from robustcert import evaluate, plot

    points = EMBEDDING_NPZ.read(embedding_path)
    verdict = model_verdict(CLUSTERS_TSV.read(clusters_path), int(evaluate.load_scores(scores_path)["target"]))
    plot.plot_cluster_grid(points["label"], points["embedding"], points["cluster"], points["translated"],
                           f"{title}: t-SNE of translated and clean features, by MeanShift cluster", cluster_outputs,
                           verdict)
    gallery = GALLERY_NPZ.read(gallery_path)
    plot.plot_translation_gallery(gallery["sources"], gallery["examples"], gallery["mean"],
                                  f"{title}: images translated into each label", gallery_outputs)


def summarize_detection(scores_path: str, adversarial_path: str, clusters_path: str, output: str,
                        keys: Mapping[str, str], params: Mapping[str, Any], threshold: int) -> None:
    """The model's rows: accuracy, adversarial accuracy, attack success rate, clusters and verdict per
    label, flagged labels, the true target, whether the backdoor was detected (its target flagged) and
    whether another label was flagged (a false positive; docs/metrics.md)."""
    from robustcert import evaluate, metrics

    scores = evaluate.load_scores(scores_path, models=1)
    adversarial = evaluate.PREDICTIONS.read(adversarial_path, rows=len(scores["labels"]))
    clusters = read_clusters(clusters_path, scores["logits"].shape[2], threshold)
    target = int(scores["target"])
    triggered = scores["triggered_logits"][:, 0].argmax(axis=1)
    true_labels = scores["labels"][scores["triggered_index"]]
    verdict = model_verdict(clusters, target)
    numbers = [Metric("n_test", len(scores["labels"])), Metric("accuracy", float(scores["base_accuracy"][0])),
               Metric("adversarial_accuracy", float(adversarial["correct"].mean())),
               Metric("asr", metrics.attack_success_rate(triggered, true_labels, target)),
               Metric("asr_all", metrics.attack_success_rate_all(triggered, target)),
               *on_axis("clusters", "label", clusters["label"], clusters["clusters"]),
               *on_axis("flagged", "label", clusters["label"], clusters["flagged"]),
               Metric("n_flagged", len(verdict.flagged)),
               Metric("true_target", target if verdict.backdoored else float("nan")),
               Metric("detected", float(verdict.detected) if verdict.backdoored else float("nan")),
               Metric("false_positive", float(verdict.false_positive))]
    write_rows(output, tidy_rows(keys, params, numbers))


def read_clusters(path: str, num_classes: int, threshold: int) -> Any:
    """A clusters TSV checked: its format, a row for each of the ``num_classes`` labels, and the derived
    fields (the number of clusters and the points of its sizes, the verdict against ``threshold``)."""
    import numpy as np
    import pandas as pd

    from robustcert.artifacts import refuse_rows, require_derived, require_keys

    clusters = CLUSTERS_TSV.read(path, rows=num_classes)
    require_keys(path, clusters, pd.MultiIndex.from_arrays([range(num_classes)], names=["label"]))
    sizes = [[int(n) if n.isdigit() else -1 for n in cell.split(",")] for cell in clusters["sizes"]]
    refuse_rows(path, clusters, [min(s) < 1 for s in sizes], "sizes that are not positive whole numbers")
    require_derived(path, clusters, "clusters", [len(s) for s in sizes], "its sizes")
    refuse_rows(path, clusters, np.array([sum(s) for s in sizes]) != clusters["n_translated"] + clusters["n_clean"],
                "sizes that do not add up to n_translated + n_clean")
    require_derived(path, clusters, "flagged", (clusters["clusters"] > threshold).astype(int),
                    f"its clusters against the threshold {threshold}")
    return clusters


def model_verdict(clusters: Any, target: int) -> Any:
    """The :class:`robustcert.detection.Verdict` of a clusters table (``label``, ``flagged``) and the
    backdoor's target (−1: none)."""
    from robustcert.detection import Verdict

    return Verdict(tuple(int(t) for t in clusters.loc[clusters["flagged"] == 1, "label"]), target)


def tabulate_detection(row_paths: Sequence[str], output: str, confusion_output: str) -> None:
    """Per model (each replicate, seed, is a model) its flagged labels, true target and verdict
    (``output``); over all models the verdicts against the truth (``confusion_output``) per label
    (positive: the backdoor's target) and per model (detected only when its target is flagged; a false
    positive when another label is)."""
    import pandas as pd

    from robustcert import results
    from robustcert.artifacts import write_tsv
    from robustcert.detection import Verdict

    rows = results.concatenate(results.read_rows(p) for p in row_paths)
    table, verdicts, labels = [], [], []
    for (dataset, attack, defense, params), model in rows.groupby(["dataset", "attack", "defense", "params"],
                                                                  sort=False):
        target = model.loc[model["metric"] == "true_target", "value"].dropna()
        flagged = [(int(float(row.at)), bool(row.value)) for row in model[model["metric"] == "flagged"].itertuples()]
        verdict = Verdict(tuple(label for label, is_flagged in flagged if is_flagged),
                          int(target.iloc[0]) if len(target) else -1)
        verdicts.append(verdict)
        labels += [(label == verdict.target, is_flagged) for label, is_flagged in flagged]
        table.append({"dataset": dataset, "seed": results.parse_params(params).get(results.SEED, ""),
                      "attack": attack, "defense": defense,
                      "true_target": verdict.target if verdict.backdoored else "none",
                      "flagged": ",".join(map(str, verdict.flagged)) or "none", "verdict": verdict.name})
    write_tsv(pd.DataFrame(table), output)
    write_tsv(pd.DataFrame([{"level": "label", **confusion(labels)}, {"level": "model", **model_confusion(verdicts)}]),
              confusion_output)


def model_confusion(verdicts: Sequence[Any]) -> dict[str, float]:
    """The model-level counts: tp a backdoored model with its target flagged, fn one without, fp a model
    with a label other than its target flagged and its target not (a backdoored model with only other
    labels flagged counts as fn and fp), tn a clean model with nothing flagged; precision and recall as
    :func:`confusion`."""
    tp = sum(v.detected for v in verdicts)
    fn = sum(v.backdoored and not v.detected for v in verdicts)
    fp = sum(v.false_positive and not v.detected for v in verdicts)
    tn = sum(not v.backdoored and not v.flagged for v in verdicts)
    return _counts(len(verdicts), tp, fp, tn, fn)


def confusion(pairs: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    """Counts of (truth, verdict) pairs, precision TP/(TP+FP) and recall TP/(TP+FN) (NaN when undefined)."""
    tp = sum(t and v for t, v in pairs)
    fp = sum(v and not t for t, v in pairs)
    fn = sum(t and not v for t, v in pairs)
    return _counts(len(pairs), tp, fp, len(pairs) - tp - fp - fn, fn)


def _counts(n: int, tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    return {"n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}
