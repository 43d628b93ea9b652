"""Replicates over seeds: an experiment grid's ``seeds`` runs every experiment once per seed (poisons,
partitions, models, noise; the split stays fixed), all.tsv keeps each seed's rows, the wide tables
report the mean, the standard deviation and the number of seeds, and the plots draw the mean with a
band. Unit tests on hand-made rows, and a real Snakemake run of tests/configs/replicates_small.yaml."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from conftest import REPO, snakemake  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from robustcert import config as cfg  # noqa: E402
from robustcert import plot, results  # noqa: E402
from robustcert.results import Metric, on_axis, tidy_rows  # noqa: E402
from robustcert.workflow import split  # noqa: E402

SMALL = REPO / "tests" / "configs" / "replicates_small.yaml"
SCHEMAS = REPO / "config" / "schemas"
KEYS = {"dataset": "digits", "attack": "backdoor", "attack_type": "backdoor", "defense": "dpa", "method": "dpa",
        "certificate": "dpa"}
BUDGET_KEYS = {**KEYS, "defense": "-", "method": "-", "certificate": "-"}


def _small_config() -> dict:
    config = yaml.safe_load(SMALL.read_text())
    cfg.validate_config(config, SCHEMAS)
    return config


# ----------------------------------------------------------------------------- the grid

def test_a_grid_runs_each_experiment_once_per_seed():
    config = _small_config()
    cells = cfg.experiments(config)
    assert len(cells) == 2 * 3 * 2 and {c.seed for c in cells} == {0, 1}
    reordered = cfg.experiments({**config, "experiments": [{**config["experiments"][0], "seeds": [1, 0]}]})
    assert sorted(reordered, key=str) == sorted(cells, key=str) and reordered[0].seed == 1


def test_a_grid_without_seeds_has_the_configs_one_seed():
    config = _small_config()
    config["seed"] = 7
    del config["experiments"][0]["seeds"]
    assert {c.seed for c in cfg.experiments(config)} == {7}


@pytest.mark.parametrize("seeds", [[0, 0], [], [-1], ["a"]])
def test_the_schema_refuses_bad_seeds(seeds):
    config = yaml.safe_load(SMALL.read_text())
    config["experiments"][0]["seeds"] = seeds
    with pytest.raises(Exception, match="seeds"):
        cfg.validate_config(copy.deepcopy(config), SCHEMAS)


# ----------------------------------------------------------------------------- the wide tables

def _replicates(accuracy: list[float], certified: list[float], poisoned: list[int]) -> pd.DataFrame:
    frames = []
    for seed, (acc, cert, count) in enumerate(zip(accuracy, certified, poisoned)):
        params = {"source": "digits", "seed": seed, "k": 20}
        frames.append(tidy_rows(KEYS, params, [Metric("n_test", 50), Metric("accuracy", acc),
                                               *on_axis("cert_acc", "poison_samples", [1], [cert])]))
        frames.append(tidy_rows(BUDGET_KEYS, {"source": "digits", "seed": seed}, [Metric("poisoned", count)]))
    return results.concatenate(frames)


def test_the_wide_table_reports_mean_sd_and_seeds_as_a_direct_computation():
    accuracy, certified, poisoned = [0.9, 0.8, 0.76], [0.5, 0.62, 0.56], [10, 12, 11]
    row = results.wide(_replicates(accuracy, certified, poisoned)).iloc[0]
    assert row["seeds"] == "0 1 2" and row["n_seeds"] == 3 and row["k"] == 20 and row["n_test"] == 50
    assert row["accuracy"] == pytest.approx(np.mean(accuracy))
    assert row["accuracy:sd"] == pytest.approx(np.std(accuracy, ddof=1))
    column = "cert_acc@poison_samples=1"
    assert row[column] == pytest.approx(np.mean(certified)) and row[f"{column}:sd"] == pytest.approx(np.std(certified, ddof=1))
    # the attack's budget of each seed joins that seed's experiment before the mean
    assert row["poisoned"] == pytest.approx(11) and row["poisoned:sd"] == pytest.approx(1)
    # the interval pools the certifications of every seed: 3 × 50 points
    low, high = proportion_confint(round(np.mean(certified) * 150), 150, alpha=0.05, method="beta")
    assert (row[f"{column}:ci_low"], row[f"{column}:ci_high"]) == pytest.approx((low, high))
    assert "seed" not in row and "n_test:sd" not in row and f"{column}:sd:ci_low" not in row


def test_a_table_without_replicates_is_unchanged():
    rows = _replicates([0.9], [0.5], [10])
    table = results.wide(rows)
    assert table["seed"].tolist() == [0] and "n_seeds" not in table and not any(c.endswith(":sd") for c in table)
    assert table.equals(results.with_intervals(results.per_seed(rows)))


def test_one_seed_beside_replicates_has_an_empty_sd():
    rows = results.concatenate([_replicates([0.9, 0.7], [0.5, 0.3], [10, 10]),
                                tidy_rows({**KEYS, "certificate": "dpa_roe"}, {"source": "digits", "seed": 0, "k": 20},
                                          [Metric("n_test", 50), Metric("accuracy", 0.6)])])
    table = results.wide(rows).set_index("certificate")
    assert table.loc["dpa", "n_seeds"] == 2 and table.loc["dpa_roe", "n_seeds"] == 1
    assert table.loc["dpa", "accuracy"] == pytest.approx(0.8) and np.isnan(table.loc["dpa_roe", "accuracy:sd"])


# ----------------------------------------------------------------------------- the plots

def test_a_curve_of_replicates_is_their_mean_with_a_band():
    fig, ax = plt.subplots()
    x = np.arange(4)
    plot.step_with_band(ax, x, [np.array([1.0, 0.8, 0.4, 0.0]), np.array([1.0, 0.6, 0.2, 0.0])], label="two seeds")
    plot.step_with_band(ax, x, [np.array([0.5, 0.5, 0.5, 0.5])], label="one seed")
    lines = ax.get_lines()
    assert lines[0].get_ydata().tolist() == pytest.approx([1.0, 0.7, 0.3, 0.0])
    assert len(ax.collections) == 1  # a band for the replicated curve only
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(1.0) and band.min() == pytest.approx(0.0)
    plt.close(fig)


def test_a_curve_can_show_its_clopper_pearson_interval_over_the_pooled_points():
    fig, ax = plt.subplots()
    plot.step_with_band(ax, np.arange(2), [np.array([0.5, 0.2]), np.array([0.7, 0.2])], points=[10, 30])
    mean, low, high = (line.get_ydata() for line in ax.get_lines())
    pooled = (0.5 * 10 + 0.7 * 30) / 40  # 26 of the 40 points
    assert (low[0], high[0]) == pytest.approx(proportion_confint(26, 40, alpha=0.05, method="beta"))
    assert low[0] < pooled < high[0] and mean[0] == pytest.approx(0.6)
    plt.close(fig)


# ----------------------------------------------------------------------------- through the workflow

@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """The small replicated config, run to the end."""
    from conftest import copy_workflow

    work = copy_workflow(tmp_path_factory.mktemp("replicates") / "wf")
    (work / "config" / "config.yaml").write_text(SMALL.read_text())
    snakemake(work, "--cores", "2", "--", "all")
    return work


@pytest.mark.workflow
def test_two_seeds_make_different_poisons_and_models_on_one_split(replicated):
    results_dir = replicated / "results"
    assert sorted(p.name for p in (results_dir / "data").iterdir()) == ["digits"]  # one split
    poisons = [np.load(results_dir / f"poison/digits/seed_{s}/backdoor.npz")["index"] for s in (0, 1)]
    assert not np.array_equal(*poisons)
    shards = [results_dir / f"models/digits/seed_{s}/none/dpa/shard_0.pt" for s in (0, 1)]
    assert shards[0].read_bytes() != shards[1].read_bytes()
    smoothed = [results_dir / f"smoothing/digits/seed_{s}/none/smoothing/sigma_0.25/model.pt" for s in (0, 1)]
    assert smoothed[0].read_bytes() != smoothed[1].read_bytes()


@pytest.mark.workflow
def test_all_tsv_keeps_each_seed_and_the_wide_table_is_their_mean(replicated):
    tidy = results.read_rows(replicated / "results/tables/all.tsv")
    accuracy = tidy[(tidy["metric"] == "accuracy") & (tidy["certificate"] == "dpa")]
    per_seed = accuracy.assign(seed=accuracy["params"].map(lambda p: int(results.parse_params(p)["seed"])))
    assert sorted(per_seed.groupby("attack")["seed"].apply(sorted).tolist()) == [[0, 1], [0, 1]]
    dpa = pd.read_csv(replicated / "results/tables/dpa.tsv", sep="\t").set_index("attack")
    for attack, values in per_seed.groupby("attack")["value"]:
        assert dpa.loc[attack, "n_seeds"] == 2 and dpa.loc[attack, "seeds"] == "0 1"
        assert dpa.loc[attack, "accuracy"] == pytest.approx(values.mean(), abs=5e-4)  # to 3 decimals
        assert dpa.loc[attack, "accuracy:sd"] == pytest.approx(values.std(ddof=1), abs=5e-4)
    assert (dpa["accuracy:sd"] > 0).any()  # the seeds' models differ
    smoothing = pd.read_csv(replicated / "results/tables/smoothing.tsv", sep="\t")
    assert (smoothing["n_seeds"] == 2).all() and "acr:sd" in smoothing


@pytest.mark.workflow
def test_der_pairs_each_seed_with_its_baseline_and_the_export_averages(replicated):
    tidy = results.read_rows(replicated / "results/tables/all.tsv")
    der = tidy[tidy["metric"] == "der"]
    assert len(der) == 2 and set(der["params"].map(lambda p: results.parse_params(p)["seed"])) == {"0", "1"}
    bench = pd.read_csv(replicated / "results/tables/backdoorbench.csv")
    assert len(bench) == 1 and bench.loc[0, "n_seeds"] == 2
    assert bench.loc[0, "der"] == pytest.approx(der["value"].mean())


@pytest.mark.workflow
def test_the_plots_of_replicates_are_drawn(replicated):
    for name in ("poison_budget", "smoothing_radius"):
        assert (replicated / f"results/plots/digits/{name}.png").stat().st_size > 0
    for seed in (0, 1):  # the per-experiment plots, one per seed
        assert (replicated / f"results/plots/digits/seed_{seed}/smoothing/backdoor/smoothing.png").exists()


# ----------------------------------------------------------------------------- a split per replicate, when asked

def test_replicates_share_the_split_unless_the_dataset_asks_for_its_own():
    config = _small_config()
    assert split.split_of(config, "digits", 1) == "<results>/data/digits/split.npz"
    config["datasets"]["digits"]["replicate_split"] = True
    assert split.split_of(config, "digits", 1) == "<results>/data/digits/seed_1/split.npz"
    # the option chooses files, it changes no split: the shared split's params stay as they were
    assert "replicate_split" not in split.dataset_params(config, SimpleNamespace(dataset="digits"))


@pytest.mark.workflow
def test_a_replicated_split_is_drawn_with_each_seed(workflow_copy):
    config = yaml.safe_load(SMALL.read_text())
    config["datasets"]["digits"]["replicate_split"] = True
    (workflow_copy / "split.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(workflow_copy, "-n", "--cores", "1", "--configfile", "split.yaml", "--", "all").stdout
    assert "split_dataset_of_replicate        2" in plan
    targets = [f"results/data/digits/seed_{s}/split.npz" for s in (0, 1)]
    snakemake(workflow_copy, "--cores", "2", "--configfile", "split.yaml", "--", *targets,
              "results/data/digits/split.npz")
    seed_0, seed_1, shared = (np.load(workflow_copy / p) for p in (*targets, "results/data/digits/split.npz"))
    assert not np.array_equal(seed_0["train_index"], seed_1["train_index"])
    assert np.array_equal(seed_0["train_index"], shared["train_index"])  # seed 0 is the config's seed
