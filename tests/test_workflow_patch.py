"""Patch smoothing as a method of the workflow (robustcert.workflow.patch, rules/patch.smk): the plan,
its checks of bad input before any job, the rows of a certify TSV, and a real run on digits."""

from __future__ import annotations

import copy
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake

from robustcert import config as cfg, poison, results
from robustcert.workflow import patch, patchcleanser
from robustcert.workflow.smoothing import certified_points, point_shards

SCHEMAS = REPO / "config" / "schemas"
WC = SimpleNamespace(dataset="digits", seed="0", attack="backdoor", defense="patch", ablation="band_s2")


@pytest.fixture
def config() -> dict:
    loaded = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.validate_config(loaded, SCHEMAS)
    return loaded


def test_the_stage_module_loads_no_torch():
    code = "import sys, robustcert.workflow.patch\nassert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_plan_has_a_row_per_attack_and_ablation(config):
    plan = patch.Plan(config)
    assert plan.rows() == [f"<results>/tables/rows/digits/seed_0/{a}/patch/patch_{b}.tsv"
                           for a in ("none", "backdoor_2x2") for b in ("band_s2", "block_s4")]
    assert plan.plots() == ["<results>/plots/digits/patch_size.png", "<results>/plots/digits/patch_size.pdf"]
    assert plan.recipe(WC)["ablation"] == {"count": 1, "kind": "band", "size": 2}
    assert plan.settings(WC)["ablation"] == {"count": 1, "kind": "band", "size": 2}
    assert set(plan.settings(WC)) == {"ablation", *patch.SETTINGS_KEYS}
    assert plan.shards(WC) == ["<results>/patch/digits/seed_0/backdoor/patch/band_s2/certify/shard_0.tsv"]
    assert list(plan.rule_params(WC)) == ["theta_0.2", "top_one"]
    checks = plan.checks(WC)  # what the certify and attack TSVs are checked against
    assert checks["rules"] == ["theta_0.2", "top_one"] and checks["randomized"] is None
    assert checks["ablation"] == {"kind": "band", "size": 2, "count": 1, "height": 8, "width": 8}
    assert checks["test_size"] == 360 and checks["attack"] == {"n_points": 10, "patch_sizes": [2], "undefended": True}


@pytest.mark.parametrize("change,problem", [
    ({"ablations": [{"kind": "band", "size": 9}]}, "band ablation s=9 × k=1 does not fit the image's W=8"),
    ({"ablations": [{"kind": "block", "size": 2, "count": 3}]}, "k=3 does not divide the image's H=8"),
    ({"patch_sizes": [1, 9]}, r"patch_sizes \[9\] larger than the image"),
    ({"ablations": [{"kind": "band", "size": 2}, {"kind": "band", "size": 2}]}, "an ablation is listed twice"),
])
def test_ablations_and_patches_that_do_not_fit_the_dataset_are_refused(config, change, problem):
    bad = copy.deepcopy(config)
    bad["defenses"]["patch"].update(change)
    with pytest.raises(ValueError, match=problem):
        patch.Plan(bad)


@pytest.mark.parametrize("change,problem", [
    ({"thresholds": [0.0]}, "thresholds"), ({"thresholds": [1.5]}, "thresholds"),
    ({"ablations": [{"kind": "diagonal", "size": 2}]}, "diagonal"),
])
def test_the_schema_refuses_thresholds_outside_0_1_and_unknown_kinds(change, problem):
    bad = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad["defenses"]["patch"].update(change)
    with pytest.raises(ValueError, match=f"(?s)defenses.patch .*{problem}"):
        cfg.validate_config(bad, SCHEMAS)


def test_a_trigger_side_is_the_square_that_covers_it():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 5:8, 6:8] = True
    assert patch.trigger_side(mask) == 3
    mask[0, 0, 0] = True
    assert patch.trigger_side(mask) == 8


