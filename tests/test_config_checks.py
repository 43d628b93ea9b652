"""Meaningless configs are refused before any job, naming the key; YAML files are read strictly."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config
from conftest import REPO, snakemake

from robustcert.config import load_yaml_strictly, main, validate_config
from robustcert.workflow import poison
from robustcert.workflow.common import sigma_label

SCHEMAS = REPO / "config/schemas"
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _refusal(edit) -> str:
    """The message with which the default config, edited, is refused."""
    config = copy.deepcopy(DEFAULT)
    edit(config)
    with pytest.raises(ValueError) as error:
        validate_config(config, SCHEMAS)
        poison.check_attacks(config)
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


@pytest.mark.workflow
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
