"""Meaningless configs are refused before any job, naming the key; YAML files are read strictly."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config
from conftest import REPO, copy_workflow, snakemake

from robustcert.config import check_results_folder, load_yaml_strictly, main, validate_config
from robustcert.workflow import detection, patch, poison, rab, smoothing
from robustcert.workflow.common import sigma_label

SCHEMAS = REPO / "config/schemas"
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _refusal(edit) -> str:
    """The message with which the default config, edited, is refused."""
    config = copy.deepcopy(DEFAULT)
    edit(config)
    with pytest.raises(ValueError) as error:
        validate_config(config, SCHEMAS)
        check_results_folder(config, REPO)
        poison.check_attacks(config)
        for method in (smoothing, patch, rab, detection):  # the plans check their methods' settings
            method.Plan(config)
    return str(error.value)


def _set(path: str, value):
    def edit(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return edit


@pytest.mark.parametrize("edit,named", [
    (_set("defenses.dpa.train.epochs", 0), "epochs"),
    (_set("defenses.dpa.train.milestones", [15, 40]), "defenses.dpa.train.milestones [40]"),
    (_set("defenses.dpa.train.milestones", [15, 15]), "defenses.dpa"),
    (_set("attacks.backdoor.fraction", 0.0001), "attacks.backdoor: fraction 0.0001 selects no sample"),
    (lambda c: c["datasets"].update(digits={"source": "mnist", "n_val": 5000})
     or c["attacks"]["backdoor"].update(fraction=1.0),
     "attacks.backdoor: fraction 1.0 asks for 55000 samples, but at most 53735"),
    (_set("attacks.label_flip.fraction", 0.001), "attacks.label_flip: fraction 0.001 selects no sample"),
    (_set("attacks.backdoor.target", 10), "attacks.backdoor.target is 10, not a class of datasets.digits"),
    (_set("attacks.bilevel.target", 10), "attacks.bilevel.target is 10"),
    (_set("attacks.label_flip.source", 12), "attacks.label_flip.source is 12"),
    (_set("attacks.label_flip.source", 7), "attacks.label_flip: source and target are both 7"),
    (_set("defenses.dpa.k", 5000), "defenses.dpa.k is 5000, more partitions than the 1257 training images"),
    (_set("attacks.backdoor.preset", "four_pixel"), "attacks.backdoor: trigger preset 'four_pixel' does not fit 8×8"),
    (lambda c: c["attacks"]["backdoor"].update(preset=None, position=[6, 6], size=[3, 3]),
     "attacks.backdoor: trigger at [6, 6] of size [3, 3] does not fit 8×8 images of dataset source digits"),
    (_set("attacks.backdoor.preset", None), "attacks.backdoor: a backdoor needs a trigger: set preset, or position and size"),
    (_set("datasets.digits.n_val", 1500), "datasets.digits: n_val + n_test = 1860 leaves no training image of the 1797"),
    (_set("defenses.dpa.certificates", ["dpa", "dpa"]), "defenses.dpa (dpa.schema.yaml)"),
    (_set("defenses.smoothing.sigmas", [0.25, 0.25]), "defenses.smoothing (smoothing.schema.yaml)"),
    (lambda c: c["experiments"][0]["attacks"].append("gone"), "experiments[0].attacks names ['gone']"),
])
def test_meaningless_config_is_refused_naming_the_key(edit, named):
    assert named in _refusal(edit)


@pytest.mark.parametrize("pathvars", [{"results": "../elsewhere"}, {"results": "results-mnist/"},
                                      {"results": "/abs/results"}, {"results": "results", "logs": "logs"}])
def test_a_results_folder_outside_the_workflow_or_another_path_variable_is_refused(pathvars):
    from snakemake.exceptions import WorkflowError

    config = copy.deepcopy(DEFAULT)
    config["pathvars"] = pathvars
    with pytest.raises(WorkflowError, match="pathvars"):
        validate_config(config, SCHEMAS)


# Settings that every schema admits but that make a result meaningless (issue 27): each refused with the
# key and why, the degenerate ones with what they imply.
MEANINGLESS = [
    (_set("defenses.patch.ablations", [{"kind": "band", "size": 8}]),
     "ablation band_s8 keeps the whole image: a 1×1 patch already overlaps Δ = 8 of its 8 positions"),
    (_set("defenses.patch.ablations", [{"kind": "block", "size": 6}]), "ablation block_s6 keeps too much of the image"),
    (_set("defenses.patch.thresholds", [0.2, 1.0]), "defenses.patch.thresholds: θ = 1 votes only for a class whose softmax is exactly 1"),
    (_set("defenses.patch.thresholds", [0.2, 0.2]), "defenses.patch.thresholds [0.2, 0.2] all make the certificate theta_0.2"),
    (_set("defenses.patch.thresholds", [0.3, 0.30000001]), "defenses.patch.thresholds [0.3, 0.30000001] all make the certificate theta_0.3"),
    (_set("defenses.patch.patch_sizes", [1, 2, 2]), "defenses.patch.patch_sizes lists [2] more than once"),
    (_set("defenses.patch.attack.patch_sizes", [2, 2]), "defenses.patch.attack.patch_sizes lists [2] more than once"),
    (_set("defenses.patch.randomized", {"enabled": True, "n": 1}),
     "randomized.n is 1, too few for alpha 0.05 with ablation band_s2: even if every draw votes for the top class the "
     "lower bound is 0.050, not above 1/2 + Δ/P = 0.750 at patch size 1, so no point could ever be certified; n must be at least 11"),
    (_set("defenses.smoothing.n", 1), "defenses.smoothing.n is 1, too few samples for alpha 0.001"),
    (_set("defenses.smoothing.n", 9), "n must be at least 10"),
    (_set("defenses.rab.n_models", 13),
     "defenses.rab.n_models is 13, too few for alpha 0.001: the Hoeffding margin h = √(ln(1/α)/2N) = 0.515 ≥ 1/2 leaves "
     "p̲_A ≤ p̄_B on every point, so the certificate rab would be radius 0 and certified accuracy 0 at every radius"),
    (_set("defenses.robust.clustering", {"threshold": 1}), "defenses.robust.clustering.threshold is 1"),
    (_set("defenses.robust.adversary", {"steps": 0}), "defenses.robust.adversary.steps is 0: the model would not be adversarially trained"),
    (_set("defenses.robust.adversary", {"epsilon": 0}), "defenses.robust.adversary.epsilon is 0"),
    (_set("defenses.smoothing.train.objective", {"name": "smoothadv", "warmup": 31}),
     "defenses.smoothing.train.objective.warmup is 31, longer than the 30 epochs of train.epochs"),
    (_set("defenses.smoothing.train.objective", {"name": "macer", "lambda_schedule": [[10, 8.0], [30, 4.0]]}),
     "defenses.smoothing.train.objective.lambda_schedule [[30, 4.0]] starts at or after epoch 30"),
    (_set("experiments.0.seeds", [3, 2**32 + 3]), "experiments[0].seeds: 4294967299 and 3 (experiments[0]) are equal modulo 2³²"),
    (lambda c: c["experiments"].append({**c["experiments"][0], "seeds": [2**33]}),
     "seeds: 8589934592 and 0 (experiments[0]) are equal modulo 2³²"),
    (_set("attacks.four_pixel.target", 2), "attacks.four_pixel.target is 2, not a class of datasets.digits_binary (0..1: its classes [6, 8] relabelled)"),
    (_set("defenses.robust.features", {"layer": "layer4"}), "defenses.robust.features.layer (small_cnn on datasets.digits): layer 'layer4': no module"),
    *[(_set("pathvars.results", folder), f"pathvars.results is '{folder}', which {how}")
      for folder, how in [(".git", "is the workflow's .git/"), (".snakemake", "is the workflow's .snakemake/"),
                          ("src/robustcert", "lies inside the workflow's src/"), ("src", "is the workflow's src/"),
                          ("config", "is the workflow's config/"), ("scripts", "is the workflow's scripts/"),
                          ("data", "is data_root (data)"), ("data/mine", "lies inside data_root (data)")]],
    (lambda c: c.update(data_root="results/data"), "pathvars.results is 'results', which holds data_root (results/data)"),
    (lambda c: c["datasets"].update({"d" * 240: c["datasets"]["digits"]}), "the name is 240 bytes long; a file name here has at most"),
]


@pytest.mark.parametrize("edit,named", MEANINGLESS)
def test_a_meaningless_setting_is_refused_naming_the_key_and_why(edit, named):
    assert named in _refusal(edit)


def _rab_expected_alone(config):
    config["defenses"]["rab"].update(certificates=["rab_expected"], n_models=1)


@pytest.mark.parametrize("edit", [
    _set("defenses.patch.ablations", [{"kind": "band", "size": 4}]), _set("defenses.patch.thresholds", [0.2, 0.99]),
    _set("defenses.patch.randomized", {"enabled": True, "n": 11}), _set("defenses.smoothing.n", 10),
    _set("defenses.rab.n_models", 14), _rab_expected_alone,
    _set("defenses.robust.clustering", {"threshold": 2}), _set("defenses.robust.clustering", {"threshold": 1, "bandwidth": 10.0}),
    _set("defenses.robust.features", {"layer": "1.3"}),
    _set("experiments.0.seeds", [0, 2**32 - 1]), _set("attacks.four_pixel.target", 1),
    _set("pathvars.results", "results-data")])
def test_settings_next_to_the_refused_ones_pass(edit):
    """The edges: what is refused above is refused for what it is, not for being near it."""
    config = copy.deepcopy(DEFAULT)
    edit(config)
    validate_config(config, SCHEMAS)
    check_results_folder(config, REPO)
    for method in (smoothing, patch, rab, detection):
        method.Plan(config)


@pytest.fixture(scope="module")
def refusing_workflow(tmp_path_factory) -> Path:
    """A copy of the workflow whose dry runs refuse the configs below (it never gets results)."""
    return copy_workflow(tmp_path_factory.mktemp("refusals") / "wf")


@pytest.mark.parametrize("overlay,named", [
    ({"defenses": {"patch": {"ablations": [{"kind": "band", "size": 8}]}}}, "ablation band_s8 keeps the whole image"),
    ({"defenses": {"smoothing": {"n": 1}}}, "defenses.smoothing.n is 1, too few samples for alpha 0.001"),
    ({"defenses": {"rab": {"n_models": 10}}}, "defenses.rab.n_models is 10, too few for alpha 0.001"),
    ({"defenses": {"robust": {"features": {"layer": "layer4"}}}}, "defenses.robust.features.layer (small_cnn on datasets.digits)"),
    ({"defenses": {"robust": {"adversary": {"steps": 0}}}}, "defenses.robust.adversary.steps is 0"),
    ({"experiments": [{"datasets": ["digits"], "attacks": ["none"], "defenses": ["dpa"], "seeds": [0, 2**32]}]},
     "experiments[0].seeds: 4294967296 and 0 (experiments[0]) are equal modulo 2³²"),
    ({"attacks": {"four_pixel": {"target": 3}}}, "attacks.four_pixel.target is 3, not a class of datasets.digits_binary"),
    ({"pathvars": {"results": ".git"}}, "pathvars.results is '.git', which is the workflow's .git/"),
    ({"datasets": {"d" * 240: {"source": "digits", "n_test": 360}}}, "the name is 240 bytes long"),
], ids=["patch-whole-image", "smoothing-n", "rab-models", "detection-layer", "adversary-steps", "seeds-mod-2^32",
        "target-outside-subset", "results-in-git", "long-name"])
def test_snakemake_refuses_a_meaningless_setting_before_any_job(refusing_workflow, overlay, named):
    (refusing_workflow / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    result = snakemake(refusing_workflow, "-n", "--configfile", "overlay.yaml", "--cores", "1", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0 and named in said, said[-3000:]
    assert not (refusing_workflow / "results").exists() and not (refusing_workflow / ".git").exists()


def test_a_bogus_device_override_is_refused_before_any_job(monkeypatch):
    monkeypatch.setenv("ROBUSTCERT_DEVICE", "bogus")
    assert "$ROBUSTCERT_DEVICE is 'bogus'; accepted values: auto, cpu, cuda or cuda:N" in _refusal(lambda c: None)


def test_default_and_shipped_configs_pass_the_checks():
    for path in sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "tests/configs").glob("*.yaml")):
        config = load_yaml_strictly(path)
        full = REPO / "config" / path.name.replace("_small", "")  # a trimmed overlay on its full config
        trimmed = path.parent == REPO / "tests" / "configs" and full.exists()
        if "datasets" not in config or trimmed:  # an overlay, merged as Snakemake merges it
            merged = copy.deepcopy(DEFAULT)
            if trimmed:
                update_config(merged, load_yaml_strictly(full))
            update_config(merged, config)
            config = merged
        validate_config(config, SCHEMAS)
        poison.check_attacks(config)


def test_sigma_paths_encode_the_value_exactly():
    assert [sigma_label(s) for s in (0.25, 1.0, 0.5, 2)] == ["0.25", "1", "0.5", "2"]
    assert sigma_label(0.1234567) != sigma_label(0.1234568)
    assert float(sigma_label(0.1234567)) == 0.1234567


def test_strict_yaml_names_the_file_and_line_of_a_duplicate_key(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text("attacks:\n  none:\n    type: none\n  none:\n    type: label_flip\n")
    with pytest.raises(ValueError, match=r"dup.yaml:4:3: duplicate key 'none' \(first at line 2\)"):
        load_yaml_strictly(path)
    path.write_text("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n")  # merge keys are not duplicates
    assert load_yaml_strictly(path) == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}
    path.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ValueError, match=r"dup.yaml:\d+:\d+: "):
        load_yaml_strictly(path)


def test_the_config_checker_names_the_file_and_line_that_snakemake_does_not(tmp_path: Path, capsys):
    """Snakemake's loader says only "Config file is not valid JSON or YAML"; README points here."""
    path = tmp_path / "broken.yaml"
    path.write_text("attacks: [none,\n  backdoor\ndefenses: {}\n")
    assert main([str(REPO / "config/config.yaml"), str(path)]) == 1
    assert re.fullmatch(rf"invalid config file {re.escape(str(path))}:3:\d+: .*\n", capsys.readouterr().err)
    assert main([str(REPO / "config/config.yaml")]) == 0 and capsys.readouterr().err == ""


def test_duplicate_key_and_label_flip_onto_itself_refused_by_snakemake_before_any_job(workflow_copy):
    text = (REPO / "config/config.yaml").read_text()
    (workflow_copy / "dup.yaml").write_text(text.replace("attacks:\n", "attacks:\n  label_flip:\n    type: none\n", 1))
    result = snakemake(workflow_copy, "-n", "--configfile", "dup.yaml", "--cores", "1", check=False)
    said = result.stdout + result.stderr
    first = text.splitlines().index("attacks:") + 2  # the inserted key, on the line after attacks:
    assert result.returncode != 0 and re.search(rf"dup.yaml:\d+:3: duplicate key 'label_flip' \(first at line {first}\)", said)
    (workflow_copy / "self.yaml").write_text(text.replace("    source: 1\n", "    source: 7\n"))
    result = snakemake(workflow_copy, "-n", "--configfile", "self.yaml", "--cores", "1", check=False)
    assert result.returncode != 0 and "attacks.label_flip: source and target are both 7" in result.stdout + result.stderr
    assert not (workflow_copy / "results").exists()
