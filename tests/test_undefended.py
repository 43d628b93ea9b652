"""The undefended baseline: one model on the whole poisoned training set, its accuracy and attack success rate."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import REPO

from robustcert import config as cfg, results
from robustcert.evaluate import save_scores
from robustcert.workflow import undefended

KEYS = {"dataset": "digits", "attack": "backdoor", "attack_type": "backdoor", "defense": "plain",
        "method": "undefended", "certificate": "uncertified"}


def test_the_stage_module_loads_no_torch():
    code = "import sys, robustcert.workflow.undefended\nassert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_layout_is_one_model_on_the_whole_set():
    layout = undefended.layout({"method": "undefended", "arch": "small_cnn"})
    assert (layout.assignment, layout.num_models, [list(s) for s in layout.shards()]) == ("whole", 1, [[0]])


def test_the_plan_has_a_row_per_experiment_of_the_method():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.validate_config(config, REPO / "config" / "schemas")
    plan = undefended.Plan(config)
    assert plan.rows() == [*(f"<results>/tables/rows/digits/seed_0/{a}/undefended/undefended.tsv"
                             for a in ("none", "backdoor", "backdoor_few", "backdoor_2x2")),
                           *(f"<results>/tables/rows/digits_binary/seed_0/{a}/undefended/undefended.tsv"
                             for a in ("none", "four_pixel", "four_pixel_strong"))]  # beside RAB
    wc = SimpleNamespace(dataset="digits", seed="0", attack="backdoor", defense="undefended")
    assert plan.row_keys(wc)["method"] == "undefended" and plan.row_params(wc)["epochs"] == 30


def test_accuracy_and_attack_success_of_the_one_model(tmp_path):
    logits = np.zeros((4, 1, 3))
    logits[[0, 1, 2, 3], 0, [0, 1, 2, 0]] = 1.0  # predicts 0, 1, 2, 0
    triggered = np.zeros((4, 1, 3))
    triggered[[0, 1, 2, 3], 0, [2, 2, 2, 1]] = 1.0  # target 2: two of the three non-target images
    labels = np.array([0, 1, 2, 1])
    save_scores(tmp_path / "scores.npz", {
        "logits": logits, "labels": labels, "base_accuracy": np.array([0.75]), "triggered_logits": triggered,
        "triggered_index": np.arange(4), "target": np.int64(2)})
    undefended.summarize_undefended(str(tmp_path / "scores.npz"), str(tmp_path / "rows.tsv"), KEYS, {"arch": "x"})
    row = results.wide(results.read_rows(tmp_path / "rows.tsv")).iloc[0]
    assert row["accuracy"] == 0.75 and row["asr"] == pytest.approx(2 / 3) and row["n_test"] == 4
    assert row["asr_all"] == pytest.approx(3 / 4)  # the target-class image 2, predicted 2, counts too
    assert row["ra"] == pytest.approx(1 / 3)  # triggered images of labels 0, 1, 1 predicted 2, 2, 1
