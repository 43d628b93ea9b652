"""The stage modules' plans, the config's validation and seeds, the results table format and the
extension registries, without Snakemake."""

from __future__ import annotations

import copy
import pkgutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from robustcert import certify, config as cfg, data, partition, poison, results, train
from robustcert.artifacts import ArtifactError
from robustcert.models import ARCHITECTURES, build_model, penultimate_features
from robustcert.workflow import aggregation, bilevel, ensemble, smoothing
from robustcert.workflow import poison as poison_stage

SCHEMAS = REPO / "config" / "schemas"
WORKFLOW_MODULES = ["robustcert.workflow", *(f"robustcert.workflow.{m.name}" for m in pkgutil.iter_modules(
    [str(REPO / "src" / "robustcert" / "workflow")]))]


@pytest.fixture
def default_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.validate_config(config, SCHEMAS)
    return config


def wildcards(**names: str) -> SimpleNamespace:
    """The wildcards of a job of the default config's one replicate (seed 0) unless given."""
    return SimpleNamespace(**{"seed": "0", **names})


# ----------------------------------------------------------------------------- config


def test_validation_fills_defaults_per_method_and_type(default_config):
    assert default_config["defenses"]["smoothing"]["bf16"] is False  # smoothing.schema.yaml
    assert default_config["defenses"]["dpa"]["train"]["strategy"] == "auto"  # defs.schema.yaml via $ref
    assert default_config["attacks"]["backdoor"]["dirty_label"] is True
    assert default_config["attacks"]["bilevel"]["evaluation"]["n_points"] == 40


@pytest.mark.parametrize("section,key,value,named", [
    ("defenses", "method", "patchwork", "defenses.dpa.method is 'patchwork', which has no schema"),
    ("attacks", "type", "sticker", "attacks.backdoor.type is 'sticker', which has no schema"),
])
def test_an_unknown_method_or_type_names_the_entry_and_the_known_ones(section, key, value, named):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    entry = "dpa" if section == "defenses" else "backdoor"
    config[section][entry][key] = value
    with pytest.raises(ValueError, match=named) as error:
        cfg.validate_config(config, SCHEMAS)
    assert "known: [" in str(error.value)


def test_a_bad_key_of_an_entry_is_refused_naming_the_entry():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["defenses"]["fa"]["certificates"] = ["dpa"]
    with pytest.raises(ValueError, match=r"(?s)defenses\.fa \(fa\.schema\.yaml\).*'dpa' is not one of"):
        cfg.validate_config(config, SCHEMAS)


