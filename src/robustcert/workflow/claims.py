"""The claims stage (rules/claims.smk): the config's ``claims`` (:mod:`robustcert.claims`) checked
against all.tsv, as ``<results>/tables/claims.tsv`` and a section of the report. The claims name the
datasets, attacks and defenses of the config's experiments; a name that is not one is refused when
the workflow is parsed, a selector that picks no row (or rows of several experiments) when the table
is made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.config import Config, canonical, experiments, refuse
from robustcert.workflow import log

CLAIMS = "<results>/tables/claims.tsv"
CLAIMS_HTML = "<results>/tables/html/claims.html"


def outputs(config: Config) -> list[str]:
    """The claims table, where the config states claims."""
    return [CLAIMS] if config["claims"] else []


def check_claims(config: Config) -> None:
    """Refuse claims that name a dataset, attack or defense of no experiment."""
    cells = experiments(config)
    used = {"datasets": {c.dataset for c in cells}, "attacks": {c.attack for c in cells},
            "defenses": {c.defense for c in cells}}
    problems = [f"claims[{i}] ({claim['claim'][:40]!r}): {section} {name!r} is in no experiment"
                for i, claim in enumerate(config["claims"]) for section, name in named_experiments(claim)
                if name not in used[section]]
    refuse(problems)


def named_experiments(claim: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(section, name) of every dataset, attack and defense a claim's selectors name."""
    return [(section, str(claim[side][key])) for side in ("ours", "versus") if side in claim
            for key, section in (("dataset", "datasets"), ("attack", "attacks"), ("defense", "defenses"))
            if key in claim[side]]


def claims_params(config: Config) -> list[Any]:
    """The claims as the step reads them (canonical: key order is no rerun trigger)."""
    return canonical(config["claims"])


def tabulate_claims(table_path: str, claims: Sequence[Mapping[str, Any]], output: str, html_output: str) -> None:
    """Write claims.tsv, every claim's row (robustcert.claims.claims_table) from all.tsv, and its HTML page
    for the report."""
    from robustcert import claims as domain
    from robustcert import presentation, results

    table = domain.claims_table(results.read_rows(table_path), claims)
    for row in table.itertuples():
        log.info("%s — %s: %.4g (%s)", row.paper, row.claim, row.ours, row.verdict)
    domain.CLAIMS.write(table, output)
    presentation.write_html(presentation.render_claims_html(table), html_output)
