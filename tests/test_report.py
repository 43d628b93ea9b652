"""`snakemake --report`: after the default run (the session's ``default_run``, which has every kind of
report item: the poisoning-budget plot, randomized-smoothing plots, all.tsv, each method's tables
rendered as HTML), the self-contained HTML report and the zip report hold the plots and the tables with
their captions, grouped by method, after a landing text and the overview."""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

pytestmark = pytest.mark.workflow

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
            stored = [name for name in names if name.endswith("/" + Path(wanted).name)]
            assert len(stored) == 1, (wanted, names)
            assert archive.read(stored[0]) == (default_run / wanted).read_bytes()
