"""The intermediate files of patch smoothing, RAB and detection are read through their declared formats
and checked against the config and against what they derive from; a checkpoint is refused for a purpose
it was not trained for (issue #27, items 1 and 2). Each probe damages a file as a careless or hostile
user would and expects one error naming the file, with nothing written in its stead."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustcert import data, evaluate, patch, poison, train
from robustcert.artifacts import ArtifactError, save_checkpoint
from robustcert.workflow import detection, patch as patch_stage, rab as rab_stage
from robustcert.workflow.smoothing import certified_points, point_shards

# band of 2 columns on 8×8 images: 8 positions, Δ(m) = m + 1; 30 test points, every 3rd certified
# (10 points), 4 per shard (3 shards); the attack on the first 3 of them
CHECKS = {"ablation": {"kind": "band", "size": 2, "count": 1, "height": 8, "width": 8},
          "rules": ["theta_0.2", "top_one", "randomized"], "randomized": {"n": 40, "alpha": 0.05},
          "test_size": 30, "skip": 3, "max": None, "test_indices": None, "points_per_job": 4,
          "attack": {"n_points": 3, "patch_sizes": [2], "undefended": True}}
CLASSES = 4
ABLATION = patch.Ablation("band", 2, 8, 8)
SIZES = range(1, 9)


def _votes(rng: np.random.Generator, rule: str, label: int) -> np.ndarray:
    """Votes of one point under one rule: mostly for its label, as a trained model's."""
    if rule == "randomized":
        return rng.multinomial(CHECKS["randomized"]["n"], np.eye(CLASSES)[label] * 0.7 + 0.075)
    if rule == "top_one":
        return rng.multinomial(ABLATION.num_positions, np.eye(CLASSES)[label] * 0.6 + 0.1)
    return rng.integers(0, ABLATION.num_positions + 1, CLASSES)


def _certify_rows(points: np.ndarray, copies: int, seed: int) -> pd.DataFrame:
    """A certify TSV's rows as certify_patch writes them: votes, and what follows from them."""
    rng = np.random.default_rng(seed)
    labels = points % CLASSES
    frames = []
    for triggered in range(copies):
        results = {}
        for rule in CHECKS["rules"]:
            counts = np.stack([_votes(rng, rule, label) for label in labels])
            if rule == "randomized":
                results[rule] = {"counts": counts, **patch.randomized_certificate(
                    counts, counts.argmax(axis=1), CHECKS["randomized"]["n"], CHECKS["randomized"]["alpha"],
                    ABLATION, SIZES)}
            else:
                results[rule] = {"counts": counts, "predict": patch.certify_votes(counts, 0)[0],
                                 "certified_patch": patch.largest_certified(counts, ABLATION, SIZES)}
        base = results["top_one"]["counts"][np.arange(len(points)), labels] / ABLATION.num_positions
        frames += [patch_stage._frame(points, labels, triggered, rule, result, base) for rule, result in results.items()]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    """The certify shards of a backdoor attack (clean and triggered copies), as certify_patch writes them."""
    paths = []
    for i, points in enumerate(point_shards(CHECKS["test_size"], CHECKS)):
        paths.append(tmp_path / f"shard_{i}.tsv")
        patch_stage.CERTIFY_TSV.write(_certify_rows(points, 2, seed=i), paths[-1])
    return paths


def write_backdoor(path: Path) -> Path:
    """A poison with a 3×3 trigger of target 3 (what summarize_patch reads of it)."""
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 5:8, 5:8] = True
    trigger = poison.Trigger(mask, np.full((1, 8, 8), 250, np.uint8), "set")
    poison.save_poison(path, poison.Poison(np.zeros(0, np.int64), np.zeros((0, 1, 8, 8), np.uint8),
                                           np.zeros(0, np.int64), trigger, 3))
    return path


@pytest.fixture
def backdoor(tmp_path: Path) -> Path:
    return write_backdoor(tmp_path / "poison.npz")