def test_rows_of_a_certify_tsv(tmp_path):
    # a band of 1 column on 8×8 images (8 positions, Δ(m) = m), 8 classes; votes and what follows from them
    rows = [  # idx label triggered predict certified_patch base_correct {class: votes}
        (0, 1, 0, 1, 3, 8 / 8, {1: 8}), (1, 2, 0, 2, 1, 5 / 8, {2: 5, 1: 2, 0: 1}),
        (2, 7, 0, 1, 2, 0 / 8, {1: 7, 0: 1}), (3, 7, 0, 7, 3, 8 / 8, {7: 8}),  # of the target class 7
        (0, 1, 1, 1, 3, 8 / 8, {1: 8}), (1, 2, 1, 7, 1, 2 / 8, {7: 5, 2: 2, 0: 1}), (2, 7, 1, 7, 3, 1.0, {7: 8}),
        (3, 7, 1, 7, 3, 8 / 8, {7: 8})]
    frame = pd.DataFrame([{"idx": i, "label": label, "triggered": t, "rule": "top_one", "predict": p,
                           "certified_class": p, "certified_patch": m, "base_correct": base,
                           **{f"count_{c}": votes.get(c, 0) for c in range(8)}}
                          for i, label, t, p, m, base, votes in rows])
    patch.CERTIFY_TSV.write(frame, tmp_path / "certify.tsv")
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 0:3, 0:3] = True
    trigger = poison.Trigger(mask, np.full((1, 8, 8), 250, np.uint8), "set")
    poison.save_poison(tmp_path / "poison.npz", poison.Poison(np.zeros(0, np.int64), np.zeros((0, 1, 8, 8), np.uint8),
                                                              np.zeros(0, np.int64), trigger, 7))
    keys = {"dataset": "digits", "attack": "backdoor", "attack_type": "backdoor", "defense": "patch",
            "method": "patch", "certificate": "-"}
    checks = {"ablation": {"kind": "band", "size": 1, "count": 1, "height": 8, "width": 8}, "rules": ["top_one"],
              "randomized": None, "test_size": 4, "skip": 1, "max": None, "test_indices": None, "points_per_job": 4,
              "attack": None}
    patch.summarize_patch(str(tmp_path / "certify.tsv"), str(tmp_path / "poison.npz"), [], str(tmp_path / "rows.tsv"),
                          keys, {"ablation": "band_s1"}, {"top_one": {}}, [1, 2, 3], checks)
    row = results.wide(results.read_rows(tmp_path / "rows.tsv")).iloc[0]
    assert row["certificate"] == "top_one" and row["n_test"] == 4
    assert row["accuracy"] == pytest.approx(3 / 4) and row["base_accuracy"] == pytest.approx((1 + 5 / 8 + 0 + 1) / 4)
    assert [row[f"cert_acc@patch_size={m}"] for m in (1, 2, 3)] == pytest.approx([3 / 4, 2 / 4, 2 / 4])
    assert row["asr"] == 0.5 and row["ra"] == 0.5 and row["trigger_side"] == 3  # the target-class copies left out
    assert row["asr_all"] == pytest.approx(3 / 4)  # … and counted
    assert row["certified_ra"] == 0.5 and row["trigger_within_certified"] == 0.5


@pytest.mark.workflow
def test_patch_smoothing_through_the_workflow(default_run):
    """Both patch defenses in the default run: patch smoothing's rows, PatchCleanser's (plain and masked),
    and the patch figure with both and the undefended model under the patch attack."""
    _check_patchcleanser(default_run)
    table = pd.read_csv(default_run / "results/tables/patch.tsv", sep="\t")
    assert sorted(table["certificate"].unique()) == ["theta_0.2", "top_one"]
    assert len(table) == 2 * 2 * 2 and (table["n_test"] == 120).all()
    assert table["cert_acc@patch_size=1"].between(0, 1).all()
    backdoor = table[table["attack"] == "backdoor_2x2"]
    assert backdoor["asr"].notna().all() and backdoor["asr_all"].notna().all() and (backdoor["trigger_side"] == 2).all()
    assert table["undefended_attack_acc@patch_size=2"].between(0, 1).all()
    # no point certified against a 2×2 patch is broken by one
    assert (table["attack_acc@patch_size=2"] >= table["cert_acc_attacked@patch_size=2"]).all()
    assert (default_run / "results/plots/digits/patch_size.png").stat().st_size > 0


