"""`snakemake --report`: after the default run (the session's ``default_run``, which has every kind of
report item: the poisoning-budget plot, randomized-smoothing plots, all.tsv), the self-contained HTML
report and the zip report hold the plots and the table with their captions, grouped by dataset."""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

import pytest
from conftest import snakemake

pytestmark = pytest.mark.workflow

PLOT = "results/plots/digits/poison_budget.png"
SMOOTHING_PLOT = "results/plots/digits/seed_0/smoothing/none/smoothing.png"
TABLE = "results/tables/all.tsv"
HEADLINE = "results/plots/headline.png"


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


def test_report_groups_the_plots_by_dataset(html_report):
    categories = _embedded(html_report, "categories")
    digits = categories["digits"]
    grouped = {item: sub for sub, items in digits.items() for item in items}
    assert PLOT in grouped and SMOOTHING_PLOT in grouped
    assert grouped[PLOT] != grouped[SMOOTHING_PLOT]  # the aggregation defenses apart from smoothing
    everywhere = [item for subs in categories.values() for items in subs.values() for item in items]
    assert TABLE in everywhere and sorted(everywhere) == sorted(set(everywhere))
    assert list(categories)[0] == "overview"  # the heat map of the headline numbers comes first
    assert HEADLINE in [item for items in categories["overview"].values() for item in items]


def test_zip_report(default_run):
    snakemake(default_run, "--report", "results/report.zip", "--", "all")
    with zipfile.ZipFile(default_run / "results/report.zip") as archive:
        names = archive.namelist()
        assert any(name.endswith("report.html") for name in names)
        for wanted in (PLOT, SMOOTHING_PLOT, TABLE):  # stored as report/data/raw/<hash>/<file name>
            stored = [name for name in names if name.endswith("/" + Path(wanted).name)]
            assert len(stored) == 1, (wanted, names)
            assert archive.read(stored[0]) == (default_run / wanted).read_bytes()