def _attack_rows(certify: pd.DataFrame) -> pd.DataFrame:
    points = certified_points(30, 3, None)[:3]
    labels = certify.set_index("idx")["label"].groupby(level=0).first()[points].to_numpy()
    return pd.concat([pd.DataFrame({"idx": points, "label": labels, "patch_size": size, "model": model,
                                    "correct": [1, 0, 1]})
                      for model in ("theta_0.2", "top_one", "undefended") for size in (0, 2)], ignore_index=True)


def _summarize(tmp_path: Path, certify: Path, poison_path: Path, attacks: list[Path]) -> pd.DataFrame:
    output = tmp_path / "rows.tsv"
    keys = {"dataset": "digits", "attack": "backdoor", "attack_type": "backdoor", "defense": "patch",
            "method": "patch", "certificate": "-"}
    rules = {"theta_0.2": {"theta": 0.2}, "top_one": {}, "randomized": {"n": 40}}
    patch_stage.summarize_patch(str(certify), str(poison_path), [str(a) for a in attacks], str(output), keys,
                                {"ablation": "band_s2"}, rules, [1, 2, 3], CHECKS)
    from robustcert import results

    return results.wide(results.read_rows(output))


def test_valid_patch_files_gather_and_summarize(tmp_path, shards, backdoor):
    gathered = tmp_path / "certify.tsv"
    patch_stage.gather_patch([str(p) for p in shards], str(gathered), CHECKS)
    attack = tmp_path / "attack.tsv"
    patch_stage.ATTACK_TSV.write(_attack_rows(pd.read_csv(gathered, sep="\t")), attack)
    table = _summarize(tmp_path, gathered, backdoor, [attack])
    assert list(table["n_test"]) == [10, 10, 10] and (table["attack_points"].dropna() == 3).all()


def _delete_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[:3] + lines[4:])


def _repeat_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[:3] + [lines[2]] + lines[3:])


def _swap_row(text: str) -> str:
    """A row replaced by a copy of the one before: the count is right, the ids are not."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[:3] + [lines[2]] + lines[4:])


def _cut(text: str) -> str:
    return text[:-3]


def _header_only(text: str) -> str:
    return text.splitlines(keepends=True)[0]


def _cells(column: str, change: Callable[[pd.Series], pd.Series]) -> Callable[[str], str]:
    """A corruption that rewrites one column of the TSV text."""
    def corrupt(text: str) -> str:
        from io import StringIO

        frame = pd.read_csv(StringIO(text), sep="\t", dtype=str, keep_default_na=False)
        frame[column] = change(frame[column])
        return frame.to_csv(sep="\t", index=False)

    return corrupt


def _nan_first(column: str) -> Callable[[str], str]:
    return _cells(column, lambda cells: cells.where(cells.index != 0, "nan"))


def _more_votes(text: str) -> str:
    """One top-one point's votes moved from its prediction to the runner-up (the certificate kept)."""
    from io import StringIO

    frame = pd.read_csv(StringIO(text), sep="\t")
    row = frame.index[(frame["rule"] == "top_one") & (frame["certified_patch"] > 0)][0]
    counts = [f"count_{c}" for c in range(CLASSES)]
    votes = frame.loc[row, counts].to_numpy()
    top, other = votes.argmax(), (votes.argmax() + 1) % CLASSES
    frame.loc[row, [counts[top], counts[other]]] = [votes[top] - 2, votes[other] + 2]
    return frame.to_csv(sep="\t", index=False)


def _drop_triggered(text: str) -> str:
    from io import StringIO

    frame = pd.read_csv(StringIO(text), sep="\t")
    return frame[frame["triggered"] == 0].to_csv(sep="\t", index=False)