@pytest.mark.workflow
def test_the_randomized_certificate_through_the_workflow_over_two_shards(workflow_copy):
    """The randomized certificate (off in the default config) beside the two deterministic ones, with the
    test points certified in two jobs and gathered in their order: one ablation, one epoch. Its own run:
    no run of the session has the randomized certificate, and adding it to one would change what that
    run's tests count."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["defenses"] = {"patch": {**config["defenses"]["patch"], "skip": 12, "points_per_job": 20,
                                    "ablations": [{"kind": "block", "size": 4}], "attack": {"enabled": False},
                                    "randomized": {"enabled": True, "n0": 20, "n": 200},
                                    "train": {**config["defenses"]["patch"]["train"], "epochs": 1, "milestones": []}}}
    config["experiments"] = [{"datasets": ["digits"], "attacks": ["none"], "defenses": ["patch"]}]
    (workflow_copy / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workflow_copy, "-c2", "results/tables/patch.tsv")
    table = pd.read_csv(workflow_copy / "results" / "tables" / "patch.tsv", sep="\t")
    assert sorted(table["certificate"]) == ["randomized", "theta_0.2", "top_one"] and (table["n_test"] == 30).all()
    assert table["cert_acc@patch_size=1"].between(0, 1).all()
    shards = workflow_copy / "results/patch/digits/seed_0/none/patch/block_s4/certify"
    certify = pd.read_csv(shards.with_suffix(".tsv"), sep="\t")
    assert len(certify) == 30 * 3 and len(list(shards.glob("shard_*.tsv"))) == 2
    assert list(certify.loc[certify["rule"] == "top_one", "idx"]) == list(range(0, 360, 12))


def test_given_test_indices_are_certified_in_their_order_and_refused_beyond_the_test_set(config):
    wc = SimpleNamespace(dataset="digits", seed="0", attack="none", defense="patch", ablation="band_s2")
    given = copy.deepcopy(config)
    given["defenses"]["patch"].update(test_indices=[5, 3, 200, 7, 11], skip=2, points_per_job=2)
    plan = patch.Plan(given)
    assert plan.settings(wc)["test_indices"] == [5, 3, 200, 7, 11]
    assert [s.tolist() for s in point_shards(360, plan.settings(wc))] == [[5, 200], [11]]
    assert plan.shards(wc) == [f"<results>/patch/digits/seed_0/none/patch/band_s2/certify/shard_{i}.tsv" for i in (0, 1)]
    assert {k: plan.row_params(wc)[k] for k in ("test_indices", "skip")} == {"test_indices": 5, "skip": 2}
    given["defenses"]["patch"]["test_indices"] = [3, 360, 400]
    with pytest.raises(ValueError, match=r"test_indices \[360, 400\] beyond the 360 test points"):
        patch.Plan(given)
    with pytest.raises(ValueError, match="test indices up to 360 given, but the test set has 360 points"):
        certified_points(360, 1, None, [3, 360])


@pytest.mark.workflow
def test_patch_smoothing_on_a_tiny_mnist_format_dataset(workflow_copy, tiny_mnist):
    """The MNIST-format instance (docs/methods.md §4: column and row bands s = 4 on 28×28 images), through the
    real idx loader: rows for every ablation and rule, and certified patch sizes bounded by the image."""
    config = yaml.safe_load((REPO / "tests/configs/tiny_mnist.yaml").read_text())
    config["data_root"] = str(tiny_mnist)
    config["defenses"] = {"patch": {
        "method": "patch", "arch": "small_cnn", "ablations": [{"kind": "band", "size": 4}, {"kind": "row", "size": 4}],
        "patch_sizes": [1, 3, 5], "skip": 3, "max": 10, "points_per_job": 10,
        "train": {"epochs": 10, "batch_size": 32, "lr": 0.05, "milestones": [8]}}}
    config["experiments"] = [{"datasets": ["mnist"], "attacks": ["none", "backdoor"], "defenses": ["patch"]}]
    (workflow_copy / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workflow_copy, "-c2", "results/tables/patch.tsv", "results/plots/mnist/patch_size.png")
    table = pd.read_csv(workflow_copy / "results/tables/patch.tsv", sep="\t")
    assert len(table) == 2 * 2 * 2 and (table["n_test"] == 10).all()
    assert "source" not in table and any((workflow_copy / "results/tables/rows/mnist").rglob("*.tsv"))  # one source
    assert sorted(table["ablation"].unique()) == ["band_s4", "row_s4"]
    curve = table[[f"cert_acc@patch_size={m}" for m in (1, 3, 5)]].to_numpy()
    assert (curve[:, :-1] >= curve[:, 1:]).all() and (curve <= table[["accuracy"]].to_numpy()).all()
    assert (table.loc[table["ablation"] == "band_s4", "accuracy"] >= 0.5).all()  # the test images' classes are columns
    print(table[["attack", "ablation", "certificate", "accuracy", "base_accuracy", "cert_acc@patch_size=1",
                 "cert_acc@patch_size=5", "asr"]].to_string())


def _check_patchcleanser(workdir):
    """PatchCleanser's rows of the default run: one per attack and training, sound against the patch attack."""
    table = pd.read_csv(workdir / "results/tables/patchcleanser.tsv", sep="\t")
    assert len(table) == 2 * 2 and sorted(table["training"].unique()) == ["masked", "plain"]
    assert (table["n_test"] == 60).all() and "certificate" not in table  # the same in every row: left out
    rows = results.concatenate(results.read_rows(p) for p in (workdir / "results/tables/rows").rglob("*.tsv")
                               if p.parent.name == "patchcleanser")
    assert set(rows["certificate"]) == {"double_masking"}
    curve = table[[f"cert_acc@patch_size={m}" for m in (1, 2, 3)]].to_numpy()
    clean = table[[f"clean_acc@patch_size={m}" for m in (1, 2, 3)]].to_numpy()
    assert (curve <= clean).all() and (table["accuracy"] == table["clean_acc@patch_size=3"]).all()
    assert (table["attack_acc@patch_size=2"] >= table["cert_acc_attacked@patch_size=2"]).all()
    assert table["undefended_attack_acc@patch_size=2"].between(0, 1).all()
    backdoor = table[table["attack"] == "backdoor_2x2"]
    assert backdoor["certified_ra"].between(0, 1).all() and (backdoor["trigger_side"] == 2).all()
    certify = patchcleanser.CERTIFY.read(
        workdir / "results/patchcleanser/digits/seed_0/backdoor_2x2/patchcleanser/masked_k3/certify.tsv")
    assert len(certify[certify["triggered"] == 0]) == 60 * 3 and (certify["disagreeing"] <= 9).all()
    assert ((certify["certified"] == 0) | (certify["predict"] == certify["label"])).all()
    print(table[["attack", "training", "accuracy", "cert_acc@patch_size=1", "cert_acc@patch_size=2",
                 "cert_acc@patch_size=3", "attack_acc@patch_size=2"]].to_string())


