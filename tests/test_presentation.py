"""The tables as a reader sees them (robustcert.presentation) and the headline's cells
(robustcert.workflow.table.headline_cells): rounding, constant columns left out, intervals in one
cell, the paper-shaped tables, the HTML page, one cell per experiment."""

from __future__ import annotations

import pandas as pd
import pytest

from robustcert import comparison, presentation, results
from robustcert.results import Metric, on_axis, tidy_rows
from robustcert.workflow.table import headline_cells


def _keys(attack: str, defense: str, method: str, certificate: str) -> dict[str, str]:
    return {"dataset": "digits", "attack": attack, "attack_type": "backdoor" if attack != "none" else "none",
            "defense": defense, "method": method, "certificate": certificate}


def _dpa_rows() -> pd.DataFrame:
    """Two DPA experiments of one defense (k = 20), two certificates, 360 test points."""
    frames = []
    for attack, accuracy in (("none", 0.9777777777777777), ("backdoor", 0.95)):
        for certificate, shift in (("dpa", 0.0), ("dpa_roe", 0.01)):
            numbers = [Metric("n_test", 360), Metric("accuracy", accuracy - shift), Metric("median_cert", 8),
                       *on_axis("cert_acc", "poison_samples", [0, 2], [accuracy - shift, 0.5 + shift])]
            if attack != "none":
                numbers += [Metric("asr", 0.1234), Metric("poison_size", 100), Metric("certified_vs_attack", 0.0)]
            params = {"source": "digits", "seed": 0, "arch": "small_cnn", "k": 20, "d": 1, "epochs": 30}
            frames.append(tidy_rows(_keys(attack, "dpa", "dpa", certificate), params, numbers))
    return results.concatenate(frames)


def test_round_column_keeps_whole_numbers_and_gives_every_fraction_three_decimals():
    assert presentation.round_column(pd.Series([1.0, 0.9777777777777777, float("nan")])).tolist() == \
        ["1.000", "0.978", ""]
    assert presentation.round_column(pd.Series([360.0, 40.0])).tolist() == [360, 40]
    assert presentation.round_column(pd.Series(["band_s2", "block_s4"])).tolist() == ["band_s2", "block_s4"]


def test_present_leaves_out_constant_identity_columns_and_puts_each_interval_in_one_cell():
    shown, constants = presentation.present(_dpa_rows())
    assert constants == {"dataset": "digits", "defense": "dpa", "source": "digits", "seed": "0", "arch": "small_cnn",
                         "k": "20", "d": "1", "epochs": "30"}
    assert list(shown.columns[:2]) == ["attack", "certificate"]
    assert not {"method", "attack_type", "arch", "source"} & set(shown.columns)
    row = shown.set_index(["attack", "certificate"]).loc[("none", "dpa")]
    assert row["accuracy"] == "0.978" and row["n_test"] == 360 and row["median_cert"] == 8
    # the interval of 352 of 360 points, in one cell after every metric
    low, high = results.clopper_pearson(pd.Series([352 / 360]), pd.Series([360]))
    assert row["cert_acc@poison_samples=0:ci95"] == f"[{low.iloc[0]:.3f}, {high.iloc[0]:.3f}]"
    metrics = [c for c in shown.columns if c not in ("attack", "certificate")]
    assert all(c.endswith(":ci95") for c in metrics[metrics.index("cert_acc@poison_samples=0:ci95"):])
    assert not any(c.endswith((":ci_low", ":ci_high")) for c in shown.columns)


def test_compact_dpa_table_in_the_papers_shape():
    shown, _ = presentation.present(_dpa_rows())
    table = presentation.compact(shown, "dpa").set_index(["attack", "certificate"])
    assert list(table.columns) == ["clean acc. (%)", "median cert.", "cert. acc. at 0 poisons (%)",
                                   "cert. acc. at 2 poisons (%)", "attack (ins.+del.)", "cert. acc. at attack (%)",
                                   "ASR (%)"]
    assert table.loc[("none", "dpa")].tolist() == ["97.8", "8", "97.8", "50.0", "", "", ""]
    assert table.loc[("backdoor", "dpa_roe"), "ASR (%)"] == "12.3"


def test_compact_smoothing_table_keeps_sigma_as_its_variant():
    frames = [tidy_rows(_keys("none", "smoothing", "smoothing", "cohen_certify"),
                        {"seed": 0, "sigma_train": sigma, "skip": 9},
                        [Metric("n_test", 40), Metric("acr", acr), *on_axis("cert_acc", "l2", [0.0, 0.25], [0.9, 0.7])])
              for sigma, acr in ((0.25, 0.41234), (0.5, 0.6))]
    shown, constants = presentation.present(results.concatenate(frames))
    assert constants["skip"] == "9"
    table = presentation.compact(shown, "smoothing")
    assert list(table.columns) == ["sigma_train", "r = 0 (%)", "r = 0.25 (%)", "ACR"]
    assert table.iloc[0].tolist() == [0.25, "90.0", "70.0", "0.412"]


