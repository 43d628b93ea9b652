"""The README's main job (`make run`) run once, and every test that reads its results (the session's
``default_run``, tests/conftest.py): all.tsv and each presented table, each defense against its attacks
(one inside each certificate's reach beside the large ones), the undefended model, detection scored by
the infected label, smoothing, the bilevel attack, the plots, and the HTML and zip reports (after the
default run, which has every kind of report item: the plots and the tables with their captions, grouped
by method, after a landing text and the overview). `make test`'s workers (pytest-xdist) keep every test
that reads the run on one worker, so it is made once (tests/conftest.py)."""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake

from robustcert import presentation, results
from robustcert.bilevel import transfer_table
from robustcert.workflow import poison as poison_stage

pytestmark = pytest.mark.workflow


def _assert_asr_all_beside_asr(tidy: pd.DataFrame, digits_labels: np.ndarray) -> None:
    """Every result with an ``asr`` has an ``asr_all`` (every method with a trigger), and on digits
    (target 7) asr_all = (1 − s)·asr + s·a with s the target class's share of the test set, a in [0, 1]
    (for the methods on the whole test set: the patch defenses certify every 3rd and 6th point)."""
    rates = tidy[tidy["metric"].isin(["asr", "asr_all"])].pivot_table(
        index=["dataset", "attack", "defense", "certificate", "params"], columns="metric", values="value")
    assert rates.notna().all().all()
    assert set(rates.index.get_level_values("defense")) == {"dpa", "fa", "undefended", "robust", "patch", "patchcleanser",
                                                            "rab"}
    digits = rates.xs("digits", level="dataset").drop(["patch", "patchcleanser"], level="defense")
    share = float((digits_labels == 7).mean())
    a = (digits["asr_all"] - (1 - share) * digits["asr"]) / share
    assert a.between(-1e-9, 1 + 1e-9).all()


def _assert_each_certificate_certifies_an_attack_in_its_reach(table: pd.DataFrame) -> None:
    """Every certificate has a row certified above 0 at an attack's budget, beside the large attacks
    certified at 0, and the undefended model falls to the attacks the certificates hold."""
    few = table[table["attack"] == "backdoor_few"].set_index("certificate")
    large = table[table["attack"] == "backdoor"].set_index("certificate")
    for certificate in ("dpa", "dpa_roe", "fa", "fa_roe"):  # 3 poisoned samples: 6 insertions/deletions
        assert few.loc[certificate, "poison_size"] == 6 and few.loc[certificate, "certified_vs_attack"] > 0
        assert few.loc[certificate, "certified_ra"] > 0
    for certificate in ("dpa", "dpa_roe"):
        assert large.loc[certificate, "certified_vs_attack"] == 0  # 25 samples: beyond every certificate
    patch = table[(table["method"] == "patch") & (table["attack"] == "backdoor_2x2")]
    assert (patch["trigger_side"] == 2).all() and (patch["trigger_within_certified"] > 0).any()
    assert (patch["certified_ra"] > 0).any()
    rab = table[(table["certificate"] == "rab") & (table["attack"] == "four_pixel")].iloc[0]
    assert rab["certified_vs_attack"] > 0
    undefended = table[table["method"] == "undefended"].set_index(["dataset", "attack"])
    assert undefended.loc[("digits_binary", "four_pixel_strong"), "asr"] >= 0.8
    assert undefended.loc[("digits", "backdoor_2x2"), "asr"] >= 0.8
    assert patch["asr"].max() < undefended.loc[("digits", "backdoor_2x2"), "asr"]