SHARD_PROBES = {
    "a row deleted": (_delete_row, "rows, the config implies 24"),
    "a row repeated": (_repeat_row, "rows, the config implies 24"),
    "a row replaced by a repeat of another": (_swap_row, "rows repeated on lines"),
    "cut mid-line": (_cut, "the last line is cut"),
    "header only": (_header_only, "0 rows, the config implies"),
    "a NaN vote": (_nan_first("count_1"), "column 'count_1' is empty or NaN on lines [2]"),
    "a NaN prediction": (_nan_first("predict"), "column 'predict' is empty or NaN on lines [2]"),
    "another test point": (_cells("idx", lambda c: c.where(c.index != 0, "13")), "rows the config does not ask for"),
}
GATHERED_PROBES = {
    "a row deleted": (_delete_row, "59 rows, the config implies 60"),
    "a row repeated": (_repeat_row, "61 rows, the config implies 60"),
    "header only": (_header_only, "0 rows, the config implies 60"),
    "certified_patch 8 on every row": (_cells("certified_patch", lambda c: c.map(lambda _: "8")),
                                       "certified_patch that does not follow from the votes"),
    "votes changed, certificate kept": (_more_votes, "does not follow from the votes"),
    "base accuracy changed": (_cells("base_correct", lambda c: c.map(lambda _: "1.0")),
                              "base_correct that does not follow from the top-one votes"),
    "triggered copies removed": (_drop_triggered, "30 rows, the config implies 60"),
    "a label changed": (_cells("label", lambda c: c.where(c.index != 1, "3")),
                        "label that does not follow from the label of the point's other rows"),
    "a NaN base accuracy": (_nan_first("base_correct"), "column 'base_correct' is empty or NaN"),
}


@pytest.mark.parametrize("probe", SHARD_PROBES)
def test_a_damaged_certify_shard_is_refused_by_the_gather_naming_it(tmp_path, shards, probe):
    corrupt, said = SHARD_PROBES[probe]
    shards[1].write_text(corrupt(shards[1].read_text()))
    gathered = tmp_path / "certify.tsv"
    with pytest.raises(ArtifactError) as error:
        patch_stage.gather_patch([str(p) for p in shards], str(gathered), CHECKS)
    assert str(error.value).startswith(f"{shards[1]}: ") and said in str(error.value)
    assert not gathered.exists()


@pytest.mark.parametrize("probe", GATHERED_PROBES)
def test_a_damaged_gathered_certify_tsv_is_refused_by_the_summary_naming_it(tmp_path, shards, backdoor, probe):
    corrupt, said = GATHERED_PROBES[probe]
    gathered = tmp_path / "certify.tsv"
    patch_stage.gather_patch([str(p) for p in shards], str(gathered), CHECKS)
    gathered.write_text(corrupt(gathered.read_text()))
    with pytest.raises(ArtifactError) as error:
        _summarize(tmp_path, gathered, backdoor, [])
    assert str(error.value).startswith(f"{gathered}: ") and said in str(error.value)
    assert not (tmp_path / "rows.tsv").exists()


def test_a_randomized_certificate_that_its_draws_do_not_give_is_refused(tmp_path, shards):
    frame = pd.read_csv(shards[0], sep="\t")
    certified = frame.index[(frame["rule"] == "randomized") & (frame["certified_class"] >= 0)]
    assert len(certified)
    frame.loc[certified, "certified_patch"] = 8
    frame.to_csv(shards[0], sep="\t", index=False)
    with pytest.raises(ArtifactError, match=r"shard_0.tsv: certified_patch that does not follow from the draws"):
        patch_stage.gather_patch([str(p) for p in shards], str(tmp_path / "certify.tsv"), CHECKS)


ATTACK_PROBES = {
    "a row deleted": (_delete_row, "17 rows, the config implies 18"),
    "cut mid-line": (_cut, "the last line is cut"),
    "a NaN outcome": (_nan_first("correct"), "column 'correct' is empty or NaN"),
    "a model renamed": (_cells("model", lambda c: c.replace("undefended", "theta_0.5")),
                        "rows the config does not ask for"),
    "a label changed": (_cells("label", lambda c: c.where(c.index != 0, "3")),
                        "label that does not follow from the certify TSV's label"),
}


@pytest.mark.parametrize("probe", ATTACK_PROBES)
def test_a_damaged_attack_tsv_is_refused_naming_it(tmp_path, shards, backdoor, probe):
    corrupt, said = ATTACK_PROBES[probe]
    gathered, attack = tmp_path / "certify.tsv", tmp_path / "attack.tsv"
    patch_stage.gather_patch([str(p) for p in shards], str(gathered), CHECKS)
    patch_stage.ATTACK_TSV.write(_attack_rows(pd.read_csv(gathered, sep="\t")), attack)
    attack.write_text(corrupt(attack.read_text()))
    with pytest.raises(ArtifactError) as error:
        _summarize(tmp_path, gathered, backdoor, [attack])
    assert str(error.value).startswith(f"{attack}: ") and said in str(error.value)


