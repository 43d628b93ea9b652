"""robustcert: certified robustness against data poisoning, backdoors and adversarial patches.

Use it as a library (``from robustcert import ...``; docs/api.md has a runnable example of each,
docs/methods.md the threat model and formula of each certificate):

Randomized smoothing (Cohen et al.), on any ``torch.nn.Module``:
    certify_smoothing(model, x, num_classes=, sigma=, n0=, n=, alpha=) -> (predictions, L2 radii)
    predict_smoothing(model, x, num_classes=, sigma=, n=, alpha=)       -> predictions (ABSTAIN = -1)
Patch smoothing (Levine & Feizi), band / row / block ablations, θ or top-one votes:
    PatchSmoothing(model, num_classes=, ablation=, size=, threshold=)  .predict(x) .certify(x, m)
        .largest_certified_patch(x) .votes(x)
    with_ablation_channels(model)   -> the model with a first convolution taking 2C channels
Aggregation certificates from score matrices [n, models, classes] or votes [n, models]:
    certify_dpa, certify_fa, certify_dpa_roe, certify_fa_roe -> (predictions, certified poisoning sizes)
    fa_shifts(k, d); train_partitioned(images, labels, make_model, k, d) -> PartitionedEnsemble;
    ensemble_scores(models, images)
RAB (Weber et al.) from per-model class probabilities [n, models, classes]:
    certify_rab(scores, sigma, alpha) -> (predictions, L2 radii)
Metrics on arrays:
    certified_accuracy, average_certified_radius, attack_success_rate, robust_accuracy,
    defense_effectiveness_rate

The rest of the package is the Snakemake workflow's (``pip install 'robustcert[workflow]'``): modules
named for the domain (``data``, ``poison``, ``partition``, ``models``, ``train``, ``score``,
``certify``, ``smoothing``, ``patch``, ``rab``, ``bilevel``, ``analysis``, ``results``, ``plot``) and
``robustcert.workflow``, one stage module per rules file. Importing ``robustcert`` loads none of them:
the API's names load ``robustcert.api`` (and torch) on first use.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``__all__`` and the API's names, the latter loaded from robustcert.api on first use.

    Nothing but ``__version__`` runs on import: the workflow's light jobs load no torch, and the code
    digest of every workflow step, which covers this module's top-level statements
    (robustcert.fingerprint), does not depend on the API.
    """
    if name == "__all__":
        return _api_names()
    if name in _api_names():
        from robustcert import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustcert' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_api_names()))


def _api_names() -> list[str]:
    """The public API (robustcert.api), as ``__all__``."""
    return [
        "ABSTAIN",
        "PartitionedEnsemble",
        "PatchSmoothing",
        "attack_success_rate",
        "average_certified_radius",
        "certified_accuracy",
        "certify_dpa",
        "certify_dpa_roe",
        "certify_fa",
        "certify_fa_roe",
        "certify_rab",
        "certify_smoothing",
        "defense_effectiveness_rate",
        "ensemble_scores",
        "fa_shifts",
        "predict_smoothing",
        "robust_accuracy",
        "train_partitioned",
        "with_ablation_channels",
    ]
