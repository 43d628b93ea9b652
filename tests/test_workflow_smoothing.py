"""Which test points the smoothing rules certify, and how the gathered results are summarized."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustcert import results
from robustcert.artifacts import read_tsv, write_tsv
from robustcert.workflow import smoothing


def test_certified_points_follow_skip_and_max():
    assert smoothing.certified_points(100, 20, None).tolist() == [0, 20, 40, 60, 80]
    assert smoothing.certified_points(10_000, 20, 3).tolist() == [0, 20, 40]


def test_point_shards_cover_the_points_once():
    shards = smoothing.point_shards(360, {"skip": 6, "max": None, "points_per_job": 25})
    assert [len(s) for s in shards] == [25, 25, 10]
    assert np.concatenate(shards).tolist() == list(range(0, 360, 6))


def test_gather_and_summarize(tmp_path):
    certify = pd.DataFrame({"idx": [0, 2, 4, 6], "label": [1, 2, 3, 4], "predict": [1, 2, -1, 0],
                            "radius": [0.5, 0.1, 0.0, 0.3], "correct": [1, 1, 0, 0]})
    write_tsv(certify.iloc[2:], tmp_path / "b.tsv")
    write_tsv(certify.iloc[:2], tmp_path / "a.tsv")
    smoothing.gather_shards([str(tmp_path / "b.tsv"), str(tmp_path / "a.tsv")], str(tmp_path / "certify.tsv"),
                            "certify")
    assert read_tsv(tmp_path / "certify.tsv")["idx"].tolist() == [0, 2, 4, 6]
    predict = certify[["idx", "label", "predict", "correct"]]
    write_tsv(predict, tmp_path / "predict.tsv")
    keys = {"dataset": "d", "attack": "none", "attack_type": "none", "defense": "s", "method": "smoothing",
            "certificate": "cohen_certify"}
    smoothing.summarize_smoothing(str(tmp_path / "certify.tsv"), str(tmp_path / "predict.tsv"),
                                  str(tmp_path / "row.tsv"), keys, {"test_points": "range(0, 8, 2)"}, [0.0, 0.25], 4)
    row = results.wide(results.read_rows(tmp_path / "row.tsv")).iloc[0]
    assert row["test_points"] == "range(0, 8, 2)" and row["n_test"] == 4
    assert row["accuracy"] == 0.5 and row["abstain"] == 0.25
    assert row["acr"] == (0.5 + 0.1) / 4
    assert row["cert_acc@l2=0"] == 0.5 and row["cert_acc@l2=0.25"] == 0.25