WC_CLEANSER = SimpleNamespace(dataset="digits", seed="0", attack="backdoor", defense="patchcleanser", variant="masked_k3")


def test_the_patchcleanser_plan_has_a_row_per_attack_and_training_and_shares_the_patch_figure(config):
    plan = patchcleanser.Plan(config)
    assert plan.rows() == [f"<results>/tables/rows/digits/seed_0/{a}/patchcleanser/patchcleanser_{t}_k3.tsv"
                           for a in ("none", "backdoor_2x2") for t in ("plain", "masked")]
    assert plan.plots() == patch.Plan(config).plots()
    assert plan.recipe(WC_CLEANSER)["masking"] == {"k": 3, "patch": 3, "value": 0.0}
    assert plan.recipe(SimpleNamespace(**{**vars(WC_CLEANSER), "variant": "plain_k3"}))["masking"] is None
    assert set(plan.settings(WC_CLEANSER)) == set(patchcleanser.SETTINGS_KEYS)
    parts = patch.figure_parts([patch.Plan(config), plan], WC_CLEANSER)
    kinds = [(spec["module"].rsplit(".", 1)[-1], spec["kind"]) for spec, _ in parts]
    assert kinds.count(("patchcleanser", "certify")) == 4 and kinds.count(("patch", "certify")) == 4
    assert [spec["attack"] for spec, _ in parts if spec["kind"] == "attack"] == ["none", "backdoor_2x2"]


