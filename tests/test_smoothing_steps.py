"""Which test points the smoothing rules certify, and how the gathered results are summarized."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustcert import smoothing_steps, steps


def test_certified_points_follow_skip_and_max():
    assert smoothing_steps.certified_points(100, 20, None).tolist() == [0, 20, 40, 60, 80]
    assert smoothing_steps.certified_points(10_000, 20, 3).tolist() == [0, 20, 40]


def test_point_shards_cover_the_points_once():
    shards = smoothing_steps.point_shards(360, {"skip": 6, "max": None, "points_per_job": 25})
    assert [len(s) for s in shards] == [25, 25, 10]
    assert np.concatenate(shards).tolist() == list(range(0, 360, 6))


def test_gather_and_summarize(tmp_path):
    certify = pd.DataFrame({"idx": [0, 2, 4, 6], "label": [1, 2, 3, 4], "predict": [1, 2, -1, 0],
                            "radius": [0.5, 0.1, 0.0, 0.3], "correct": [1, 1, 0, 0], "time": 0.2})
    steps.write_tsv(certify.iloc[2:], tmp_path / "b.tsv")
    steps.write_tsv(certify.iloc[:2], tmp_path / "a.tsv")
    steps.gather_shards([str(tmp_path / "b.tsv"), str(tmp_path / "a.tsv")], str(tmp_path / "certify.tsv"))
    assert steps.read_tsv(tmp_path / "certify.tsv")["idx"].tolist() == [0, 2, 4, 6]
    predict = certify[["idx", "label", "predict", "correct", "time"]]
    steps.write_tsv(predict, tmp_path / "predict.tsv")
    defense = {"n0": 100, "n": 1000, "alpha": 0.001, "skip": 2, "max": None}
    smoothing_steps.summarize_smoothing(str(tmp_path / "certify.tsv"), str(tmp_path / "predict.tsv"),
                                        str(tmp_path / "row.tsv"), {"dataset": "d"}, defense, 8, [0.0, 0.25])
    row = steps.read_tsv(tmp_path / "row.tsv").iloc[0]
    assert row["test_points"] == "range(0, 8, 2)" and row["n_test"] == 4
    assert row["accuracy"] == 0.5 and row["abstain"] == 0.25
    assert row["acr"] == (0.5 + 0.1) / 4
    assert row["cert_acc@l2=0"] == 0.5 and row["cert_acc@l2=0.25"] == 0.25
