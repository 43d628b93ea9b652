"""The workflow itself, run with the real Snakemake: lint, dry runs, schema errors, end-to-end runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake

from robustcert import results
from robustcert.bilevel import transfer_table

pytestmark = pytest.mark.workflow
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def wide_tables(workdir: Path) -> pd.DataFrame:
    """The per-method wide tables of a run, one after the other (columns: their union)."""
    tables = [pd.read_csv(p, sep="\t") for p in sorted((workdir / "results/tables").glob("*.tsv")) if p.name != "all.tsv"]
    return pd.concat(tables, ignore_index=True)


def test_lint_is_clean(workflow_copy):
    result = snakemake(workflow_copy, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_dry_run_of_every_config_without_data(workflow_copy, config):
    result = snakemake(workflow_copy, "-n", "--configfile", f"config/{config.name}", "--cores", "2",
                       "--resources", "gpu=2", "--", "all")  # all: each config's tables are under its own <results>
    trains = "train_shard" in result.stdout or "train_smoothed" in result.stdout  # imagenet.yaml: smoothing only
    assert trains and "tabulate_results" in result.stdout


def _bad_config(workflow_copy: Path, edit) -> subprocess.CompletedProcess:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    edit(config)
    (workflow_copy / "bad.yaml").write_text(yaml.safe_dump(config))
    return snakemake(workflow_copy, "-n", "--configfile", "bad.yaml", "--cores", "1", check=False)


@pytest.mark.parametrize("edit,named", [
    (lambda c: c["defenses"]["dpa"]["train"].update(epoch=3), "epoch"),
    (lambda c: c["defenses"]["dpa"].update(k="twenty"), "twenty"),
    (lambda c: c["attacks"]["backdoor"].update(fraction=1.5), "1.5"),
    (lambda c: c["experiments"][0]["attacks"].append("missing_attack"), "missing_attack"),
    (lambda c: c["defenses"]["dpa"].update(certificates=["fa"]), "defenses.dpa (dpa.schema.yaml)"),
    (lambda c: c["defenses"]["fa"].update(method="patchwork"), "defenses.fa.method is 'patchwork', which has no schema"),
    (lambda c: c["defenses"]["smoothing"].update(batch_size="automatic"), "automatic"),
])
def test_bad_config_is_one_error_naming_it_before_any_job(workflow_copy, edit, named):
    result = _bad_config(workflow_copy, edit)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (workflow_copy / "results").exists()


def _mnist_run(workdir: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return snakemake(workdir, "--configfile", str(REPO / "tests/configs/tiny_mnist.yaml"),
                     "--config", f"data_root={data_root}", "--cores", "2", "--resources", "gpu=1", *extra,
                     "--", "results/tables/all.tsv")


def test_tiny_mnist_through_the_whole_chain_and_deterministic_after_a_kill(workflow_copy, tiny_mnist):
    _mnist_run(workflow_copy, tiny_mnist)
    table = results.wide(results.read_rows(workflow_copy / "results/tables/all.tsv"))
    assert list(table["attack"]) == ["none", "backdoor"] and set(table["source"]) == {"mnist"}
    assert (table["n_test"] == 100).all() and (table["k"] == 4).all()
    assert table.loc[table.attack == "backdoor", "poison_size"].item() == 2 * round(0.05 * 350)
    assert table["accuracy"].min() > 0.5  # the bars are learnable
    first = (workflow_copy / "results/tables/all.tsv").read_text()

    # Kill the whole run in the middle of training, rerun: it completes with the same numbers.
    (workflow_copy / "results").rename(workflow_copy / "results_first")
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.Popen(
        [str(exe), "--configfile", str(REPO / "tests/configs/tiny_mnist.yaml"), "--config",
         f"data_root={tiny_mnist}", "--cores", "2", "--resources", "gpu=1", "--", "results/tables/all.tsv"],
        cwd=workflow_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "ROBUSTCERT_DEVICE": "cpu"})
    logs = workflow_copy / "results/logs/train_shard"
    deadline = time.time() + 300
    while time.time() < deadline and not (logs.exists() and any(logs.rglob("*.log"))):
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workflow_copy / "results/tables/all.tsv").exists()
    _mnist_run(workflow_copy, tiny_mnist, "--unlock")  # a SIGKILLed Snakemake leaves its lock behind
    _mnist_run(workflow_copy, tiny_mnist)
    assert (workflow_copy / "results/tables/all.tsv").read_text() == first


def _assert_asr_all_beside_asr(tidy: pd.DataFrame, digits_labels: np.ndarray) -> None:
    """Every result with an ``asr`` has an ``asr_all`` (every method with a trigger), and on digits
    (target 7) asr_all = (1 − s)·asr + s·a with s the target class's share of the test set, a in [0, 1]
    (for the methods on the whole test set: patch smoothing certifies every 3rd point)."""
    rates = tidy[tidy["metric"].isin(["asr", "asr_all"])].pivot_table(
        index=["dataset", "attack", "defense", "certificate", "params"], columns="metric", values="value")
    assert rates.notna().all().all()
    assert set(rates.index.get_level_values("defense")) == {"dpa", "fa", "undefended", "robust", "patch", "rab"}
    digits, share = rates.xs("digits", level="dataset").drop("patch", level="defense"), float((digits_labels == 7).mean())
    a = (digits["asr_all"] - (1 - share) * digits["asr"]) / share
    assert a.between(-1e-9, 1 + 1e-9).all()


def _assert_each_certificate_certifies_an_attack_in_its_reach(table: pd.DataFrame, rab: pd.DataFrame) -> None:
    """Every certificate has a row certified above 0 at an attack's budget, beside the large attacks
    certified at 0, and the undefended model falls to the attacks the certificates hold."""
    few = table[table["attack"] == "backdoor_few"].set_index("certificate")
    large = table[table["attack"] == "backdoor"].set_index("certificate")
    for certificate in ("dpa", "dpa_roe", "fa", "fa_roe"):  # 3 poisoned samples: 6 insertions/deletions
        assert few.loc[certificate, "poison_size"] == 6 and few.loc[certificate, "certified_vs_attack"] > 0
        assert few.loc[certificate, "certified_ra"] > 0
        assert large.loc[certificate, "certified_vs_attack"] == 0  # 25 samples: beyond every certificate
    patch = table[(table["method"] == "patch") & (table["attack"] == "backdoor_2x2")]
    assert (patch["trigger_side"] == 2).all() and (patch["trigger_within_certified"] > 0).any()
    assert (patch["certified_ra"] > 0).any()
    assert (table[(table["method"] == "patch") & (table["attack"] == "backdoor")]["trigger_side"] == 3).all()
    small = rab[(rab["certificate"] == "rab") & (rab["attack"] == "four_pixel")].iloc[0]
    assert small["certified_vs_attack"] > 0
    undefended = table[table["method"] == "undefended"].set_index(["dataset", "attack"])
    assert undefended.loc[("digits_binary", "four_pixel_strong"), "asr"] >= 0.8
    assert undefended.loc[("digits", "backdoor_2x2"), "asr"] >= 0.8
    assert patch["asr"].max() < undefended.loc[("digits", "backdoor_2x2"), "asr"]


def _assert_detection_is_scored_by_the_infected_label(workdir: Path, table: pd.DataFrame) -> None:
    """A backdoored model counts as detected only when its target label is flagged."""
    detection = table[table["method"] == "detection"].set_index("attack")
    target_flagged = detection.loc["backdoor", "flagged@label=7"] == 1
    assert detection.loc["backdoor", "detected"] == target_flagged
    verdicts = pd.read_csv(workdir / "results/tables/detection/verdicts.tsv", sep="\t", dtype=str).set_index("attack")
    assert verdicts.loc["backdoor", "true_target"] == "7" and verdicts.loc["none", "true_target"] == "none"
    assert verdicts.loc["backdoor", "verdict"].startswith("detected" if target_flagged else "missed")
    confusion = pd.read_csv(workdir / "results/tables/detection/confusion.tsv", sep="\t").set_index("level")
    assert confusion.loc["model", "tp"] == int(target_flagged)


def test_default_config_end_to_end(workflow_copy):
    """The README's main job (`make run`): every defense of the default config, on 2 cores."""
    snakemake(workflow_copy, "--cores", "2", "--resources", "gpu=1", "--", "all")
    tidy = results.read_rows(workflow_copy / "results/tables/all.tsv")  # the fixed header, no empty cell
    assert tuple(tidy.columns) == results.COLUMNS
    assert not tidy.duplicated(["dataset", "attack", "defense", "certificate", "params", "metric", "axis", "at"]).any()
    for wide in sorted((workflow_copy / "results/tables").glob("*.tsv")):  # the numbers of all.tsv, reshaped
        if wide.name == "bilevel_transfer.tsv":  # a matrix of the bilevel rows: attack victim × evaluation victim
            bilevel_rows = tidy[tidy["certificate"] == "target_class_certify"]
            transfer_table(bilevel_rows).to_csv(workflow_copy / "again.tsv", sep="\t", index=False)
            assert (workflow_copy / "again.tsv").read_text() == wide.read_text(), wide.name
        elif wide.name != "all.tsv":
            cells = pd.read_csv(wide, sep="\t")[["method", "certificate"]].drop_duplicates()
            mine = tidy[~tidy["metric"].isin(["der", "rir"])].merge(cells, on=["method", "certificate"])
            results.wide(mine).to_csv(workflow_copy / "again.tsv", sep="\t", index=False)
            assert (workflow_copy / "again.tsv").read_text() == wide.read_text(), wide.name
    assert {"all.tsv", "bilevel.tsv", "dpa.tsv", "fa.tsv", "smoothing.tsv"} <= {
        p.name for p in (workflow_copy / "results/tables").glob("*.tsv")}
    table = wide_tables(workflow_copy)
    dpa = table[table["certificate"] == "dpa"].set_index("attack")
    assert set(dpa.index) == {"none", "backdoor", "backdoor_few", "label_flip", "bilevel"}
    assert (dpa["n_test"] == 360).all() and (dpa["k"] == 20).all()
    assert dpa.loc["none", "accuracy"] > 0.9  # the aggregate of 20 small CNNs on digits
    assert (dpa["accuracy"] >= dpa["base_accuracy_mean"]).all()  # voting helps
    assert dpa.loc["none", "median_cert_ref"] == dpa.loc["none", "median_cert"] + 1 >= 2
    assert dpa.loc["none", "cert_acc@poison_samples=0"] == dpa.loc["none", "accuracy"]
    assert 0 <= dpa.loc["backdoor", "asr"] <= 1 and pd.isna(dpa.loc["none", "asr"])
    assert dpa.loc["backdoor", "poison_size"] == 2 * round(0.02 * 1257)
    assert dpa.loc["backdoor", "certified_ra"] <= dpa.loc["backdoor", "ra"] <= 1 - dpa.loc["backdoor", "asr"]
    assert pd.isna(dpa.loc["none", "asr_all"])
    _assert_asr_all_beside_asr(tidy, np.load(workflow_copy / "results/data/digits/split.npz")["y_test"])

    compared = tidy[tidy["metric"].isin(["der", "rir"])]
    # the attacks with a trigger and an undefended model: the backdoors on digits, RAB's four pixels on 6 vs 8
    assert set(zip(compared["dataset"], compared["attack"])) == {
        ("digits", "backdoor"), ("digits", "backdoor_few"), ("digits", "backdoor_2x2"),
        ("digits_binary", "four_pixel"), ("digits_binary", "four_pixel_strong")}
    assert compared["params"].str.contains("baseline=undefended").all() and compared["value"].between(0, 1).all()
    bench = pd.read_csv(workflow_copy / "results/tables/backdoorbench.csv").set_index(["attack", "defense", "certificate"])
    dpa_bench = bench.loc[("backdoor", "dpa", "dpa")]
    assert dpa_bench["asr_attack"] > dpa_bench["asr_defense"] and dpa_bench["der"] > 0.5  # DPA resists

    variants = table.groupby(["attack", "defense"])["certificate"].apply(set)
    assert variants[("none", "dpa")] == {"dpa", "dpa_roe"} and variants[("backdoor", "fa")] == {"fa", "fa_roe"}
    fa = table[(table["certificate"] == "fa") & (table["attack"] == "none")].iloc[0]
    assert fa["d"] == 4 and fa["k"] == 20 and fa["accuracy"] > 0.9

    smoothing = table[table["certificate"] == "cohen_certify"]
    assert sorted(smoothing["sigma_train"].unique()) == [0.25, 0.5] and len(smoothing) == 4
    assert (smoothing["n"] == 10000).all() and (smoothing["n_test"] == 40).all()
    assert (smoothing["sigma_train"] == smoothing["sigma_certify"]).all()
    clean = smoothing[smoothing["attack"] == "none"].set_index("sigma_train")
    assert clean.loc[0.25, "accuracy"] > 0.8 and clean.loc[0.25, "acr"] > 0.2
    # σ·Φ⁻¹(α^(1/n)) = 0.85 bounds every radius at σ = 0.25, n = 10 000, α = 0.001; σ = 0.5 reaches 1.7
    assert pd.isna(clean.loc[0.25, "k"])  # smoothing has no partitions
    assert clean.loc[0.25, "cert_acc@l2=1"] == 0
    assert (smoothing["cert_acc@l2=1"] <= smoothing["cert_acc@l2=0"]).all()

    bilevel = table[table["certificate"] == "target_class_certify"].set_index("sigma_train")
    assert sorted(bilevel.index) == [0.25, 0.5] and (bilevel["target"] == 8).all()
    assert (bilevel["acr_clean"] > 0).all() and (bilevel["n_test"] > 0).all()
    assert (bilevel["acr_drop"] == 1 - bilevel["acr"] / bilevel["acr_clean"]).all()
    assert ("bilevel", "dpa") in variants.index  # the poisons also go through DPA (transfer)
    poison = np.load(workflow_copy / "results/poison/digits/seed_0/bilevel.npz")
    split = np.load(workflow_copy / "results/data/digits/split.npz")
    original = split["x_train"][poison["index"]].astype(int)
    assert np.abs(poison["x"].astype(int) - original).max() <= 25  # ε = 0.1 of 255
    assert np.array_equal(poison["y"], split["y_train"][poison["index"]]) and (poison["y"] == 8).all()

    for name in ("poison_budget", "seed_0/smoothing/none/smoothing", "seed_0/smoothing/bilevel/smoothing", "seed_0/bilevel_bilevel_objective", "smoothing/noisy_examples",
                 "smoothing_radius", "patch/patch"):
        for ext in ("png", "pdf"):
            assert (workflow_copy / f"results/plots/digits/{name}.{ext}").stat().st_size > 1000
    for ext in ("png", "pdf"):
        assert (workflow_copy / f"results/plots/digits_binary/rab_l2_budget.{ext}").stat().st_size > 1000
    rab = pd.read_csv(workflow_copy / "results/tables/rab.tsv", sep="\t")  # digits 6 vs 8 × {none, four pixel ×2}
    assert sorted(rab["certificate"]) == ["rab"] * 3 + ["rab_expected"] * 3
    assert (rab["n_test"] == 118).all() and rab["cert_acc@l2_train=0"].between(0, 1).all()
    certify = pd.read_csv(workflow_copy / "results/certify/digits/seed_0/none/dpa/dpa.tsv", sep="\t")
    assert list(certify.columns) == ["idx", "label", "predict", "radius", "correct"] and len(certify) == 360
    # the table's numbers are those of the certificates (the reshaping changed none of them)
    assert dpa.loc["none", "accuracy"] == certify["correct"].mean()
    for budget in (1, 2, 5):
        expected = ((certify["radius"] >= budget) & (certify["correct"] == 1)).mean()
        assert dpa.loc["none", f"cert_acc@poison_samples={budget}"] == expected
    smoothed = pd.read_csv(workflow_copy / "results/smoothing/digits/seed_0/none/smoothing/sigma_0.25/certify.tsv", sep="\t")
    assert list(smoothed.columns) == ["idx", "label", "predict", "radius", "correct"]
    assert smoothed["idx"].tolist() == list(range(0, 360, 9))
    _assert_each_certificate_certifies_an_attack_in_its_reach(table, rab)
    _assert_detection_is_scored_by_the_infected_label(workflow_copy, table)
    # The HTML report builds on the default config and holds every plot and the table.
    snakemake(workflow_copy, "--report", "results/report.html", "--", "all")
    report = (workflow_copy / "results/report.html").read_text(errors="replace")
    for name in ("poison_budget.png", "all.tsv", "bilevel_bilevel_objective.png"):
        assert name in report
    # Nothing left to do afterwards.
    dry = snakemake(workflow_copy, "-n", "--cores", "2", "--", "all")
    assert "Nothing to be done" in dry.stdout + dry.stderr
