"""No defense (rules/undefended.smk): one model trained on the whole (poisoned) training set by the
ensemble stage, the baseline that backdoor papers compare every defense with. Its results rows are
the model's clean accuracy and, for attacks with a trigger, its attack success rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.config import Config
from robustcert.results import Metric, tidy_rows, write_rows
from robustcert.workflow.common import common_params, defense_colors, experiments_of, row_keys
from robustcert.workflow.ensemble import Layout

METHOD = "undefended"
CERTIFICATE = "uncertified"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/undefended.tsv"


def layout(defense: Mapping[str, Any]) -> Layout:
    """One model on the whole training set."""
    return Layout("whole", k=1)


class Plan:
    """The undefended models of a config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])

    def rows(self) -> list[str]:
        """The row file of every experiment."""
        return [ROW.format(**vars(e)) for e in self.experiments]

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open the model's rows."""
        return row_keys(self.config, wildcards, CERTIFICATE)

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change the model's numbers."""
        defense = self.config["defenses"][wildcards.defense]
        return {**common_params(self.config, wildcards), "arch": defense["arch"], "epochs": defense["train"]["epochs"]}


def summarize_undefended(scores_path: str, output: str, keys: Mapping[str, str], params: Mapping[str, Any]) -> None:
    """The results rows of the one model: test accuracy and, where the attack has a trigger, attack success
    rate (without and with the target class) and robust accuracy on the triggered test images."""
    from robustcert import evaluate, metrics

    scores = evaluate.load_scores(scores_path, models=1)
    triggered = scores["triggered_logits"][:, 0].argmax(axis=1)
    target, true_labels = int(scores["target"]), scores["labels"][scores["triggered_index"]]
    numbers = [Metric("n_test", len(scores["labels"])), Metric("accuracy", float(scores["base_accuracy"][0])),
               *(Metric(name, value) for name, value in metrics.trigger_metrics(triggered, true_labels, target).items())]
    write_rows(output, tidy_rows(keys, params, numbers))


class BesideUndefended:
    """What the plan of a method whose per-dataset plot sets it beside the undefended model shares: its
    ``cells(dataset)`` are (experiment, certificate or σ) pairs."""

    config: Config

    def dataset_colors(self, wildcards: Any) -> dict[str, str]:
        """The colours of the defenses in the dataset's plot (the same in every figure of the run)."""
        return defense_colors(self.config, (e.defense for e, _ in self.cells(wildcards.dataset)))

    def dataset_undefended(self, wildcards: Any) -> list[str]:
        """The undefended model's rows on the dataset's attacks: its accuracy is each panel's reference."""
        attacks = {e.attack for e, _ in self.cells(wildcards.dataset)}
        return [ROW.format(**vars(e)) for e in experiments_of(self.config, [METHOD])
                if e.dataset == wildcards.dataset and e.attack in attacks]

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open the certificate's rows."""
        return row_keys(self.config, wildcards, wildcards.certificate)


def curves_beside_undefended(tsv_paths: Sequence[str], curves: Sequence[Mapping[str, str]],
                             undefended_rows: Sequence[str]) -> tuple[list[Any], dict[str, float]]:
    """The curves of a per-dataset plot (each certificate TSV with its attack, defense, certificate and
    optional label; the TSVs of one curve's replicates become one curve) and the undefended model's
    accuracy per attack (its mean over seeds), each panel's reference."""
    from robustcert import plot, results
    from robustcert.evaluate import CERTIFICATE

    replicates: dict[tuple, list] = {}
    for curve, path in zip(curves, tsv_paths):
        replicates.setdefault(tuple(curve.items()), []).append(CERTIFICATE.read(path))
    drawn = [plot.Curve(**dict(curve), frames=tuple(frames)) for curve, frames in replicates.items()]
    rows = results.concatenate(results.read_rows(p) for p in undefended_rows)
    accuracy = rows[rows["metric"] == "accuracy"].groupby("attack", sort=False)["value"].mean()
    return drawn, accuracy.to_dict()