# RAB: 50 models of a σ = 0.5 defense on 60 digits test points (no attack)

@pytest.fixture
def rab_files(tmp_path: Path) -> dict[str, Path]:
    return write_rab_files(tmp_path)


def write_rab_files(tmp_path: Path) -> dict[str, Path]:
    """A digits split, no attack, and the score matrix of 50 models that are right 80% of the time."""
    split = data.split_source(data.load_source("digits", "unused"), 100, 60, 0)
    data.save_split(tmp_path / "split.npz", split)
    poison.save_poison(tmp_path / "poison.npz", poison.generate_poison({"type": "none"}, split.x_train, split.y_train, 0))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 50, 10)) + 8 * np.eye(10)[split.y_test][:, None, :] * (rng.random((60, 1, 1)) < 0.8)
    evaluate.save_scores(tmp_path / "scores.npz", {
        "logits": logits.astype(np.float32), "labels": split.y_test, "base_accuracy": np.full(50, 0.8),
        "triggered_logits": np.zeros((0, 50, 10), np.float32), "triggered_index": np.zeros(0, np.int64),
        "target": np.int64(-1)})
    return {name: tmp_path / f"{name}.{ext}" for name, ext in
            (("split", "npz"), ("poison", "npz"), ("scores", "npz"), ("clean", "tsv"), ("triggered", "tsv"),
             ("rows", "tsv"))}


RAB = {"sigma": 0.5, "alpha": 0.001, "n_models": 50}


def _certify_rab(files: dict[str, Path], **change) -> None:
    rab_stage.certify_rab(str(files["scores"]), "rab", **{**RAB, **change}, clean_output=str(files["clean"]),
                          triggered_output=str(files["triggered"]))


def _summarize_rab(files: dict[str, Path]) -> pd.DataFrame:
    keys = {"dataset": "digits", "attack": "none", "attack_type": "none", "defense": "rab", "method": "rab",
            "certificate": "rab"}
    rab_stage.summarize_rab(str(files["split"]), str(files["poison"]), str(files["scores"]), str(files["clean"]),
                            str(files["triggered"]), str(files["rows"]), keys, {"n_models": 50}, [0.0, 0.2],
                            "rab", RAB)
    from robustcert import results

    return results.wide(results.read_rows(files["rows"]))


def _keep_models(path: Path, models: int) -> None:
    scores = evaluate.load_scores(path)
    evaluate.save_scores(path, {**scores, "logits": scores["logits"][:, :models],
                                "base_accuracy": scores["base_accuracy"][:models],
                                "triggered_logits": scores["triggered_logits"][:, :models]})


def test_rab_certifies_and_summarizes_the_scores_of_its_models(rab_files):
    _certify_rab(rab_files)
    row = _summarize_rab(rab_files).iloc[0]
    assert row["n_test"] == 60 and 0 < row["cert_acc@l2_train=0.2"] <= row["accuracy"]


def test_a_rab_score_matrix_of_fewer_models_than_the_defense_is_refused(rab_files):
    _keep_models(rab_files["scores"], 25)
    with pytest.raises(ArtifactError, match=r"scores.npz: logits of 25 models, the defense has 50"):
        _certify_rab(rab_files)
    assert not rab_files["clean"].exists()


def test_rab_certificates_of_scores_cut_after_certification_are_refused_by_the_summary(rab_files):
    _certify_rab(rab_files)
    _keep_models(rab_files["scores"], 25)
    with pytest.raises(ArtifactError, match=r"scores.npz: logits of 25 models, the defense has 50"):
        _summarize_rab(rab_files)
    assert not rab_files["rows"].exists()


