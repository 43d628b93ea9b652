"""`snakemake --report`: after a small run with every kind of report item (the poisoning-budget plot,
a randomized-smoothing plot, all.tsv, each method's tables rendered as HTML), the self-contained HTML
report and the zip report hold the plots and the tables with their captions, grouped by method, after
a landing text and the overview."""

from __future__ import annotations

import base64
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, WORKFLOW_FILES, snakemake

pytestmark = pytest.mark.workflow

CONFIG = "tests/configs/report_small.yaml"
PLOT = "results/plots/digits/poison_budget.png"
SMOOTHING_PLOT = "results/plots/digits/seed_0/smoothing/none/smoothing.png"
TABLE = "results/tables/all.tsv"
HEADLINE = "results/plots/headline.png"
DPA_TABLE = "results/tables/html/dpa.html"
AGGREGATION = "DPA and FA (partition aggregation)"
SMOOTHING = "randomized smoothing (Cohen et al.)"


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory) -> Path:
    """A copy of the workflow after one run of the small config."""
    target = tmp_path_factory.mktemp("report") / "wf"
    for name in [*WORKFLOW_FILES, CONFIG]:
        source = REPO / name
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    snakemake(target, "--cores", "2", "--configfile", CONFIG, "--", "all")
    return target


def _embedded(html: str, name: str) -> dict:
    """The JSON object the report embeds as ``var NAME = {...};``."""
    match = re.search(rf"var {name} = (?=\{{)", html)
    assert match, f"no `var {name}` in the report"
    value, _ = json.JSONDecoder().raw_decode(html, match.end())
    return value


@pytest.fixture(scope="module")
def html_report(workflow_run) -> str:
    snakemake(workflow_run, "--configfile", CONFIG, "--report", "results/report.html")
    return (workflow_run / "results/report.html").read_text()


def test_html_report_holds_the_plots_and_the_table_with_captions(html_report, workflow_run):
    results = _embedded(html_report, "results")
    assert {PLOT, SMOOTHING_PLOT, TABLE} <= set(results)

    plot = results[PLOT]
    assert plot["mime_type"] == "image/png"
    assert "Certified accuracy of the aggregation defenses on digits" in plot["caption"]
    payload = plot["data_uri"].split("base64,", 1)[1]
    assert base64.b64decode(payload) == (workflow_run / PLOT).read_bytes()

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
    assert base64.b64decode(payload) == (workflow_run / TABLE).read_bytes()


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


def test_each_methods_table_is_an_html_table_with_its_columns_explained(html_report, workflow_run):
    table = _embedded(html_report, "results")[DPA_TABLE]
    assert table["mime_type"] == "text/html"
    assert "median cert." in table["caption"] and "Clopper" in table["caption"]
    page = base64.b64decode(table["data_uri"].split("base64,", 1)[1]).decode()
    assert page == (workflow_run / DPA_TABLE).read_text()
    assert page.count("<table>") == 2 and "<dt>median_cert</dt>" in page and "The same in every row" in page


def test_the_landing_text_says_what_ran_and_what_is_expected_to_be_zero(html_report):
    match = re.search(r"var workflow_desc = ", html_report)
    assert match, "no landing text in the report"
    landing, _ = json.JSONDecoder().raw_decode(html_report, match.end())
    assert "What this run did" in landing and "What is expected to be 0 on digits" in landing
    assert "<li>digits × attacks none × defenses dpa, smoothing</li>" in landing


def test_zip_report(workflow_run):
    snakemake(workflow_run, "--configfile", CONFIG, "--report", "results/report.zip")
    with zipfile.ZipFile(workflow_run / "results/report.zip") as archive:
        names = archive.namelist()
        assert any(name.endswith("report.html") for name in names)
        for wanted in (PLOT, SMOOTHING_PLOT, TABLE):  # stored as report/data/raw/<hash>/<file name>
            stored = [name for name in names if name.endswith("/" + Path(wanted).name)]
            assert len(stored) == 1, (wanted, names)
            assert archive.read(stored[0]) == (workflow_run / wanted).read_bytes()
