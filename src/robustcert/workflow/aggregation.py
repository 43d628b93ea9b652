"""Partition aggregation (rules/aggregation.smk): Deep Partition Aggregation (method ``dpa``) and
Finite Aggregation (method ``fa``). Both train an ensemble with the ensemble stage (the pixel-sum
hash, k·d subsets) and compute each certificate the defense lists from its one score matrix
(:data:`robustcert.certify.CERTIFICATES`); a results row per certificate, a plot per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.config import Config
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import poison, undefended
from robustcert.workflow.common import common_params, experiments_of, one_of
from robustcert.workflow.ensemble import Layout

METHODS = ("dpa", "fa")
CERTIFY = "<results>/certify/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
PLOT = "<results>/plots/{dataset}/poison_budget.{ext}"


def layout(defense: Mapping[str, Any]) -> Layout:
    """k·d subsets by the pixel-sum hash (d = 1 for DPA)."""
    return Layout("hash", int(defense["k"]), int(defense.get("d", 1)), int(defense["partitions_per_job"]))


class Plan(undefended.BesideUndefended):
    """The certificates, rows and plots that the config asks of DPA and FA defenses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, METHODS)

    def cells(self, dataset: str | None = None, method: str | None = None) -> list[tuple[Any, str]]:
        """(experiment, certificate) for every certificate asked for, optionally of one dataset or method."""
        defenses = self.config["defenses"]
        return [(e, certificate) for e in self.experiments
                if dataset in (None, e.dataset) and method in (None, defenses[e.defense]["method"])
                for certificate in defenses[e.defense]["certificates"]]

    def rows(self, method: str | None = None) -> list[str]:
        """The row file of every certificate (of one method)."""
        return [ROW.format(**vars(e), certificate=c) for e, c in self.cells(method=method)]

    def certificate_constraint(self) -> str:
        """The {certificate} names these rules make: the certificates the defenses list."""
        return one_of(c for _, c in self.cells())

    def plots(self) -> list[str]:
        """The poisoning-budget plot of every dataset with an aggregation defense."""
        datasets = sorted({e.dataset for e in self.experiments})
        return [PLOT.format(dataset=d, ext=ext) for d in datasets for ext in ("png", "pdf")]

    def dataset_certificates(self, wildcards: Any) -> list[str]:
        """The clean certificate TSVs of one dataset, for its plot."""
        return [CERTIFY.format(**vars(e), certificate=c) for e, c in self.cells(wildcards.dataset)]

    def dataset_curves(self, wildcards: Any) -> list[dict[str, str]]:
        """What each of those TSVs is (attack, defense, certificate), for the panels and the legend."""
        return [{"attack": e.attack, "defense": e.defense, "certificate": c} for e, c in self.cells(wildcards.dataset)]

    def dataset_budgets(self, wildcards: Any) -> list[str]:
        """The budget rows of the dataset's attacks (each seed's): each attack's size, marked on the plot."""
        runs = dict.fromkeys((e.dataset, e.seed, e.attack) for e, _ in self.cells(wildcards.dataset))
        return [poison.BUDGET_ROW.format(dataset=d, seed=s, attack=a) for d, s, a in runs]

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change the certificate's numbers."""
        defense = self.config["defenses"][wildcards.defense]
        return {**common_params(self.config, wildcards), "arch": defense["arch"], "k": defense["k"],
                "d": defense.get("d", 1), "epochs": defense["train"]["epochs"]}


def certify_ensemble(scores_path: str, partition_path: str, certificate: str, clean_output: str,
                     triggered_output: str) -> None:
    """Write the certificate TSVs of one certificate on the clean and the triggered test sets."""
    import numpy as np

    from robustcert import evaluate, partition

    parts = partition.load_partition(partition_path)
    scores, shifts = evaluate.load_scores(scores_path, models=parts.num_subsets), parts.shifts
    labels = scores["labels"]
    clean = evaluate.certify_scores(certificate, scores["logits"], labels, np.arange(len(labels)), shifts)
    index = scores["triggered_index"]
    triggered = evaluate.certify_scores(certificate, scores["triggered_logits"], labels[index], index, shifts)
    triggered["target"] = int(scores["target"])
    evaluate.CERTIFICATE.write(clean, clean_output)
    evaluate.TRIGGERED_CERTIFICATE.write(triggered, triggered_output)


def summarize_certificates(scores_path: str, poison_path: str, clean_path: str, triggered_path: str, output: str,
                           keys: Mapping[str, str], params: Mapping[str, Any], budgets: Sequence[int]) -> None:
    """Write the results rows of one certificate (the numbers of docs/metrics.md)."""
    from robustcert import evaluate, metrics, poison

    scores = evaluate.load_scores(scores_path)
    attack = poison.load_poison(poison_path)
    clean = evaluate.CERTIFICATE.read(clean_path, rows=len(scores["labels"]))
    triggered = evaluate.TRIGGERED_CERTIFICATE.read(triggered_path, rows=len(scores["triggered_index"]))
    summary = evaluate.summarize(
        clean, triggered, scores["base_accuracy"],
        metrics.attack_success_per_model(scores["triggered_logits"], scores["labels"][scores["triggered_index"]],
                                         int(scores["target"])),
        attack.symmetric_difference,
    )
    numbers = [Metric(name, value) for name, value in summary.items()]
    numbers += on_axis("cert_acc", "poison_samples", budgets,
                       metrics.certified_accuracy(clean["radius"], clean["correct"], budgets))
    write_rows(output, tidy_rows(keys, params, numbers))


def plot_poison_budget(tsv_paths: Sequence[str], curves: Sequence[Mapping[str, str]], undefended_rows: Sequence[str],
                       colors: Mapping[str, str], title: str, outputs: Sequence[str], intervals: bool = False,
                       budget_rows: Sequence[str] = ()) -> None:
    """Plot certified accuracy against the poisoning budget: a panel per attack, a line per certificate TSV,
    the undefended model's accuracy under each attack as the panel's reference, and each attack's budget
    (its ``budget_rows``)."""
    from robustcert import plot

    plot.plot_poison_budget(*undefended.curves_beside_undefended(tsv_paths, curves, undefended_rows), colors, title,
                            outputs, intervals, attack_budgets(budget_rows))


def attack_budgets(budget_rows: Sequence[str]) -> dict[str, float]:
    """Each attack's budget in poisoned samples (its symmetric difference: insertions plus deletions, the
    unit of the certificates), the largest over seeds, from the attacks' budget rows."""
    from robustcert import results

    if not budget_rows:
        return {}
    rows = results.concatenate(results.read_rows(p) for p in budget_rows)
    sizes = rows[rows["metric"] == "symmetric_difference"]
    return sizes.groupby("attack", sort=False)["value"].max().astype(float).to_dict()