@pytest.mark.parametrize("column,change,said", [
    ("radius", lambda c: c * 10, "radius that does not follow from the score matrix"),
    ("predict", lambda c: (c + 1) % 10, "predict that does not follow from the score matrix"),
    ("correct", lambda c: 1 - c, "correct that does not follow from the score matrix"),
])
def test_rab_certificates_that_do_not_follow_from_the_scores_are_refused(rab_files, column, change, said):
    _certify_rab(rab_files)
    frame = pd.read_csv(rab_files["clean"], sep="\t")
    frame[column] = change(frame[column])
    frame.to_csv(rab_files["clean"], sep="\t", index=False)
    with pytest.raises(ArtifactError, match=f"clean.tsv: {said}"):
        _summarize_rab(rab_files)
    assert not rab_files["rows"].exists()


# detection: clusters.tsv of 10 labels, threshold 2

def write_clusters(tmp_path: Path) -> Path:
    """A clusters TSV as detect_backdoor writes it."""
    counts = [1, 2, 3, 1, 4, 1, 1, 2, 1, 1]
    sizes = [",".join(["5"] * n) for n in counts]
    frame = pd.DataFrame({"label": range(10), "clusters": counts, "flagged": [int(n > 2) for n in counts],
                          "sizes": sizes, "n_translated": [3 * n for n in counts], "n_clean": [2 * n for n in counts]})
    path = tmp_path / "clusters.tsv"
    detection.CLUSTERS_TSV.write(frame, path)
    return path


@pytest.mark.parametrize("column,row,value,said", [
    ("flagged", 1, 1, "flagged that does not follow from its clusters against the threshold 2"),
    ("flagged", 2, 0, "flagged that does not follow from its clusters against the threshold 2"),
    ("clusters", 0, 5, "clusters that does not follow from its sizes"),
    ("sizes", 3, "5,x", "sizes that are not positive whole numbers"),
    ("n_clean", 3, 9, "sizes that do not add up to n_translated + n_clean"),
    ("label", 4, 3, "rows repeated"),
])
def test_a_clusters_tsv_inconsistent_with_itself_or_its_threshold_is_refused(tmp_path, column, row, value, said):
    path = write_clusters(tmp_path)
    assert detection.read_clusters(str(path), 10, 2)["flagged"].sum() == 2
    frame = pd.read_csv(path, sep="\t", dtype=str)
    frame.loc[row, column] = str(value)
    frame.to_csv(path, sep="\t", index=False)
    with pytest.raises(ArtifactError, match=re.escape(f"clusters.tsv: {said}")):
        detection.read_clusters(str(path), 10, 2)


# checkpoints: what each was trained for

SPEC = train.ModelSpec("small_cnn", 2, 10, 8)


def _checkpoint(path: Path, trained_for: dict, spec: train.ModelSpec = SPEC) -> Path:
    torch.manual_seed(0)
    model = spec.build([0.0] * spec.in_channels, [1.0] * spec.in_channels)
    train.save_shard(str(path), spec, [0], [model.state_dict()], trained_for=trained_for)
    return path


BAND = {"kind": "band", "size": 2, "count": 1}
PATCH_PURPOSE = {"method": "patch", "ablation": BAND, "arch": "small_cnn", "in_channels": 2}


def test_a_checkpoint_loads_for_what_it_was_trained_for(tmp_path):
    path = _checkpoint(tmp_path / "model.pt", {"method": "patch", "ablation": BAND})
    spec, subsets, models = train.load_shard(str(path), PATCH_PURPOSE)
    assert spec == SPEC and subsets == [0] and len(models) == 1


@pytest.mark.parametrize("trained_for,spec,differs", [
    ({"method": "patch", "ablation": {"kind": "block", "size": 4, "count": 1}}, SPEC, "'ablation'"),
    ({"method": "patch", "ablation": {"kind": "band", "size": 4, "count": 1}}, SPEC, "'size': 4"),
    ({"method": "dpa"}, SPEC, "'method': 'dpa'"),
    ({"method": "patch", "ablation": BAND}, train.ModelSpec("small_cnn", 1, 10, 8), "'in_channels': 1"),
    ({"method": "patch", "ablation": BAND}, train.ModelSpec("lenet", 2, 10, 8), "'arch': 'lenet'"),
])
def test_a_checkpoint_swapped_for_another_purpose_is_refused_naming_it(tmp_path, trained_for, spec, differs):
    path = _checkpoint(tmp_path / "model.pt", trained_for, spec)
    with pytest.raises(ArtifactError, match=f"model.pt: a checkpoint trained for .*{differs}"):
        train.load_shard(str(path), PATCH_PURPOSE)