def rows_of_table(tidy: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of all.tsv that results/tables/<name>.tsv presents (what its stage registers in
    RESULT_ROWS): the bilevel attack's evaluations apart from smoothing's certificates, the attacks'
    budgets under the defense none, else the rows of the method."""
    bilevel = tidy["certificate"] == "target_class_certify"
    compared = tidy["metric"].isin(["der", "rir"])
    if name == "bilevel":
        return tidy[bilevel & ~compared]
    method = results.NO_DEFENSE if name == poison_stage.BUDGET_TABLE else name
    return tidy[(tidy["method"] == method) & ~bilevel & ~compared]


# ----------------------------------------------------------- the default config, run once (default_run)

@pytest.fixture(scope="module")
def tidy(default_run) -> pd.DataFrame:
    """all.tsv of the default run."""
    return results.read_rows(default_run / "results/tables/all.tsv")


@pytest.fixture(scope="module")
def table(tidy) -> pd.DataFrame:
    """Every result of the default run as one wide table at full precision (the presented tables round)."""
    return results.wide(tidy[~tidy["metric"].isin(["der", "rir"])])


@pytest.fixture(scope="module")
def dpa(table) -> pd.DataFrame:
    return table[table["certificate"] == "dpa"].set_index("attack")


def test_default_run_all_tsv_is_tidy_and_every_table_presents_it(default_run, tidy):
    """The README's main job (`make run`): every defense of the default config, on 2 cores."""
    assert tuple(tidy.columns) == results.COLUMNS  # the fixed header, no empty cell
    assert not tidy.duplicated(["dataset", "attack", "defense", "certificate", "params", "metric", "axis", "at"]).any()
    tables = default_run / "results/tables"
    for wide in sorted(tables.glob("*.tsv")):  # the numbers of all.tsv, presented
        if wide.name == "bilevel_transfer.tsv":  # a matrix of the bilevel rows: attack victim × evaluation victim
            bilevel_rows = tidy[tidy["certificate"] == "target_class_certify"]
            assert transfer_table(bilevel_rows).to_csv(sep="\t", index=False) == wide.read_text(), wide.name
        elif wide.name != "all.tsv":
            mine = rows_of_table(tidy, wide.stem)
            assert len(mine), wide.name
            again = default_run / "again"
            presentation.write_tables(mine, wide.stem, str(again / "wide.tsv"), str(again / "paper.tsv"))
            assert (again / "wide.tsv").read_text() == wide.read_text(), wide.name
            assert (again / "paper.tsv").read_text() == (tables / "paper" / wide.name).read_text(), wide.name
    assert {"all.tsv", "bilevel.tsv", "dpa.tsv", "fa.tsv", "smoothing.tsv", "patchcleanser.tsv"} <= {
        p.name for p in tables.glob("*.tsv")}


def test_default_run_dpa_and_fa(default_run, tidy, table, dpa):
    assert set(dpa.index) == {"none", "backdoor", "backdoor_few", "label_flip"}
    assert (dpa["n_test"] == 360).all() and (dpa["k"] == 20).all()
    assert dpa.loc["none", "accuracy"] > 0.9  # the aggregate of 20 small CNNs on digits
    assert (dpa["accuracy"] >= dpa["base_accuracy_mean"]).all()  # voting helps
    assert dpa.loc["none", "median_cert_ref"] == dpa.loc["none", "median_cert"] + 1 >= 2
    assert dpa.loc["none", "cert_acc@poison_samples=0"] == dpa.loc["none", "accuracy"]
    assert 0 <= dpa.loc["backdoor", "asr"] <= 1 and pd.isna(dpa.loc["none", "asr"])
    assert dpa.loc["backdoor", "poison_size"] == 2 * round(0.02 * 1257)
    assert dpa.loc["backdoor", "certified_ra"] <= dpa.loc["backdoor", "ra"] <= 1 - dpa.loc["backdoor", "asr"]
    assert pd.isna(dpa.loc["none", "asr_all"])
    _assert_asr_all_beside_asr(tidy, np.load(default_run / "results/data/digits/split.npz")["y_test"])
    variants = table.groupby(["attack", "defense"])["certificate"].apply(set)
    assert variants[("none", "dpa")] == {"dpa", "dpa_roe"} and variants[("backdoor_few", "fa")] == {"fa", "fa_roe"}
    fa = table[(table["certificate"] == "fa") & (table["attack"] == "none")].iloc[0]
    assert fa["d"] == 4 and fa["k"] == 20 and fa["accuracy"] > 0.9
    certify = pd.read_csv(default_run / "results/certify/digits/seed_0/none/dpa/dpa.tsv", sep="\t")
    assert list(certify.columns) == ["idx", "label", "predict", "radius", "correct"] and len(certify) == 360
    # the table's numbers are those of the certificates (the reshaping changed none of them)
    assert dpa.loc["none", "accuracy"] == certify["correct"].mean()
    for budget in (1, 2, 5):
        expected = ((certify["radius"] >= budget) & (certify["correct"] == 1)).mean()
        assert dpa.loc["none", f"cert_acc@poison_samples={budget}"] == expected


def test_default_run_each_certificate_holds_an_attack_in_its_reach(table):
    _assert_each_certificate_certifies_an_attack_in_its_reach(table)


def test_default_run_compares_each_defense_with_the_undefended_model(default_run, tidy):
    compared = tidy[tidy["metric"].isin(["der", "rir"])]
    # the attacks with a trigger and an undefended model: the backdoors on digits, RAB's four pixels on 6 vs 8
    assert set(zip(compared["dataset"], compared["attack"])) == {
        ("digits", "backdoor"), ("digits", "backdoor_few"), ("digits", "backdoor_2x2"),
        ("digits_binary", "four_pixel"), ("digits_binary", "four_pixel_strong")}
    assert compared["params"].str.contains("baseline=undefended").all() and compared["value"].between(0, 1).all()
    bench = pd.read_csv(default_run / "results/tables/backdoorbench.csv").set_index(["attack", "defense", "certificate"])
    dpa_bench = bench.loc[("backdoor", "dpa", "dpa")]
    assert dpa_bench["asr_attack"] > dpa_bench["asr_defense"] and dpa_bench["der"] > 0.5  # DPA resists


def test_default_run_detection_is_scored_by_the_infected_label(default_run, table):
    """A backdoored model counts as detected only when its target label is flagged."""
    detection = table[table["method"] == "detection"].set_index("attack")
    target_flagged = detection.loc["backdoor", "flagged@label=7"] == 1
    assert detection.loc["backdoor", "detected"] == target_flagged
    verdicts = pd.read_csv(default_run / "results/tables/detection/verdicts.tsv", sep="\t", dtype=str).set_index("attack")
    assert verdicts.loc["backdoor", "true_target"] == "7" and verdicts.loc["none", "true_target"] == "none"
    assert verdicts.loc["backdoor", "verdict"].startswith("detected" if target_flagged else "missed")
    confusion = pd.read_csv(default_run / "results/tables/detection/confusion.tsv", sep="\t").set_index("level")
    assert confusion.loc["model", "tp"] == int(target_flagged)


def test_default_run_randomized_smoothing(default_run, table):
    smoothing = table[table["certificate"] == "cohen_certify"]
    assert sorted(smoothing["sigma_train"].unique()) == [0.25, 0.5] and len(smoothing) == 4
    assert (smoothing["n"] == 5000).all() and (smoothing["n_test"] == 40).all()
    assert (smoothing["sigma_train"] == smoothing["sigma_certify"]).all()
    clean = smoothing[smoothing["attack"] == "none"].set_index("sigma_train")
    assert clean.loc[0.25, "accuracy"] > 0.8 and clean.loc[0.25, "acr"] > 0.2
    # σ·Φ⁻¹(α^(1/n)) = 0.75 bounds every radius at σ = 0.25, n = 5 000, α = 0.001; σ = 0.5 reaches 1.5
    assert pd.isna(clean.loc[0.25, "k"])  # smoothing has no partitions
    assert clean.loc[0.25, "cert_acc@l2=1"] == 0
    assert (smoothing["cert_acc@l2=1"] <= smoothing["cert_acc@l2=0"]).all()
    smoothed = pd.read_csv(default_run / "results/smoothing/digits/seed_0/none/smoothing/sigma_0.25/certify.tsv", sep="\t")
    assert list(smoothed.columns) == ["idx", "label", "predict", "radius", "correct"]
    assert smoothed["idx"].tolist() == list(range(0, 360, 9))


def test_default_run_bilevel_attack(default_run, table):
    bilevel = table[table["certificate"] == "target_class_certify"].set_index("sigma_train")
    assert sorted(bilevel.index) == [0.25, 0.5] and (bilevel["target"] == 8).all()
    assert (bilevel["acr_clean"] > 0).all() and (bilevel["n_test"] > 0).all()
    assert (bilevel["acr_drop"] == 1 - bilevel["acr"] / bilevel["acr_clean"]).all()
    poison = np.load(default_run / "results/poison/digits/seed_0/bilevel.npz")
    split = np.load(default_run / "results/data/digits/split.npz")
    original = split["x_train"][poison["index"]].astype(int)
    assert np.abs(poison["x"].astype(int) - original).max() <= 25  # ε = 0.1 of 255
    assert np.array_equal(poison["y"], split["y_train"][poison["index"]]) and (poison["y"] == 8).all()


def test_default_run_plots_rab_and_report(default_run, table):
    for name in ("poison_budget", "seed_0/smoothing/none/smoothing", "seed_0/smoothing/bilevel/smoothing",
                 "seed_0/bilevel_bilevel_objective", "smoothing/noisy_examples", "smoothing_radius", "patch_size"):
        for ext in ("png", "pdf"):
            assert (default_run / f"results/plots/digits/{name}.{ext}").stat().st_size > 1000
    for ext in ("png", "pdf"):
        assert (default_run / f"results/plots/digits_binary/rab_l2_budget.{ext}").stat().st_size > 1000
    rab = table[table["method"] == "rab"]  # digits 6 vs 8 × {none, four pixel ×2}
    assert sorted(rab["certificate"]) == ["rab"] * 3 + ["rab_expected"] * 3
    assert (rab["n_test"] == 118).all() and rab["cert_acc@l2_train=0"].between(0, 1).all()
    # The HTML report builds on the default config and holds every plot and the table.
    report = (default_run / "results/report.html").read_text(errors="replace")
    for name in ("poison_budget.png", "all.tsv", "bilevel_bilevel_objective.png", "patch_size.png"):
        assert name in report


def test_default_run_leaves_nothing_to_do(default_run):
    dry = snakemake(default_run, "-n", "--cores", "2", "--", "all")
    assert "Nothing to be done" in dry.stdout + dry.stderr


# ----------------------------------------------------------- the undefended model

def test_undefended_through_the_workflow(default_run):
    """The default run's undefended model on digits, clean and backdoored."""
    table = results.wide(results.read_rows(default_run / "results/tables/all.tsv"))
    table = table[(table["method"] == "undefended") & (table["dataset"] == "digits")].set_index("attack")
    assert {"none", "backdoor"} <= set(table.index) and (table["n_test"] == 360).all()
    assert table.loc["none", "accuracy"] > 0.3
    assert pd.isna(table.loc["none", "asr"]) and pd.isna(table.loc["none", "asr_all"])  # no trigger, no rate
    assert 0 <= table.loc["backdoor", "asr"] <= 1 and 0 <= table.loc["backdoor", "asr_all"] <= 1
    assert (default_run / "results/tables/undefended.tsv").exists()
    assert len(list((default_run / "results/models/digits/seed_0/backdoor/undefended").glob("*.pt"))) == 1


# ----------------------------------------------------------- the HTML report

PLOT = "results/plots/digits/poison_budget.png"
SMOOTHING_PLOT = "results/plots/digits/seed_0/smoothing/none/smoothing.png"
TABLE = "results/tables/all.tsv"
HEADLINE = "results/plots/headline.png"
DPA_TABLE = "results/tables/html/dpa.html"
AGGREGATION = "DPA and FA (partition aggregation)"
SMOOTHING = "randomized smoothing (Cohen et al.)"


def _embedded(html: str, name: str) -> dict:
    """The JSON object the report embeds as ``var NAME = {...};``."""
    match = re.search(rf"var {name} = (?=\{{)", html)
    assert match, f"no `var {name}` in the report"
    value, _ = json.JSONDecoder().raw_decode(html, match.end())
    return value


@pytest.fixture(scope="module")
def html_report(default_run) -> str:
    return (default_run / "results/report.html").read_text()


def test_html_report_holds_the_plots_and_the_table_with_captions(html_report, default_run):
    results = _embedded(html_report, "results")
    assert {PLOT, SMOOTHING_PLOT, TABLE} <= set(results)

    plot = results[PLOT]
    assert plot["mime_type"] == "image/png"
    assert "Certified accuracy of the aggregation defenses on digits" in plot["caption"]
    payload = plot["data_uri"].split("base64,", 1)[1]
    assert base64.b64decode(payload) == (default_run / PLOT).read_bytes()

    noisy = results["results/plots/digits/smoothing/noisy_examples.png"]
    assert "under the Gaussian noise" in noisy["caption"] and noisy["mime_type"] == "image/png"

    radius = results["results/plots/digits/smoothing_radius.png"]
    assert "Randomized smoothing on digits at a glance" in radius["caption"] and radius["mime_type"] == "image/png"

    smoothing = results[SMOOTHING_PLOT]
    assert "Randomized smoothing on digits under the attack none" in smoothing["caption"]
    assert smoothing["mime_type"] == "image/png"

    table = results[TABLE]
    assert "Every number of the run in long form" in table["caption"]
    payload = table["data_uri"].split("base64,", 1)[1]
    assert base64.b64decode(payload) == (default_run / TABLE).read_bytes()


def test_report_groups_the_figures_and_tables_by_method(html_report):
    categories = _embedded(html_report, "categories")
    assert list(categories)[0] == "overview"  # the headline and the tables of the whole run come first
    assert HEADLINE in categories["overview"]["figures"] and TABLE in categories["overview"]["tables"]
    assert PLOT in categories[AGGREGATION]["digits"] and DPA_TABLE in categories[AGGREGATION]["tables"]
    assert SMOOTHING_PLOT in categories[SMOOTHING]["digits"]
    assert "results/tables/html/smoothing.html" in categories[SMOOTHING]["tables"]
    everywhere = [item for subs in categories.values() for items in subs.values() for item in items]
    assert sorted(everywhere) == sorted(set(everywhere))
    assert "Other" not in {sub for subs in categories.values() for sub in subs}


def test_each_methods_table_is_an_html_table_with_its_columns_explained(html_report, default_run):
    table = _embedded(html_report, "results")[DPA_TABLE]
    assert table["mime_type"] == "text/html"
    assert "median cert." in table["caption"] and "Clopper" in table["caption"]
    page = base64.b64decode(table["data_uri"].split("base64,", 1)[1]).decode()
    assert page == (default_run / DPA_TABLE).read_text()
    assert page.count("<table>") == 2 and "<dt>median_cert</dt>" in page and "The same in every row" in page


def test_the_landing_text_says_what_ran_and_what_is_expected_to_be_zero(html_report):
    match = re.search(r"var workflow_desc = ", html_report)
    assert match, "no landing text in the report"
    landing, _ = json.JSONDecoder().raw_decode(html_report, match.end())
    assert "What this run did" in landing and "What is expected to be 0 on digits" in landing
    grid = yaml.safe_load((REPO / "config/config.yaml").read_text())["experiments"][0]
    assert (f"<li>{', '.join(grid['datasets'])} × attacks {', '.join(grid['attacks'])} × defenses "
            f"{', '.join(grid['defenses'])}</li>") in landing


def test_zip_report(default_run):
    snakemake(default_run, "--report", "results/report.zip", "--", "all")
    with zipfile.ZipFile(default_run / "results/report.zip") as archive:
        names = archive.namelist()
        assert any(name.endswith("report.html") for name in names)
        for wanted in (PLOT, SMOOTHING_PLOT, TABLE):  # stored as report/data/raw/<hash>/<file name>
            stored = [name for name in names if name.endswith("/" + Path(wanted).name)]  # smoothing.png: 2 attacks
            assert [archive.read(name) for name in stored].count((default_run / wanted).read_bytes()) == 1, (wanted, names)