def test_canonical_sorts_every_mapping_and_keeps_lists():
    value = {"b": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": 0}
    out = cfg.canonical(value)
    assert list(out) == ["a", "b"] and list(out["b"]) == ["x", "y"] and list(out["b"]["x"][0]) == ["c", "d"]
    assert repr(cfg.canonical(dict(reversed(list(value.items()))))) == repr(out)


def test_derived_seeds_keep_seed_zero_and_give_disjoint_replicates():
    assert [cfg.derive_seed(0, j) for j in range(3)] == [0, 1, 2]
    blocks = [{cfg.derive_seed(s, j) for j in range(10_000)} for s in range(100)]
    assert sum(map(len, blocks)) == len(set().union(*blocks))  # 100 replicates of 10 000 items, no seed shared
    assert all(0 <= seed < 2**32 for block in blocks for seed in block)


def test_replicates_draw_different_torch_streams():
    """torch's CPU generator keeps the low 32 bits of a seed: each replicate's derived seed must differ there."""
    import torch

    draws = {tuple(torch.rand(4, generator=torch.Generator().manual_seed(cfg.derive_seed(s, 3))).tolist())
             for s in range(5)}
    assert len(draws) == 5


def test_fa_shifts_are_the_references_at_seed_zero_and_change_with_the_seed():
    x = np.random.default_rng(0).integers(0, 256, (200, 1, 4, 4), dtype=np.uint8)
    y = np.arange(200) % 10
    reference = partition.partition_dataset(x, y, 5, 3).shifts
    assert reference.tolist() == partition.fa_shifts(5, 3).tolist()
    assert partition.assign("hash", x, y, 5, 3, seed=cfg.derive_seed(0)).shifts.tolist() == reference.tolist()
    assert partition.assign("hash", x, y, 5, 3, seed=cfg.derive_seed(1)).shifts.tolist() != reference.tolist()


# ----------------------------------------------------------------------------- plans


def test_aggregation_plan_rows_plots_and_the_keys_its_steps_read(default_config):
    plan = aggregation.Plan(default_config)
    assert len(plan.rows("dpa")) == 4 * 2 and len(plan.rows("fa")) == 2 * 2
    assert "<results>/tables/rows/digits/seed_0/backdoor_few/fa/fa_roe.tsv" in plan.rows("fa")
    assert plan.plots() == ["<results>/plots/digits/poison_budget.png", "<results>/plots/digits/poison_budget.pdf"]
    layout = aggregation.layout(default_config["defenses"]["fa"])
    assert (layout.assignment, layout.k, layout.d, layout.num_models) == ("hash", 20, 4, 80)
    params = plan.row_params(wildcards(dataset="digits", attack="none", defense="fa", certificate="fa"))
    assert params == {"source": "digits", "seed": 0, "arch": "small_cnn", "k": 20, "d": 4, "epochs": 30}


def test_ensemble_plan_reads_only_the_layout_and_the_recipe(default_config):
    plan = ensemble.Plan(default_config)
    plan.register("dpa", aggregation.layout)
    wc = wildcards(dataset="digits", attack="none", defense="dpa", shard="0")
    assert plan.partition_params(wc) == {"assignment": "hash", "k": 20, "d": 1}
    assert plan.shard_subsets(wc) == list(range(20))  # one job trains the 20 small CNNs
    assert plan.shard_checkpoints(wc) == ["<results>/models/digits/seed_0/none/dpa/shard_0.pt"]
    assert set(plan.recipe(wc)) == {"method", "arch", "train"} and "certificates" not in repr(plan.recipe(wc))
    assert plan.purpose(wc) == {"method": "dpa", "arch": "small_cnn"}
    assert plan.test_noise(wc) == {}
    with pytest.raises(ValueError, match="trains no ensemble"):
        plan.layout(wildcards(dataset="digits", attack="none", defense="smoothing"))


def test_smoothing_plan_separates_training_from_monte_carlo(default_config):
    plan = smoothing.Plan(default_config)
    wc = wildcards(dataset="digits", attack="none", defense="smoothing", sigma="0.25", algorithm="certify")
    assert plan.recipe(wc)["sigma"] == 0.25 and "n" not in plan.recipe(wc)
    assert plan.monte_carlo(wc)["n"] == 5_000 and "n0" not in plan.predict_settings(wc)
    assert len(plan.shards(wc)) == 1  # 40 points of 360 at skip 9, 40 per job
    assert len(plan.rows()) == 2 * 2 and len(plan.plots()) == 2 * 2  # σ (rows), png and pdf × {none, bilevel}
    params = plan.row_params(wc)
    assert params["skip"] == 9 and "max" not in params and "test_points" not in params  # counts, no range(...)


def test_bilevel_plan_keeps_its_evaluation_out_of_the_attack(default_config):
    plan = bilevel.Plan(default_config)
    wc = wildcards(dataset="digits", attack="bilevel", defense="smoothing", sigma="0.5")
    assert "evaluation" not in plan.attack_params(wc) and plan.attack_params(wc)["epsilon"] == 0.1
    assert plan.evaluation_params(wc)["n_points"] == 40
    assert plan.clean_victim(wc) == "<results>/smoothing/digits/seed_0/none/smoothing/sigma_0.5/model.pt"
    assert plan.attack_constraint() == "bilevel" and len(plan.rows()) == 2
    no_clean = copy.deepcopy(default_config)
    del no_clean["attacks"]["none"]
    for grid in no_clean["experiments"]:
        grid["attacks"] = [a for a in grid["attacks"] if a != "none"]
    with pytest.raises(ValueError, match="define an attack of type none"):
        bilevel.Plan(no_clean)


def test_poison_stage_takes_exactly_the_attacks_a_generator_makes(default_config):
    assert poison_stage.attack_constraint(default_config) == (
        "backdoor|backdoor_2x2|backdoor_distributed|backdoor_few|four_pixel|four_pixel_strong|label_flip|none")
    assert set(poison.GENERATORS) == {"none", "backdoor", "label_flip", "l2_backdoor"}


def test_stage_modules_load_neither_torch_nor_matplotlib():
    assert len(WORKFLOW_MODULES) >= 9 and "robustcert.workflow.table" in WORKFLOW_MODULES
    code = "import sys\n" + "".join(f"import {m}\n" for m in WORKFLOW_MODULES) + (
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_parsing_the_snakefile_imports_no_heavy_module(workflow_copy):
    code = ("import sys\nfrom snakemake.cli import main\n"
            "try:\n    main(['--list-rules'])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "heavy = sorted(m for m in ('torch', 'matplotlib', 'sklearn') if m in sys.modules)\n"
            "assert not heavy, heavy\nprint('parsed')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=workflow_copy, capture_output=True, text=True)
    assert result.returncode == 0 and "parsed" in result.stdout, result.stdout + result.stderr
    assert "tabulate_results" in result.stdout


# ----------------------------------------------------------------------------- the results table


KEYS = {"dataset": "digits", "attack": "none", "attack_type": "none", "defense": "dpa", "method": "dpa",
        "certificate": "dpa"}


def test_tidy_rows_have_the_fixed_header_no_empty_cell_and_pivot_back(tmp_path):
    metrics = [results.Metric("accuracy", 0.5), results.Metric("asr", float("nan")),
               *results.on_axis("cert_acc", "poison_samples", [0, 2], [0.5, 0.25])]
    rows = results.tidy_rows(KEYS, {"k": 4, "arch": "small_cnn"}, metrics)
    results.write_rows(tmp_path / "rows.tsv", rows)
    back = results.read_rows(tmp_path / "rows.tsv")
    assert tuple(back.columns) == results.COLUMNS and len(back) == 3  # the undefined ASR has no row
    assert back.loc[2, ["axis", "at", "value"]].tolist() == ["poison_samples", "2", 0.25]
    wide = results.wide(back)
    assert wide.loc[0, "k"] == 4 and wide.loc[0, "arch"] == "small_cnn"
    assert wide.loc[0, "accuracy"] == 0.5 and wide.loc[0, "cert_acc@poison_samples=2"] == 0.25


def test_reading_rows_refuses_a_foreign_header_and_empty_cells(tmp_path):
    (tmp_path / "foreign.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ArtifactError, match="foreign.tsv: not a results rows TSV: columns"):
        results.read_rows(tmp_path / "foreign.tsv")
    rows = results.tidy_rows(KEYS, {"k": 4}, [results.Metric("accuracy", 0.5)])
    rows.loc[0, "defense"] = ""
    rows.to_csv(tmp_path / "empty.tsv", sep="\t", index=False)
    with pytest.raises(ArtifactError, match=r"column 'defense' is empty or NaN on lines \[2\]"):
        results.read_rows(tmp_path / "empty.tsv")


def test_params_text_round_trips():
    params = {"source": "digits", "sigma": 0.25, "test_points": "range(0, 360, 9)[:40]"}
    assert results.parse_params(results.format_params(params)) == {k: str(v) for k, v in params.items()}


# ----------------------------------------------------------------------------- extension points


def test_objectives_by_name():
    assert set(train.OBJECTIVES) == {"cross_entropy", "gaussian_augmentation", "adversarial", "macer", "smoothadv",
                                     "ablation", "fixed_noise", "masking"}
    x = torch.zeros(4, 1, 3, 3)
    noisy = train.objective_of(train.TrainConfig(objective="gaussian_augmentation", noise_sigma=0.5))
    drawn = noisy.perturb(x, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(train.objective_of(train.TrainConfig()).perturb(x, torch.Generator()), x)
    with pytest.raises(ValueError, match="unknown training objective 'trades'"):
        train.TrainConfig(objective="trades")


def test_whole_set_assignment_gives_every_model_every_sample():
    x = np.random.default_rng(1).integers(0, 256, (30, 1, 4, 4), dtype=np.uint8)
    y = np.arange(30) % 3
    whole = partition.assign("whole", x, y, 3)
    assert whole.num_subsets == 3 and all(sorted(whole.subset(j)) == list(range(30)) for j in range(3))
    assert np.array_equal(whole.subset(0), partition.partition_dataset(x, y, 1).subset(0))
    with pytest.raises(ValueError, match="unknown partition assignment"):
        partition.assign("random", x, y, 3)


def test_certificates_by_name_take_shifts_only_when_they_need_them():
    logits = np.random.default_rng(2).normal(size=(5, 6, 3))
    assert set(certify.CERTIFICATES) == {"dpa", "dpa_roe", "fa", "fa_roe"}
    for name, shifts in (("dpa", None), ("fa", np.array([0, 3]))):
        prediction, radius = certify.CERTIFICATES[name](logits, shifts)
        assert prediction.shape == radius.shape == (5,)
    assert np.array_equal(certify.CERTIFICATES["dpa"](logits, None)[1], certify.dpa(logits)[1])


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_penultimate_features_of_every_architecture(arch):
    size = 28 if arch in ("lenet", "nin") else 32 if "resnet" in arch else 8
    channels = 3 if "resnet" in arch else 1
    model = build_model(arch, channels, 10, size, [0.5] * channels, [0.25] * channels).eval()
    x = torch.rand(2, channels, size, size)
    features = penultimate_features(model, x)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert features.shape == (2, last.in_features)
    assert torch.allclose(last(features), model(x), atol=1e-5)


def test_restrict_classes_relabels_in_the_given_order():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (60, 1, 4, 4), dtype=np.uint8)
    labels = np.arange(60) % 10
    split = data.Split(images[:40], labels[:40], images[40:50], labels[40:50], images[50:], labels[50:],
                       np.arange(40), np.arange(40, 50))
    binary = data.restrict_classes(split, [7, 3])
    assert binary.num_classes == 2 and set(binary.y_train) == {0, 1}
    assert np.array_equal(binary.x_train[binary.y_train == 0], images[:40][labels[:40] == 7])
    assert len(binary.train_index) == len(binary.y_train)
    with pytest.raises(ValueError, match="not labels of this split"):
        data.restrict_classes(split, [3, 12])


def test_wide_table_of_an_empty_method_is_empty():
    assert results.wide(results.concatenate([])).empty
    assert isinstance(results.concatenate([]), pd.DataFrame)