def test_a_checkpoint_that_records_no_purpose_is_refused_where_one_is_asked(tmp_path):
    path = tmp_path / "old.pt"
    torch.manual_seed(0)
    model = SPEC.build([0.0] * 2, [1.0] * 2)
    save_checkpoint(path, {"format": train.CHECKPOINT_FORMAT, "spec": {**SPEC.__dict__}, "subsets": [0],
                           "states": [model.state_dict()]})
    with pytest.raises(ArtifactError, match=r"old.pt: a checkpoint trained for \{'method': None"):
        train.load_shard(str(path), PATCH_PURPOSE)
    assert len(train.load_shard(str(path))[2]) == 1  # a load that asks nothing (a released model's import)


# the same probes through a real Snakemake run: patch smoothing (two shards, the attack beside the
# undefended model), RAB (4 models) and detection (10 images translated in 2 steps) on digits, one
# epoch each

TINY = {
    "device": "cpu", "threads": 1, "seed": 0, "report": {"budgets": [0, 1], "radii": [0.0, 0.25]},
    "datasets": {"digits": {"source": "digits", "n_val": 180, "n_test": 360}},
    "attacks": {"backdoor": {"type": "backdoor", "preset": "localised", "value": 0.98, "target": 7,
                             "fraction": 0.02}},
    "defenses": {
        "undefended": {"method": "undefended", "arch": "small_cnn",
                       "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1]}},
        "patch": {"method": "patch", "arch": "small_cnn", "ablations": [{"kind": "band", "size": 2}],
                  "patch_sizes": [1, 2], "skip": 30, "points_per_job": 6,
                  "attack": {"enabled": True, "undefended": "undefended", "n_points": 2, "patch_sizes": [2],
                             "steps": 1, "step_size": 0.1, "restarts": 1, "stride": 6},
                  "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1]}},
        "rab": {"method": "rab", "arch": "small_cnn", "sigma": 0.5, "n_models": 4, "models_per_job": 4,
                "certificates": ["rab_expected"], "radii": [0.0, 0.1], "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1]}},
        "robust": {"method": "detection", "arch": "small_cnn",
                   "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1]},
                   "adversary": {"epsilon": 0.5, "steps": 1, "step_size": 0.5},
                   "translation": {"n": 10, "epsilon": 100.0, "step_size": 0.1, "steps": 2, "gallery": 2}}},
    "experiments": [{"datasets": ["digits"], "attacks": ["backdoor"],
                     "defenses": ["patch", "rab", "undefended", "robust"]}],
}
PATCH_DIR = "results/patch/digits/seed_0/backdoor/patch/band_s2"
PATCH_ROW = "results/tables/rows/digits/seed_0/backdoor/patch/patch_band_s2.tsv"
RAB_ROW = "results/tables/rows/digits/seed_0/backdoor/rab/rab_expected.tsv"  # radii > 0 even from 4 models
DETECTION_ROW = "results/tables/rows/digits/seed_0/backdoor/robust/detection.tsv"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One real run of the tiny config up to the patch and RAB rows; each probe below works on a copy."""
    import yaml
    from conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("checked") / "wf")
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(workdir, "-c2", PATCH_ROW, RAB_ROW, DETECTION_ROW)
    return workdir


def _probe_copy(tiny_run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "wf", symlinks=True))


def _rerun_refused(workdir: Path, target: str, rule: str, said: str, kept: list[str]) -> None:
    """Re-running ``rule`` for ``target`` fails with ``said`` in a job's log; the ``kept`` files (the damaged
    one, what it came from) are left as they were, and ``target`` is never rewritten from the damaged
    file (Snakemake removes the old one only when the job that would replace it starts)."""
    from conftest import snakemake

    before = {name: (workdir / name).read_bytes() for name in [*kept, target]}
    result = snakemake(workdir, "-c1", target, "--forcerun", rule, check=False)
    logs = "".join(p.read_text() for p in (workdir / "results" / "logs").rglob("*.log"))
    assert result.returncode != 0 and said in logs, result.stderr[-3000:]
    assert all((workdir / name).read_bytes() == before[name] for name in kept)
    assert not (workdir / target).exists() or (workdir / target).read_bytes() == before[target]


@pytest.mark.workflow
def test_a_row_deleted_from_a_real_patch_shard_is_refused_by_the_gather(tiny_run, tmp_path):
    workdir = _probe_copy(tiny_run, tmp_path)
    shard = workdir / PATCH_DIR / "certify" / "shard_1.tsv"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:2] + lines[3:]))
    _rerun_refused(workdir, PATCH_ROW, "gather_patch", "shard_1.tsv: 23 rows, the config implies 24",
                   kept=[PATCH_ROW, f"{PATCH_DIR}/certify/shard_1.tsv", f"{PATCH_DIR}/model.pt"])


@pytest.mark.workflow
def test_a_real_certify_tsv_with_every_certificate_set_to_8_is_refused_by_the_summary(tiny_run, tmp_path):
    workdir = _probe_copy(tiny_run, tmp_path)
    path = workdir / PATCH_DIR / "certify.tsv"
    frame = pd.read_csv(path, sep="\t")
    path.write_text(frame.assign(certified_patch=8).to_csv(sep="\t", index=False))
    _rerun_refused(workdir, PATCH_ROW, "summarize_patch", "certified_patch that does not follow from the votes",
                   kept=[f"{PATCH_DIR}/certify.tsv", f"{PATCH_DIR}/certify/shard_0.tsv", f"{PATCH_DIR}/model.pt"])


@pytest.mark.workflow
def test_a_patch_checkpoint_of_another_ablation_is_refused_by_certification(tiny_run, tmp_path):
    workdir = _probe_copy(tiny_run, tmp_path)
    model = workdir / PATCH_DIR / "model.pt"
    payload = torch.load(model, weights_only=True)
    save_checkpoint(model, {**payload, "trained_for": {"method": "patch", "ablation": {"kind": "block", "size": 4,
                                                                                       "count": 1}}})
    _rerun_refused(workdir, PATCH_ROW, "certify_patch", "model.pt: a checkpoint trained for",
                   kept=[f"{PATCH_DIR}/model.pt"])


@pytest.mark.workflow
def test_real_rab_radii_multiplied_by_10_are_refused_by_the_summary(tiny_run, tmp_path):
    workdir = _probe_copy(tiny_run, tmp_path)
    path = workdir / "results/certify/digits/seed_0/backdoor/rab/rab_expected.tsv"
    frame = pd.read_csv(path, sep="\t")
    assert (frame["radius"] > 0).any()
    path.write_text(frame.assign(radius=frame["radius"] * 10).to_csv(sep="\t", index=False))
    _rerun_refused(workdir, RAB_ROW, "summarize_rab", "radius that does not follow from the score matrix",
                   kept=["results/certify/digits/seed_0/backdoor/rab/rab_expected.tsv",
                         "results/scores/digits/seed_0/backdoor/rab.npz"])


@pytest.mark.workflow
def test_a_real_clusters_tsv_with_a_verdict_its_count_does_not_give_is_refused(tiny_run, tmp_path):
    workdir = _probe_copy(tiny_run, tmp_path)
    path = workdir / "results/detection/digits/seed_0/backdoor/robust/clusters.tsv"
    frame = pd.read_csv(path, sep="\t", dtype=str)
    frame.loc[0, "flagged"] = str(1 - int(frame.loc[0, "flagged"]))
    path.write_text(frame.to_csv(sep="\t", index=False))
    _rerun_refused(workdir, DETECTION_ROW, "summarize_detection", "flagged that does not follow from its clusters",
                   kept=["results/detection/digits/seed_0/backdoor/robust/clusters.tsv",
                         "results/models/digits/seed_0/backdoor/robust/shard_0.pt"])
