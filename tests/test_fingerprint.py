"""robustcert.fingerprint on a copy of the package: which scripts' digests an edit changes, that comments
and docstrings change none, that lazy imports inside functions are followed, and that every rule with a
script carries the digest of its own script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from robustcert import fingerprint

SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("*.py"))
TRAINING_EDIT = ("src/robustcert/train.py", "return self.lr * self.gamma", "return 1.0 * self.lr * self.gamma")
PLOTTING_EDIT = ("src/robustcert/plot.py", "largest = max((int(c.frame", "largest = 0 + max((int(c.frame")


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The scripts and the package, copied: edits of the copy change nothing here."""
    root = tmp_path_factory.mktemp("fingerprint")
    shutil.copytree(REPO / "scripts", root / "scripts")
    shutil.copytree(REPO / "src/robustcert", root / "src/robustcert", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def digests(root: Path) -> dict[str, str]:
    """{script: digest} as ``python -m robustcert.fingerprint`` computes it on the package under root."""
    result = subprocess.run([sys.executable, "-m", "robustcert.fingerprint", *(f"scripts/{s}" for s in SCRIPTS)],
                            cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root / "src")},
                            check=True)
    return dict(re.findall(r"^scripts/(\S+): (\w+)$", result.stdout, flags=re.M))


def changed_by(root: Path, path: str, old: str, new: str) -> set[str]:
    """The scripts whose digest an edit of the package changes."""
    before = digests(root)
    file = root / path
    text = file.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    file.write_text(text.replace(old, new))
    try:
        after = digests(root)
    finally:
        file.write_text(text)
    assert set(before) == set(after) == set(SCRIPTS)
    return {script for script in SCRIPTS if before[script] != after[script]}


def test_a_training_change_changes_the_steps_that_train_only(copy):
    changed = changed_by(copy, *TRAINING_EDIT)
    assert {"train_shard.py", "train_smoothed.py"} <= changed
    assert not changed & {"split_dataset.py", "poison_training_set.py", "partition_training_set.py",
                          "score_ensemble.py", "certify_ensemble.py", "plot_poison_budget.py", "tabulate_results.py"}


def test_a_plotting_change_changes_that_plot_only(copy):
    assert changed_by(copy, *PLOTTING_EDIT) == {"plot_poison_budget.py"}


def test_comments_docstrings_and_blank_lines_change_nothing(copy):
    edit = ('"""The training recipe (', '# a comment\n\n    """The training recipe, edited (')
    assert changed_by(copy, "src/robustcert/train.py", *edit) == set()
    assert changed_by(copy, "src/robustcert/train.py", '"""Training the base models', '"""Training, edited, the base models') == set()


def test_a_change_in_a_thin_script_is_its_own(copy):
    assert changed_by(copy, "scripts/train_shard.py", "seed=snakemake.params.seed,",
                      "seed=snakemake.params.seed + 0,") == {"train_shard.py"}


def test_lazy_imports_inside_functions_are_followed_by_name():
    reached = fingerprint.reached(REPO / "scripts/train_shard.py")
    # workflow.ensemble.train_shard imports robustcert.train inside its body
    assert "robustcert.train" in reached and "robustcert.models.resnet" in reached
    assert "train_shard" in reached["robustcert.workflow.ensemble"]
    assert "score_ensemble" not in reached["robustcert.workflow.ensemble"]
    assert "robustcert.score" not in reached and "robustcert.plot" not in reached


def test_the_library_versions_count_for_steps_that_compute():
    training = fingerprint.covered(REPO / "scripts/train_shard.py")
    assert {"torch", "torchvision", "numpy"} <= set(training)
    table = fingerprint.covered(REPO / "scripts/tabulate_results.py")
    assert "torch" not in table and "torchvision" not in table


def test_every_rule_with_a_script_carries_the_digest_of_that_script():
    """The one line a rules file adds per rule (rules/common.smk): code=code_of("scripts/<its script>")."""
    missing = []
    for rules_file in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |checkpoint )", rules_file.read_text()):
            script = re.search(r'script:\s*\n\s*"\.\./(scripts/[\w.]+)"', block)
            if script and f'code=code_of("{script.group(1)}")' not in block:
                missing.append(f"{rules_file.name}: {block.split(':', 1)[0]}")
    assert not missing, missing


def test_a_kept_digest_is_the_computed_one_and_is_kept_under_every_byte_it_depends_on(copy, tmp_path, monkeypatch):
    """The digests kept in the cache (one per key of the package's and the script's bytes) are those
    computed afresh; a damaged entry is recomputed; a comment in the package is a new key (but the
    same digest), so nothing stale is ever read."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    script = REPO / "scripts" / "train_shard.py"
    fingerprint.code_of.cache_clear()
    first = fingerprint.code_of(script)
    kept = tmp_path / "robustcert" / "fingerprints" / fingerprint.inputs_key(script)
    assert kept.read_text() == first == fingerprint.code_of(script)
    fingerprint.code_of.cache_clear()
    kept.write_text("not a digest")
    assert fingerprint.code_of(script) == first and kept.read_text() == first
    env = {"PYTHONPATH": str(copy / "src"), "XDG_CACHE_HOME": str(tmp_path)}
    run = [sys.executable, "-c", "from robustcert import fingerprint as f; import sys; "
           "print(f.inputs_key(sys.argv[1]), f.code_of(sys.argv[1]))", str(script)]
    before = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout.split()
    train = copy / "src/robustcert/train.py"
    text = train.read_text()
    train.write_text(text + "\n# a comment\n")
    try:
        after = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout.split()
    finally:
        train.write_text(text)
    assert before[0] != after[0] and before[1] == after[1] == first
