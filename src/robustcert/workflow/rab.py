"""RAB, randomized smoothing of the training set (rules/rab.smk; Weber et al.; robustcert.rab).

A defense of method ``rab`` trains its N = ``n_models`` models with the ensemble rules: every model
on the whole (poisoned) training set (assignment ``whole``) plus a fixed per-example noise draw of
σ (training objective ``fixed_noise``), ``models_per_job`` models per ``gpu=1`` job, and scores them
on the test inputs plus a fixed test-time noise draw per model. Here each certificate the defense
lists (:data:`robustcert.rab.CERTIFICATES`: ``rab``, and ``rab_expected``, which is not a
certificate) is computed from the softmax of that one score matrix, its results rows written under
axis ``l2_train``, and a plot per dataset draws certified accuracy against the radius per σ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.config import Config, refuse
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import undefended
from robustcert.workflow.common import common_params, experiments_of, one_of
from robustcert.workflow.ensemble import Layout

METHOD = "rab"
CERTIFY = "<results>/certify/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
PLOT = "<results>/plots/{dataset}/rab_l2_budget.{ext}"


def layout(defense: Mapping[str, Any]) -> Layout:
    """N models, each on the whole training set."""
    return Layout("whole", k=int(defense["n_models"]), per_job=int(defense["models_per_job"]))


def recipe(defense: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's ``train`` recipe on the training set plus a fixed noise draw of σ per example and model."""
    return {**defense["train"], "objective": "fixed_noise", "noise_sigma": float(defense["sigma"])}


def scoring_sigma(defense: Mapping[str, Any]) -> float:
    """The σ of each model's fixed test-time noise: the training σ."""
    return float(defense["sigma"])


def certifiable_problems(name: str, defense: Mapping[str, Any]) -> list[str]:
    """A RAB defense whose N models are too few for its α: the Hoeffding margin h ≥ 1/2 leaves p̲_A ≤ p̄_B
    at every point, so its certificate ``rab`` is radius 0 everywhere."""
    from robustcert.rab import fewest_certifying_models, hoeffding_margin

    n_models, alpha = defense["n_models"], defense["alpha"]
    margin = hoeffding_margin(n_models, alpha)
    if "rab" not in defense["certificates"] or margin < 0.5:
        return []
    return [f"defenses.{name}.n_models is {n_models}, too few for alpha {alpha:g}: the Hoeffding margin "
            f"h = √(ln(1/α)/2N) = {margin:.3f} ≥ 1/2 leaves p̲_A ≤ p̄_B on every point, so the certificate rab "
            f"would be radius 0 and certified accuracy 0 at every radius whatever the models do; it needs at "
            f"least {fewest_certifying_models(alpha)} models (or a larger alpha, or only rab_expected)"]


class Plan(undefended.BesideUndefended):
    """The certificates, rows and plots that the config asks of RAB defenses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])
        refuse([problem for name, defense in config["defenses"].items() if defense["method"] == METHOD
                for problem in certifiable_problems(name, defense)])

    def cells(self, dataset: str | None = None) -> list[tuple[Any, str]]:
        """(experiment, certificate) for every certificate asked for, optionally of one dataset."""
        return [(e, certificate) for e in self.experiments if dataset in (None, e.dataset)
                for certificate in self.config["defenses"][e.defense]["certificates"]]

    def rows(self) -> list[str]:
        """The row file of every certificate."""
        return [ROW.format(**vars(e), certificate=c) for e, c in self.cells()]

    def certificate_constraint(self) -> str:
        """The {certificate} names these rules make."""
        return one_of(c for _, c in self.cells())

    def plots(self) -> list[str]:
        """The certified-accuracy-against-radius plot of every dataset with a RAB defense."""
        datasets = sorted({e.dataset for e in self.experiments})
        return [PLOT.format(dataset=d, ext=ext) for d in datasets for ext in ("png", "pdf")]

    def certify_params(self, wildcards: Any) -> dict[str, float | int]:
        """What the certificate reads: σ, α and the number of models the scores must hold."""
        defense = self.config["defenses"][wildcards.defense]
        return {"sigma": float(defense["sigma"]), "alpha": float(defense["alpha"]), "n_models": int(defense["n_models"])}

    def radii(self, wildcards: Any) -> list[float]:
        """The radii at which the rows report certified accuracy."""
        return [float(r) for r in self.config["defenses"][wildcards.defense]["radii"]]

    def dataset_certificates(self, wildcards: Any) -> list[str]:
        """The clean certificate TSVs of one dataset, for its plot."""
        return [CERTIFY.format(**vars(e), certificate=c) for e, c in self.cells(wildcards.dataset)]

    def dataset_curves(self, wildcards: Any) -> list[dict[str, str]]:
        """What each of those TSVs is (attack, defense with its σ, certificate), for the panels and legend."""
        defenses = self.config["defenses"]
        return [{"attack": e.attack, "defense": e.defense, "certificate": c,
                 "label": f"{e.defense} (σ={defenses[e.defense]['sigma']:g}) · {c}"}
                for e, c in self.cells(wildcards.dataset)]

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change the certificate's numbers (δ of the attack, where it has one)."""
        defense = self.config["defenses"][wildcards.defense]
        attack = self.config["attacks"][wildcards.attack]
        delta = {"delta": attack["delta"]} if "delta" in attack else {}
        return {**common_params(self.config, wildcards), "arch": defense["arch"], "sigma": defense["sigma"],
                "n_models": defense["n_models"], "alpha": defense["alpha"], "epochs": defense["train"]["epochs"],
                **delta}