@pytest.mark.parametrize("change,problem", [
    ({"patch_sizes": [2, 9]}, "patch_sizes: patch size 9 is not between 1 and the image's side 8"),
    ({"k": 7}, "k=7 masks per axis collapse to 6 distinct masks for patch size 3"),
    ({"attack": {"enabled": True, "patch_sizes": [4]}}, r"attack.patch_sizes \[4\] are not among patch_sizes"),
])
def test_mask_sets_that_do_not_fit_the_dataset_are_refused_before_any_job(config, change, problem):
    bad = copy.deepcopy(config)
    bad["defenses"]["patchcleanser"].update(change)
    cfg.validate_config(bad, SCHEMAS)
    with pytest.raises(ValueError, match=f"defenses.patchcleanser.*{problem}"):
        patchcleanser.Plan(bad)


@pytest.mark.parametrize("change,problem", [({"k": 0}, "k"), ({"mask_value": 1.5}, "mask_value"),
                                            ({"mask_value": -0.1}, "mask_value"), ({"trainings": ["cutout"]}, "cutout")])
def test_the_schema_refuses_k_below_1_and_mask_values_outside_the_data_range(change, problem):
    bad = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad["defenses"]["patchcleanser"].update(change)
    with pytest.raises(ValueError, match=f"(?s)defenses.patchcleanser .*{problem}"):
        cfg.validate_config(bad, SCHEMAS)


def test_rows_of_a_patchcleanser_certify_tsv(tmp_path):
    rows = [  # idx label triggered patch_size predict certified disagreeing
        (0, 1, 0, 1, 1, 1, 0), (0, 1, 0, 3, 1, 0, 2), (1, 2, 0, 1, 2, 1, 0), (1, 2, 0, 3, 2, 1, 0),
        (2, 0, 0, 1, 1, 0, 5), (2, 0, 0, 3, 0, 0, 1),
        (0, 1, 1, 3, 7, 0, 4), (1, 2, 1, 3, 2, 1, 0), (2, 0, 1, 3, 0, 0, 1), (0, 1, 1, 1, 1, 1, 0)]
    frame = pd.DataFrame(rows, columns=list(patchcleanser.CERTIFY.columns))
    patchcleanser.CERTIFY.write(frame, tmp_path / "certify.tsv")
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 0:3, 0:3] = True
    trigger = poison.Trigger(mask, np.full((1, 8, 8), 250, np.uint8), "set")
    poison.save_poison(tmp_path / "poison.npz", poison.Poison(np.zeros(0, np.int64), np.zeros((0, 1, 8, 8), np.uint8),
                                                              np.zeros(0, np.int64), trigger, 7))
    keys = {"dataset": "digits", "attack": "backdoor", "attack_type": "backdoor", "defense": "patchcleanser",
            "method": "patchcleanser", "certificate": "double_masking"}
    patchcleanser.summarize_patchcleanser(str(tmp_path / "certify.tsv"), str(tmp_path / "poison.npz"), [],
                                          str(tmp_path / "rows.tsv"), keys, {"training": "masked"}, [1, 3])
    row = results.wide(results.read_rows(tmp_path / "rows.tsv")).iloc[0]
    assert row["n_test"] == 3 and row["accuracy"] == 1.0 and row["clean_acc@patch_size=1"] == pytest.approx(2 / 3)
    assert [row[f"cert_acc@patch_size={m}"] for m in (1, 3)] == pytest.approx([2 / 3, 1 / 3])
    # the deployed side 3 covers the 3×3 trigger: the certified triggered copy of point 1 counts
    assert row["asr"] == pytest.approx(1 / 3) and row["ra"] == pytest.approx(2 / 3)
    assert row["certified_ra"] == pytest.approx(1 / 3) and row["trigger_side"] == 3
