"""ImageNet through the real Snakemake: a tiny ImageFolder tree trained and certified end to end, the dry
run of config/imagenet.yaml without data, and a missing tree refused by the first job, naming the folder."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO, snakemake
from formats import write_image_folder

from robustcert import data, results

TINY = str(REPO / "tests/configs/tiny_imagenet.yaml")


@pytest.mark.workflow
def test_tiny_image_folder_trains_and_certifies_end_to_end(workflow_copy, tmp_path):
    write_image_folder(tmp_path / "data")
    snakemake(workflow_copy, "--configfile", TINY, "--config", f"data_root={tmp_path / 'data'}", "--cores", "2",
              "--resources", "gpu=1", "--", "all")
    split = data.load_split(workflow_copy / "results/data/imagenet/split.npz")
    assert split.image_shape == (3, 8, 8) and split.num_classes == 3 and len(split.y_test) == 6
    certified = pd.read_csv(workflow_copy / "results/smoothing/imagenet/seed_0/none/smoothing/sigma_0.25/certify.tsv", sep="\t")
    assert certified["idx"].tolist() == list(range(6)) and certified["label"].tolist() == [0, 0, 1, 1, 2, 2]
    row = results.wide(results.read_rows(workflow_copy / "results/tables/all.tsv"))
    row = row[row["method"] == "smoothing"].iloc[0]
    assert row["source"] == "imagenet" and row["n_test"] == 6
    assert row["accuracy"] >= 5 / 6 and row["acr"] > 0.3  # colour is the class: learnable under σ = 0.25
    assert (workflow_copy / "results/plots/imagenet/smoothing/noisy_examples.png").exists()


def test_imagenet_config_plans_without_data(workflow_copy):
    result = snakemake(workflow_copy, "-n", "--configfile", "config/imagenet.yaml", "--cores", "2", "--", "all")
    for rule, count in (("split_dataset", 1), ("train_smoothed", 3), ("certify_smoothed", 60), ("predict_smoothed", 60)):
        assert any(line.split() == [rule, str(count)] for line in result.stdout.splitlines()), result.stdout
    assert "results-imagenet/tables/all.tsv" in result.stdout


def test_missing_tree_fails_the_first_job_naming_the_folder(workflow_copy, tmp_path):
    result = snakemake(workflow_copy, "--configfile", TINY, "--config", f"data_root={tmp_path / 'nowhere'}",
                       "--cores", "1", "--", "all", check=False)
    assert result.returncode != 0
    log = (workflow_copy / "results/logs/split_dataset/imagenet.log").read_text()
    assert f"missing folder(s) {tmp_path / 'nowhere' / 'imagenet' / 'train'}" in log
    assert not (workflow_copy / "results/smoothing").exists()
