"""The plan shared by every stage (rules/common.smk): the experiment grid, which experiments a method
or attack type takes part in, the keys that open a results row, and how names appear in paths and
wildcard constraints. It names no method and no attack type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from robustcert.config import Config, Experiment, experiments
from robustcert.style import palette

# a wildcard constraint that matches nothing (for a method or attack type the config does not use)
NOTHING = "(?!)"
# the HTML report's category of each method's figures and tables (a results-table name of RESULT_ROWS);
# the run's overview (headline, all.tsv, the attacks' budgets, BackdoorBench's summary) is OVERVIEW
OVERVIEW = "overview"
REPORT_CATEGORIES = {
    "dpa": "DPA and FA (partition aggregation)", "fa": "DPA and FA (partition aggregation)",
    "smoothing": "randomized smoothing (Cohen et al.)", "bilevel": "bilevel poisoning (Mehra et al.)",
    "rab": "RAB (Weber et al.)", "patch": "patch defenses (Levine & Feizi; Xiang et al.)",
    "patchcleanser": "patch defenses (Levine & Feizi; Xiang et al.)",
    "detection": "backdoor detection (Soremekun et al.)", "undefended": "undefended model", "attacks": OVERVIEW,
}


def one_of(names: Iterable[str]) -> str:
    """A wildcard constraint matching exactly these names."""
    names = sorted(set(names))
    return "|".join(re.escape(n) for n in names) if names else NOTHING


def sigma_label(sigma: float) -> str:
    """How a σ of the config appears in paths, exactly (the shortest text that reads back as σ):
    0.25 → "0.25", 1.0 → "1", 0.1234567 → "0.1234567"."""
    sigma = float(sigma)
    return str(int(sigma)) if sigma.is_integer() else repr(sigma)


def experiments_of(config: Config, methods: Iterable[str] = (), attack_types: Iterable[str] = ()) -> list[Experiment]:
    """The experiments whose defense has one of ``methods`` (any, if none given) and whose attack
    has one of ``attack_types`` (any, if none given), in grid order."""
    methods, attack_types = set(methods), set(attack_types)
    return [e for e in experiments(config)
            if (not methods or config["defenses"][e.defense]["method"] in methods)
            and (not attack_types or config["attacks"][e.attack]["type"] in attack_types)]


def attacks_of(config: Config, attack_types: Iterable[str]) -> list[str]:
    """The names of the attacks of these types."""
    attack_types = set(attack_types)
    return [name for name, attack in config["attacks"].items() if attack["type"] in attack_types]


def row_keys(config: Config, wildcards: Any, certificate: str) -> dict[str, str]:
    """The names that open the results rows of one experiment's result (robustcert.results.KEYS)."""
    return {
        "dataset": wildcards.dataset,
        "attack": wildcards.attack,
        "attack_type": config["attacks"][wildcards.attack]["type"],
        "defense": wildcards.defense,
        "method": config["defenses"][wildcards.defense]["method"],
        "certificate": certificate,
    }


def common_params(config: Config, wildcards: Any) -> dict[str, Any]:
    """The parameters that change every number of a row: the dataset's source and the replicate's seed."""
    return {"source": config["datasets"][wildcards.dataset]["source"], "seed": int(wildcards.seed)}


def defense_colors(config: Config, defenses: Iterable[str]) -> dict[str, str]:
    """The colours of these defenses in every figure of the run (robustcert.style.palette over the
    sorted names, so that the order of the config's keys changes nothing)."""
    colors = palette(sorted(config["defenses"]))
    return {name: colors[name] for name in sorted(set(defenses))}


def report_category(method: str) -> str:
    """The report's category of a method's figures and tables (:data:`REPORT_CATEGORIES`; the method's
    own name for one not listed)."""
    return REPORT_CATEGORIES.get(method, method)
