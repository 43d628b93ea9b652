"""The bilevel attack's victims and its transfer table as part of the workflow (robustcert.workflow.bilevel,
rules/bilevel.smk): victims named in the config and refused when unknown, the rows that name both
victims, the transfer table of hand-made rows, and a real run of the 2 × 2 table on digits."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake

from robustcert import config as cfg, results
from robustcert.bilevel import transfer_table
from robustcert.workflow import bilevel

SCHEMAS = REPO / "config" / "schemas"
SMALL = REPO / "tests" / "configs" / "bilevel_transfer.yaml"


@pytest.fixture
def config() -> dict:
    loaded = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.validate_config(loaded, SCHEMAS)
    return loaded


def _with_victim(config: dict, victim: dict) -> dict:
    changed = copy.deepcopy(config)
    changed["attacks"]["bilevel"]["victim"] = victim
    return changed


def test_the_victim_defaults_to_gaussian_augmentation_and_names_the_rows(config):
    assert config["attacks"]["bilevel"]["victim"] == {"name": "gaussian_augmentation"}
    macer = _with_victim(config, {"name": "macer", "k": 2})
    plan = bilevel.Plan(macer)
    wc = SimpleNamespace(dataset="digits", seed="0", attack="bilevel", defense="smoothing", sigma="0.25")
    params = plan.row_params(wc)
    assert (params["victim"], params["victim_sigma"], params["victim_macer_k"]) == ("macer", 0.25, 2)
    assert params["objective"] == "gaussian_augmentation"  # the evaluation victim, the defense's objective
    assert plan.attack_params(wc)["victim"] == {"k": 2, "name": "macer"}  # the poisons change with it
    assert plan.transfer() == ["<results>/tables/bilevel_transfer.tsv"]


def test_an_unknown_victim_is_refused_by_the_schema(config):
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["attacks"]["bilevel"]["victim"] = {"name": "trades"}
    with pytest.raises(ValueError, match=r"(?s)attacks\.bilevel \(bilevel_radius\.schema\.yaml\).*'trades' is not one of"):
        cfg.validate_config(raw, SCHEMAS)


def test_a_setting_of_another_victim_is_refused_before_any_job(config):
    with pytest.raises(ValueError, match=r"attacks\.bilevel\.victim\.k: not a setting of 'gaussian_augmentation'"):
        bilevel.Plan(_with_victim(config, {"name": "gaussian_augmentation", "k": 2}))


def _rows(attack: str, victim: str, defense: str, objective: str, acr_clean: float, acr: float) -> pd.DataFrame:
    keys = {"dataset": "mnist", "attack": attack, "attack_type": "bilevel_radius", "defense": defense,
            "method": "smoothing", "certificate": bilevel.CERTIFICATE}
    params = {"victim": victim, "victim_sigma": 0.5, "objective": objective, "sigma_train": 0.5}
    drop = 1 - acr / acr_clean if acr_clean > 0 else math.nan
    return results.tidy_rows(keys, params, [results.Metric("acr_clean", acr_clean), results.Metric("acr", acr),
                                            results.Metric("acr_drop", drop)])


def test_the_transfer_table_of_hand_made_rows():
    """Two attack victims × three evaluation victims, one pair not evaluated and one clean ACR of 0."""
    rows = results.concatenate([
        _rows("bilevel", "gaussian_augmentation", "gauss", "gaussian_augmentation", 0.8, 0.4),
        _rows("bilevel", "gaussian_augmentation", "macer", "macer", 1.0, 0.6),
        _rows("bilevel", "gaussian_augmentation", "smoothadv", "smoothadv", 0.0, 0.0),
        _rows("bilevel_macer", "macer", "gauss", "gaussian_augmentation", 0.8, 0.2),
        _rows("bilevel_macer", "macer", "macer", "macer", 1.0, 0.5),
    ])
    table = transfer_table(rows).set_index("attack")
    gauss, macer, smoothadv = "gauss (gaussian_augmentation, σ=0.5)", "macer (macer, σ=0.5)", "smoothadv (smoothadv, σ=0.5)"
    assert list(table.columns) == ["dataset", "victim", "victim_sigma", gauss, macer, smoothadv]
    assert table.loc["bilevel", gauss] == pytest.approx(0.5) and table.loc["bilevel", macer] == pytest.approx(0.4)
    assert table.loc["bilevel_macer", gauss] == pytest.approx(0.75) and table.loc["bilevel_macer", macer] == 0.5
    assert math.isnan(table.loc["bilevel", smoothadv]) and math.isnan(table.loc["bilevel_macer", smoothadv])
    assert table.loc["bilevel_macer", "victim"] == "macer" and (table["victim_sigma"] == 0.5).all()


def test_the_transfer_table_where_no_clean_victim_certifies_anything():
    """No drop is defined (every clean ACR is 0, so the rows have no acr_drop): the cells are empty."""
    rows = results.concatenate([
        _rows("bilevel", "gaussian_augmentation", "gauss", "gaussian_augmentation", 0.0, 0.0),
        _rows("bilevel", "gaussian_augmentation", "macer", "macer", 0.0, 0.0),
    ])
    rows = rows[rows["metric"] != "acr_drop"]
    table = transfer_table(rows).set_index("attack")
    gauss, macer = "gauss (gaussian_augmentation, σ=0.5)", "macer (macer, σ=0.5)"
    assert list(table.columns) == ["dataset", "victim", "victim_sigma", gauss, macer]
    assert table[[gauss, macer]].isna().all().all()


def test_the_transfer_table_is_planned(workflow_copy):
    (workflow_copy / "small.yaml").write_text(SMALL.read_text())
    result = snakemake(workflow_copy, "-n", "--cores", "1", "--configfile", "small.yaml", "--",
                       "results/tables/bilevel_transfer.tsv")
    planned = result.stdout + result.stderr
    for rule, count in (("poison_bilevel_radius", 2), ("train_smoothed", 6), ("evaluate_bilevel_radius", 4)):
        assert f"{rule}" in planned and any(line.split() == [rule, str(count)] for line in planned.splitlines()), planned


@pytest.mark.workflow
def test_the_transfer_table_through_the_workflow(workflow_copy):
    """Poisons made against Gaussian augmentation and against MACER, each trained into both defenses, at
    the smallest sizes that run every step (the numbers are meaningless; the table's cells are the test).
    Its own run: the default run makes poisons against one victim, the table needs two."""
    config = yaml.safe_load(SMALL.read_text())
    tiny_attack = {"k": 2, "outer_epochs": 1, "niter1": 1, "niter2": 1, "batch_clean": 100, "batch_poison": 20,
                   "warmup_steps": 5, "evaluation": {"n_points": 10}}
    config["attacks"]["bilevel"] = tiny_attack
    config["attacks"]["bilevel_macer"].update(tiny_attack)
    for defense in config["defenses"].values():
        defense.update(n0=20, n=200, skip=18, points_per_job=20)
        defense["train"] = {**defense["train"], "epochs": 3, "milestones": [2]}
    (workflow_copy / "small.yaml").write_text(yaml.safe_dump(config))
    snakemake(workflow_copy, "--cores", "2", "--configfile", "small.yaml", "--", "results/tables/bilevel_transfer.tsv",
              "results/tables/bilevel.tsv")
    table = pd.read_csv(workflow_copy / "results/tables/bilevel_transfer.tsv", sep="\t").set_index("attack")
    evaluations = ["macer_025 (macer, σ=0.25)", "smoothing_025 (gaussian_augmentation, σ=0.25)"]
    assert sorted(table.index) == ["bilevel", "bilevel_macer"] and sorted(table.columns[3:]) == evaluations
    assert table.loc["bilevel_macer", "victim"] == "macer" and table[evaluations].notna().all().all()
    wide = pd.read_csv(workflow_copy / "results/tables/bilevel.tsv", sep="\t")
    assert len(wide) == 4 and (wide["acr_clean"] > 0).all()
    for row in wide.itertuples():
        assert table.loc[row.attack, f"{row.defense} ({row.objective}, σ=0.25)"] == pytest.approx(row.acr_drop, abs=5e-4)
    print(table.to_string())