def test_compact_patchcleanser_table_has_clean_and_certified_accuracy_and_the_patch_attack():
    frames = [tidy_rows(_keys("backdoor_2x2", "patchcleanser", "patchcleanser", "double_masking"),
                        {"seed": 0, "training": training, "k": 3},
                        [Metric("n_test", 60), Metric("accuracy", accuracy), Metric("asr", 0.25),
                         *on_axis("cert_acc", "patch_size", [1, 2], [0.5, 0.25]),
                         *on_axis("attack_acc", "patch_size", [2], [0.6]),
                         *on_axis("undefended_attack_acc", "patch_size", [2], [0.1])])
              for training, accuracy in (("plain", 0.9), ("masked", 0.95))]
    shown, _ = presentation.present(results.concatenate(frames))
    table = presentation.compact(shown, "patchcleanser")
    assert list(table.columns) == ["training", "clean acc. (%)", "cert. acc. 1×1 (%)", "cert. acc. 2×2 (%)",
                                   "acc. under 2×2 attack (%)", "undefended under 2×2 attack (%)", "ASR (%)"]
    assert table.iloc[1].tolist() == ["masked", "95.0", "50.0", "25.0", "60.0", "10.0", "25.0"]
    assert presentation.meaning("attack_acc@patch_size=2").startswith("accuracy under the empirical patch attack")


def test_meaning_of_columns():
    assert presentation.meaning("cert_acc@poison_samples=2").endswith("at poison samples = 2")
    assert presentation.meaning("cert_acc@l2=0.5:ci95").startswith("95% Clopper–Pearson interval of certified")
    assert "DPA paper" in presentation.meaning("median_cert")


def test_html_page_holds_both_tables_the_constants_and_the_glossary():
    shown, constants = presentation.present(_dpa_rows())
    page = presentation.render_html("dpa: results", shown, constants, presentation.compact(shown, "dpa"))
    assert page.count("<table>") == 2 and "The same in every row:" in page and "k = 20" in page
    assert "<dt>median_cert</dt>" in page and ">0.978</td>" in page and ">–</td>" in page


def test_headline_has_one_cell_per_experiment_and_no_estimate():
    def row(certificate: str, ablation: str, value: float, method: str = "patch") -> pd.DataFrame:
        return tidy_rows(_keys("backdoor", method, method, certificate), {"seed": 0, "ablation": ablation},
                         [Metric("asr", value)])

    cells = headline_cells(results.concatenate([row("top_one", "band_s2", 0.1), row("top_one", "block_s4", 0.2),
                                                row("rab_expected", "-", 0.3, "rab")]))
    assert sorted(cells["row"]) == ["digits · patch · top_one (band_s2)", "digits · patch · top_one (block_s4)"]
    with pytest.raises(ValueError, match="two numbers in one cell"):
        headline_cells(results.concatenate([row("top_one", "band_s2", 0.1), row("top_one", "band_s2", 0.2)]))


def test_headline_shows_the_patch_defenses_certified_share_of_triggered_images_as_their_certificate():
    rows = tidy_rows(_keys("backdoor_2x2", "patch", "patch", "top_one"), {"seed": 0, "ablation": "band_s2"},
                     [Metric("trigger_within_certified", 0.03), Metric("asr", 0.01), Metric("accuracy", 0.9)])
    cells = headline_cells(rows).set_index("metric")["value"]
    assert cells.to_dict() == {"certified_vs_attack": 0.03, "asr": 0.01}


def test_backdoorbench_rows_are_keyed_by_their_ablation():
    def result(defense: str, method: str, params: dict, **values: float) -> pd.DataFrame:
        return tidy_rows(_keys("backdoor", defense, method, "top_one" if method == "patch" else "uncertified"),
                         {"seed": 0, **params}, [Metric(n, v) for n, v in values.items()])

    table = results.concatenate([
        result("undefended", "undefended", {}, accuracy=0.9, asr=0.9, ra=0.1),
        result("patch", "patch", {"ablation": "band_s2"}, accuracy=0.8, asr=0.1, ra=0.7),
        result("patch", "patch", {"ablation": "block_s4"}, accuracy=0.6, asr=0.05, ra=0.5),
    ])
    summary = comparison.backdoorbench_summary(table)
    assert summary["ablation"].tolist() == ["band_s2", "block_s4"] and "k" not in summary
    assert summary["asr_defense"].tolist() == pytest.approx([0.1, 0.05])


def test_backdoorbench_page_shows_percentages_in_backdoorbenchs_columns(tmp_path):
    from robustcert.workflow.table import render_backdoorbench

    table = results.concatenate([
        tidy_rows(_keys("backdoor", "undefended", "undefended", "uncertified"), {"seed": 0},
                  [Metric("accuracy", 0.9), Metric("asr", 0.9), Metric("ra", 0.1)]),
        tidy_rows(_keys("backdoor", "dpa", "dpa", "dpa"), {"seed": 0, "k": 20},
                  [Metric("accuracy", 0.85), Metric("asr", 0.2), Metric("ra", 0.7)]),
    ])
    comparison.backdoorbench_summary(table).to_csv(tmp_path / "bb.csv", index=False)
    render_backdoorbench(str(tmp_path / "bb.csv"), str(tmp_path / "bb.html"))
    page = (tmp_path / "bb.html").read_text()
    assert "<th>ASR (%)</th>" in page and ">20.0</td>" in page and ">0.850</td>" in page and "<th>k</th>" in page