def certify_rab(scores_path: str, certificate: str, sigma: float, alpha: float, n_models: int, clean_output: str,
                triggered_output: str) -> None:
    """Write the certificate TSVs (``idx label predict radius correct``; ``target`` too on the triggered
    set) of one certificate of the softmax of the score matrix of ``n_models`` models, on the clean and
    triggered test sets."""
    from robustcert import evaluate

    scores = evaluate.load_scores(scores_path, models=n_models)
    clean, triggered = certificate_frames(scores, certificate, sigma, alpha)
    log_summary(certificate, clean)
    evaluate.CERTIFICATE.write(clean, clean_output)
    evaluate.TRIGGERED_CERTIFICATE.write(triggered, triggered_output)


def certificate_frames(scores: Mapping[str, Any], certificate: str, sigma: float, alpha: float) -> tuple[Any, Any]:
    """The clean and triggered certificate rows of one certificate of a score matrix."""
    import numpy as np
    import pandas as pd

    from robustcert import rab

    if certificate not in rab.CERTIFICATES:
        raise ValueError(f"unknown RAB certificate {certificate!r}; known: {sorted(rab.CERTIFICATES)}")
    labels, index = scores["labels"], scores["triggered_index"]
    frames = []
    for logits, rows in ((scores["logits"], np.arange(len(labels))), (scores["triggered_logits"], index)):
        prediction, radius = rab.CERTIFICATES[certificate](rab.softmax(logits), sigma, alpha)
        frames.append(pd.DataFrame({"idx": rows, "label": labels[rows], "predict": prediction, "radius": radius,
                                    "correct": (prediction == labels[rows]).astype(np.int64)}))
    return frames[0], frames[1].assign(target=int(scores["target"]))


def _require_from_scores(path: str, found: Any, derived: Any) -> None:
    """Refuse a certificate TSV whose rows differ from those recomputed from the score matrix."""
    from robustcert.artifacts import require_derived

    for column in derived.columns:
        require_derived(path, found, column, derived[column], "the score matrix", close=column == "radius")


def log_summary(certificate: str, frame: Any) -> None:
    """One line of the clean certificate in the job's log."""
    from robustcert.workflow import log

    log.info("%s: accuracy %.4f, certified (R > 0) %.4f, median radius %.4f", certificate, frame["correct"].mean(),
             (frame["radius"] > 0).mean(), frame["radius"].median())


def summarize_rab(split_path: str, poison_path: str, scores_path: str, clean_path: str, triggered_path: str,
                  output: str, keys: Mapping[str, str], params: Mapping[str, Any], radii: Sequence[float],
                  certificate: str, certify: Mapping[str, Any]) -> None:
    """Write the results rows of one certificate (docs/metrics.md, RAB), its TSVs checked against the
    score matrix they come from (``certify``: σ, α and the number of models, as :func:`certify_rab`)."""
    import numpy as np

    from robustcert import evaluate, metrics, rab
    from robustcert.poison import load_poisoned_training_set

    split, attack, _, _ = load_poisoned_training_set(split_path, poison_path)
    scores = evaluate.load_scores(scores_path, models=certify["n_models"])
    clean = evaluate.CERTIFICATE.read(clean_path, rows=len(scores["labels"]))
    triggered = evaluate.TRIGGERED_CERTIFICATE.read(triggered_path, rows=len(scores["triggered_index"]))
    derived = certificate_frames(scores, certificate, certify["sigma"], certify["alpha"])
    for path, found, recomputed in zip((clean_path, triggered_path), (clean, triggered), derived):
        _require_from_scores(path, found, recomputed)
    training_l2, needed = rab.total_trigger_norms(attack, split)
    if len(needed) != len(triggered) or not np.array_equal(triggered["idx"], scores["triggered_index"]):
        raise ValueError(f"{triggered_path}: the triggered test points do not match the attack {poison_path}")
    target = int(scores["target"])
    counted = metrics.non_target(triggered["label"], target)
    total = float(np.mean(needed[counted])) if counted.any() else float("nan")
    numbers = [Metric("n_test", len(clean)), Metric("accuracy", float(clean["correct"].mean())),
               Metric("base_accuracy_mean", float(np.mean(scores["base_accuracy"]))),
               Metric("certified_ratio", float((clean["radius"] > 0).mean())),
               Metric("poison_samples", len(attack.index)), Metric("poison_l2_train", training_l2),
               Metric("total_trigger_l2", total),
               Metric("certified_vs_attack", float(rab.certified_accuracy(clean["radius"], clean["correct"], [total])[0])
                      if counted.any() else float("nan")),
               *(Metric(name, value) for name, value in
                 metrics.trigger_metrics(triggered["predict"], triggered["label"], target).items()),
               Metric("certified_ra", rab.certified_robust_accuracy(triggered["predict"], triggered["label"],
                                                                    triggered["radius"], needed, target))]
    numbers += on_axis("cert_acc", rab.AXIS, radii, rab.certified_accuracy(clean["radius"], clean["correct"], radii))
    write_rows(output, tidy_rows(keys, params, numbers))


def plot_l2_budget(tsv_paths: Sequence[str], curves: Sequence[Mapping[str, str]], undefended_rows: Sequence[str],
                   colors: Mapping[str, str], title: str, outputs: Sequence[str], intervals: bool = False) -> None:
    """Plot certified accuracy against the L2 radius of the total trigger: a panel per attack, a line per
    RAB defense (σ in its label) and certificate, the undefended model's accuracy as the panel's reference."""
    from robustcert import plot

    plot.plot_l2_budget(*undefended.curves_beside_undefended(tsv_paths, curves, undefended_rows), colors, title, outputs,
                        intervals)
