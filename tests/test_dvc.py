"""Sharing results through DVC, end to end: a real run of a small config in a git repository, a real DVC
remote in a temporary folder, `python -m robustcert.sharing push`, a fresh `git clone`, `… pull` — and
then Snakemake, `dvc status` and `dvc repro` agree that nothing is to run. Pulled on a later commit, the
results come with Snakemake's records of them, so Snakemake plans exactly what the later code or config
changes (only the plots after a plotting change, the training and what follows after a training change)
and the pull itself runs nothing. Changes of config are never hidden; an unreachable remote is one clear
error and nothing computed is deleted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO, WORKFLOW_FILES, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]

SMALL = "tests/configs/dvc_small.yaml"
SIDE = "tests/configs/dvc_side.yaml"  # another config, with its own results folder
# What a clone needs besides the workflow: the package (a dep of the stage) and DVC's files.
SHARING_FILES = ["src/robustcert", "dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", SMALL, SIDE]
ENV = {
    "DVC_NO_ANALYTICS": "1",
    "ROBUSTCERT_DEVICE": "cpu",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
}


@pytest.fixture(scope="module", autouse=True)
def environment():
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        # As in an activated venv: `dvc repro` runs the stage's `snakemake …` through the shell.
        patch.setenv("PATH", str(Path(sys.executable).parent), prepend=os.pathsep)
        yield


def own_package(repo: Path) -> dict[str, str]:
    """The environment in which a repository's commands import its own package (src/, as after
    `pip install -e .` there): the code a later commit changed is the code Snakemake fingerprints."""
    return {"PYTHONPATH": str(repo / "src")} if (repo / "src").is_dir() else {}


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **own_package(cwd)})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def sharing(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "robustcert.sharing", *args, check=False)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(cwd, "git", *args)


def dry_run(repo: Path, *targets: str, configfile: str = SMALL) -> str:
    return snakemake(repo, "-n", "--configfile", configfile, "--cores", "1", "--", *(targets or ("all",)),
                     env=own_package(repo)).stdout


def share_configs(repo: Path, configs: dict[str, tuple[str, str]]) -> None:
    """dvc.yaml's stage, one entry per config shared (name: config file, its results folder): the
    documented way to share the runs of a config."""
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"]["workflow"]["foreach"] = {name: {"configfile": configfile, "results": results}
                                                 for name, (configfile, results) in configs.items()}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))


def contents(folder: Path) -> dict[str, str]:
    """Every file under folder: its content hash."""
    return {path: digest for path, (_, digest) in snapshot(folder).items()}


def planned_by_pull(output: str) -> dict[str, int]:
    """The jobs per rule that `… pull` reports Snakemake plans."""
    return {rule: int(count) for rule, count in re.findall(r"^  (\w+) ×(\d+): ", output, flags=re.M)}


def commit_edit(repo: Path, path: str, old: str, new: str) -> None:
    """A later commit: one edit of one file."""
    file = repo / path
    text = file.read_text()
    assert old in text, (path, old)
    file.write_text(text.replace(old, new, 1))
    git(repo, "commit", "-qam", f"edit {path}")


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under folder: modification time and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> SimpleNamespace:
    """The author's repository: the small config run, its results pushed to a DVC remote, dvc.lock committed."""
    root = tmp_path_factory.mktemp("sharing")
    repo = root / "origin"
    for name in [*WORKFLOW_FILES, *SHARING_FILES]:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    share_configs(repo, {"default": (SMALL, "results")})
    remote = root / "remote"
    remote.mkdir()
    git(repo, "init", "-q")
    dvc(repo, "remote", "add", "--default", "shared", str(remote))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "workflow")

    snakemake(repo, "--cores", "2", "--configfile", SMALL, "--", "all", env=own_package(repo))
    pushed = sharing(repo, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert (repo / "dvc.lock").exists() and any(remote.rglob("*.dir"))
    git(repo, "add", "dvc.lock")
    git(repo, "commit", "-qm", "results")
    return SimpleNamespace(root=root, repo=repo, remote=remote)


def fresh_clone(origin: SimpleNamespace, name: str) -> Path:
    target = origin.root / name
    git(origin.root, "clone", "-q", str(origin.repo), str(target))
    return target


@pytest.fixture(scope="module")
def pulled(origin) -> SimpleNamespace:
    """Another user's fresh clone after the one documented command."""
    clone = fresh_clone(origin, "pulled")
    result = sharing(clone, "pull")
    assert result.returncode == 0, result.stdout + result.stderr
    return SimpleNamespace(repo=clone, output=result.stdout + result.stderr)


def test_pull_on_a_fresh_clone_plans_nothing(origin, pulled):
    assert "plans nothing" in pulled.output
    plan = dry_run(pulled.repo)
    assert "Nothing to be done" in plan and "train_shard" not in plan
    # Byte for byte the author's results, models, logs and benchmarks included.
    theirs, ours = snapshot(origin.repo / "results"), snapshot(pulled.repo / "results")
    assert {path: digest for path, (_, digest) in theirs.items()} == {path: digest for path, (_, digest) in ours.items()}
    assert any(path.startswith("models/") for path in ours)


def test_dvc_status_and_repro_agree_with_snakemake_after_the_pull(pulled):
    # Byte code that imports leave in the deps does not count as a change (.dvcignore).
    (pulled.repo / "src/robustcert/__pycache__").mkdir(exist_ok=True)
    (pulled.repo / "src/robustcert/__pycache__/sharing.cpython-311.pyc").write_bytes(b"\0")
    # Nor does the report made from the results (.dvcignore).
    (pulled.repo / "results/report.html").write_text("<html></html>")
    status = dvc(pulled.repo, "status", "--json")
    assert status.stdout.strip() == "{}", status.stdout
    before = snapshot(pulled.repo / "results")
    repro = dvc(pulled.repo, "repro")
    assert "didn't change, skipping" in repro.stdout, repro.stdout
    assert snapshot(pulled.repo / "results") == before
    assert "Nothing to be done" in dry_run(pulled.repo)


def test_a_config_change_after_the_pull_is_seen_by_snakemake_and_dvc(pulled):
    config = pulled.repo / SMALL
    text = config.read_text()
    config.write_text(text.replace("epochs: 2", "epochs: 3"))
    try:
        plan = dry_run(pulled.repo)
        assert plan.count("rule train_shard:") == 2 and "Params have changed" in plan
        status = dvc(pulled.repo, "status")
        assert SMALL in status.stdout and "modified" in status.stdout
        assert "Running stage 'workflow@default'" in dvc(pulled.repo, "repro", "--dry").stdout
        before = contents(pulled.repo / "results")
        again = sharing(pulled.repo, "pull")  # pulling again does not hide it either
        assert again.returncode == 0, again.stderr
        assert planned_by_pull(again.stdout)["train_shard"] == 2 and "Params have changed" in again.stdout
        assert contents(pulled.repo / "results") == before
    finally:
        config.write_text(text)
    assert "Nothing to be done" in dry_run(pulled.repo)


def test_unreachable_remote_is_one_error_and_the_results_stay(pulled, origin):
    before = snapshot(pulled.repo / "results")
    gone = origin.root / "unmounted"
    dvc(pulled.repo, "remote", "modify", "--local", "shared", "url", str(gone))
    try:
        result = sharing(pulled.repo, "pull")
    finally:
        (pulled.repo / ".dvc/config.local").unlink()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'shared'" in result.stderr and str(gone) in result.stderr and "unreachable" in result.stderr
    assert "does not exist" in result.stderr
    assert snapshot(pulled.repo / "results") == before


def test_local_changes_to_results_are_never_overwritten(pulled):
    table = pulled.repo / "results/tables/all.tsv"
    text = table.read_text()
    table.write_text(text + "my own row\n")
    extra = pulled.repo / "results/tables/mine.tsv"
    extra.write_text("mine\n")
    try:
        result = sharing(pulled.repo, "pull")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "refusing to overwrite" in result.stderr and "all.tsv" in result.stderr and "mine.tsv" in result.stderr
        assert table.read_text() == text + "my own row\n" and extra.read_text() == "mine\n"
    finally:
        table.write_text(text)
        extra.unlink()


def test_a_config_change_before_the_pull_is_planned_not_hidden(origin):
    clone = fresh_clone(origin, "changed")
    config = clone / SMALL
    config.write_text(config.read_text().replace("epochs: 2", "epochs: 3"))
    result = sharing(clone, "pull")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert SMALL in result.stdout and "nothing was run" in result.stdout
    jobs = planned_by_pull(result.stdout)
    assert jobs["train_shard"] == 2 and "Params have changed" in result.stdout, result.stdout
    assert not {"split_dataset", "partition_training_set"} & set(jobs), jobs
    assert contents(clone / "results") == contents(origin.repo / "results")  # pulled, not retrained
    assert dry_run(clone).count("rule train_shard:") == 2


def test_pull_after_a_plotting_change_plans_only_the_plots(origin):
    clone = fresh_clone(origin, "plotting")
    commit_edit(clone, "src/robustcert/plot.py", "largest = max((int(c.frame", "largest = 0 + max((int(c.frame")
    result = sharing(clone, "pull")
    assert result.returncode == 0, result.stdout + result.stderr
    assert planned_by_pull(result.stdout) == {"plot_poison_budget": 1, "all": 1}, result.stdout
    assert "Params have changed since last execution" in result.stdout
    plan = dry_run(clone)
    assert set(re.findall(r"^(?:local)?rule (\w+):", plan, flags=re.M)) == {"plot_poison_budget", "all"}, plan


def test_pull_after_a_training_change_plans_the_training_and_runs_nothing(origin):
    clone = fresh_clone(origin, "training")
    commit_edit(clone, "src/robustcert/train.py", "return self.lr * self.gamma", "return 1.0 * self.lr * self.gamma")
    result = sharing(clone, "pull")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_by_pull(result.stdout)
    assert jobs["train_shard"] == 2 and {"score_ensemble", "certify_ensemble", "summarize_certificates",
                                         "tabulate_results", "plot_poison_budget"} <= set(jobs), jobs
    assert not {"split_dataset", "partition_training_set"} & set(jobs), jobs
    # Nothing retrained during the pull: the author's models, logs and benchmarks, byte for byte.
    assert contents(clone / "results") == contents(origin.repo / "results")
    assert dry_run(clone).count("rule train_shard:") == 2


def test_a_plain_dvc_pull_is_stopped_before_snakemake_plans_on_it(origin):
    clone = fresh_clone(origin, "plain")
    dvc(clone, "pull")
    stopped = snakemake(clone, "-n", "--configfile", SMALL, "--cores", "1", "--", "all", check=False,
                        env=own_package(clone))
    message = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0 and "results/provenance.json" in message and "make pull" in message, message
    result = sharing(clone, "pull")  # the one command, after the fact
    assert result.returncode == 0 and "plans nothing" in result.stdout, result.stdout + result.stderr
    assert "Nothing to be done" in dry_run(clone)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("setup,args,named", [
    (lambda repo, root: None, ["--remote", "nowhere"], ["'nowhere'", "not configured", "'shared'"]),
    (lambda repo, root: dvc(repo, "remote", "remove", "shared"), [], ["no DVC remote", "dvc remote add"]),
    (lambda repo, root: dvc(repo, "remote", "modify", "shared", "url", f"http://127.0.0.1:{_closed_port()}/store"),
     [], ["'shared'", "http://127.0.0.1:", "unreachable", "refused"]),
    (lambda repo, root: (root / "empty").mkdir(exist_ok=True) or dvc(repo, "remote", "modify", "shared", "url", str(root / "empty")),
     [], ["'shared'", "empty", "does not hold the results"]),
    (lambda repo, root: dvc(repo, "remote", "modify", "shared", "url", "s3://no-such-bucket/store"),
     [], ["'shared'", "s3://no-such-bucket/store", "unreachable", "dvc-s3"]),
], ids=["unknown-name", "none-configured", "connection-refused", "not-pushed-there", "plugin-missing"])
def test_remote_problems_are_one_clear_error(origin, setup, args, named):
    clone = fresh_clone(origin, f"remote-{len(list(origin.root.iterdir()))}")
    setup(clone, origin.root)
    result = sharing(clone, "pull", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    for word in named:
        assert word in result.stderr, result.stderr
    assert not (clone / "results").exists()


def test_nothing_pushed_for_this_commit(origin):
    clone = fresh_clone(origin, "unpushed")
    git(clone, "checkout", "-q", "HEAD~1")  # the commit before dvc.lock
    result = sharing(clone, "pull")
    assert result.returncode == 1 and "nothing to pull" in result.stderr and "dvc.lock" in result.stderr


def test_push_refuses_results_that_are_not_up_to_date(origin):
    clone = fresh_clone(origin, "incomplete")
    result = sharing(clone, "push")
    assert result.returncode == 1 and "nothing to push" in result.stderr and "results/" in result.stderr
    result = sharing(clone, "push", "--stage", "workflow@default")
    assert result.returncode == 1 and "refusing to push" in result.stderr and "train_shard" in result.stderr
    assert not (clone / "results").exists()


def test_results_of_two_configs_pushed_by_two_people_are_pulled_side_by_side(origin):
    """A colleague adds a config of their own (its results folder beside results/), runs it and pushes
    it; the author's results stay as pushed. A fresh clone pulls both, and Snakemake plans nothing for
    either config."""
    colleague = fresh_clone(origin, "colleague")
    assert sharing(colleague, "pull").returncode == 0
    share_configs(colleague, {"default": (SMALL, "results"), "side": (SIDE, "results-side")})
    git(colleague, "commit", "-qam", "share the side config")
    snakemake(colleague, "--cores", "2", "--configfile", SIDE, "--", "all", env=own_package(colleague))
    pushed = sharing(colleague, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "workflow@default: results/ is as dvc.lock records it" in pushed.stdout, pushed.stdout
    git(colleague, "commit", "-qam", "results of the side config")
    lock = yaml.safe_load((colleague / "dvc.lock").read_text())["stages"]
    assert lock["workflow@default"] == yaml.safe_load((origin.repo / "dvc.lock").read_text())["stages"]["workflow@default"]

    clone = fresh_clone(SimpleNamespace(root=origin.root, repo=colleague), "both")
    result = sharing(clone, "pull")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("plans nothing") == 2, result.stdout
    assert contents(clone / "results") == contents(origin.repo / "results")
    assert contents(clone / "results-side") == contents(colleague / "results-side")
    assert (clone / "results-side/tables/all.tsv").is_file()
    assert "Nothing to be done" in dry_run(clone) and "Nothing to be done" in dry_run(clone, configfile=SIDE)
    assert dvc(clone, "status", "--json").stdout.strip() == "{}"


def test_results_folders_of_two_configs_must_not_overlap(origin):
    clone = fresh_clone(origin, "overlap")
    share_configs(clone, {"default": (SMALL, "results"), "side": (SMALL, "results")})
    result = sharing(clone, "pull")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "'workflow@default' and 'workflow@side'" in result.stderr and "folder of its own" in result.stderr
    share_configs(clone, {"default": (SIDE, "results")})
    result = sharing(clone, "pull")
    assert result.returncode == 1 and "its config's results folder 'results-side'" in result.stderr, result.stderr


def test_dvc_repro_after_a_config_change_reruns_only_what_it_affects(pulled):
    """Last: it changes the clone for good. persist: true — dvc repro keeps results/ and Snakemake reruns
    the two jobs that read report.budgets; the pulled models stay as they are."""
    config = pulled.repo / SMALL
    config.write_text(config.read_text().replace("budgets: [0, 1, 2]", "budgets: [0, 1]"))
    models = snapshot(pulled.repo / "results/models")
    repro = dvc(pulled.repo, "repro")
    log = repro.stdout + repro.stderr
    assert "Running stage 'workflow@default'" in log
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    assert ran == {"summarize_certificates", "tabulate_results", "tabulate_method",
                   "export_backdoorbench", "render_backdoorbench", "plot_headline", "all"}, log[-3000:]
    assert snapshot(pulled.repo / "results/models") == models
    assert "cert_acc@poison_samples=2" not in (pulled.repo / "results/tables/dpa.tsv").read_text()
    assert dvc(pulled.repo, "status", "--json").stdout.strip() == "{}"
    assert "Nothing to be done" in dry_run(pulled.repo)


def test_an_old_local_record_does_not_describe_a_pulled_file(origin):
    """Records left in .snakemake by an earlier local run of another config (its results since moved
    away) name the same paths as the pulled files; the pulled files' own records replace them."""
    clone = fresh_clone(origin, "stale-records")
    (clone / "other.yaml").write_text("datasets:\n  digits:\n    n_test: 300\n")
    snakemake(clone, "--cores", "1", "--configfile", SMALL, "other.yaml", "--", "results/data/digits/split.npz",
              env=own_package(clone))
    assert "Params have changed" in dry_run(clone, "results/data/digits/split.npz")
    (clone / "results").rename(clone / "my-old-results")
    result = sharing(clone, "pull")
    assert result.returncode == 0 and "plans nothing" in result.stdout, result.stdout + result.stderr


def test_results_pushed_without_their_records_are_refused_before_the_checkout(origin):
    """A plain `dvc commit` + `dvc push` shares results/ without provenance.json: pulled, a change of code
    or config would go unseen, so `pull` refuses and checks nothing out."""
    author = fresh_clone(origin, "plain-pusher")
    dvc(author, "pull")  # the author's copy of the results: their records are not needed to push them plainly
    (author / "results/provenance.json").unlink()
    dvc(author, "commit", "--force", "workflow")
    dvc(author, "push")
    git(author, "commit", "-qam", "results, plainly")
    puller = fresh_clone(SimpleNamespace(root=origin.root, repo=author), "plain-puller")
    result = sharing(puller, "pull")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "provenance.json" in result.stderr and "make push" in result.stderr
    assert not (puller / "results").exists()


def remote_object(origin: SimpleNamespace, relpath: str) -> Path:
    """The remote's copy of one pushed file of results/ (DVC's content-addressed layout)."""
    digest = yaml.safe_load((origin.repo / "dvc.lock").read_text())["stages"]["workflow@default"]["outs"][0]["md5"]
    listing = json.loads((origin.remote / "files/md5" / digest[:2] / digest[2:]).read_text())
    md5 = next(entry["md5"] for entry in listing if entry["relpath"] == relpath)
    return origin.remote / "files/md5" / md5[:2] / md5[2:]


def test_a_file_edited_on_the_remote_is_refused_before_anything_changes(origin):
    """Every accuracy of the remote's all.tsv set to 0.999: the pull names the file, checks nothing out and
    records nothing; once the remote is repaired the same clone pulls (the damaged copy left its cache)."""
    target = remote_object(origin, "tables/all.tsv")
    original, mode = target.read_bytes(), target.stat().st_mode
    edited = re.sub(rb"\t0\.\d+", b"\t0.999", original)
    assert edited != original
    clone = fresh_clone(origin, "edited-remote")
    target.chmod(0o644)
    try:
        target.write_bytes(edited)
        result = sharing(clone, "pull")
    finally:
        target.write_bytes(original)
        target.chmod(mode)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "results/tables/all.tsv" in result.stderr and "differ from the hashes dvc.lock records" in result.stderr
    assert not (clone / "results").exists() and not (clone / ".snakemake/metadata").exists()
    again = sharing(clone, "pull")
    assert again.returncode == 0 and "plans nothing" in again.stdout, again.stdout + again.stderr


def _add_file(key: str):
    def tamper(provenance: dict) -> str:
        provenance["files"][key] = next(iter(provenance["files"].values()))
        return json.dumps(provenance)
    return tamper


def _bad_record(provenance: dict) -> str:
    next(iter(provenance["files"].values()))["metadata"] = {"rule": 5}
    return json.dumps(provenance)


@pytest.mark.parametrize("tamper,named", [
    (_add_file("../outside.txt"), "names '../outside.txt', which is not a path inside results/"),
    (_add_file("ABSOLUTE"), "which is not a path inside results/"),
    (_add_file("results/../outside.txt"), "names 'results/../outside.txt', which is not a path inside results/"),
    (lambda provenance: json.dumps(provenance)[:-40], "is malformed: not the JSON object with 'files' that push writes"),
    (_bad_record, "is not a Snakemake record (rule: Input should be a valid string)"),
], ids=["parent", "absolute", "dot-dot-inside", "cut", "bad-record"])
def test_a_pushed_provenance_that_names_other_paths_or_is_malformed_is_refused(origin, tamper, named):
    """An author (careless or hostile) pushes a provenance.json whose paths leave results/, or that is cut or
    holds a record Snakemake cannot read: the pull is one error naming the file, before the checkout; no
    file outside results/ is re-dated and Snakemake gets no record."""
    outside = origin.root / "outside.txt"
    outside.write_text("not the puller's result\n")
    os.utime(outside, (1e9, 1e9))
    name = f"tampering-{len(list(origin.root.iterdir()))}"
    author = fresh_clone(origin, name)
    dvc(author, "pull")  # the author's copy of the results, provenance.json included
    provenance = author / "results/provenance.json"
    text = tamper(json.loads(provenance.read_text()))
    provenance.write_text(text.replace("ABSOLUTE", str(outside)))
    dvc(author, "commit", "--force", "workflow")
    dvc(author, "push")
    git(author, "commit", "-qam", "results, tampered")
    puller = fresh_clone(SimpleNamespace(root=origin.root, repo=author), f"{name}-puller")
    result = sharing(puller, "pull")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "the pushed results/provenance.json" in result.stderr and named in result.stderr, result.stderr
    assert not (puller / "results").exists() and not (puller / ".snakemake/metadata").exists()
    assert outside.stat().st_mtime == 1e9


def test_push_refuses_results_marked_up_to_date_by_touch_after_a_config_change(origin):
    """The probe of issue 27: change the epochs, `snakemake --touch`, push. Snakemake itself then plans
    nothing (the touch recorded the new params), but push judges the touched files by the records of the
    runs that made them, and refuses, naming the jobs and why; made for real, the results push."""
    clone = fresh_clone(origin, "touched")
    assert sharing(clone, "pull").returncode == 0
    touch = ("--touch", "--configfile", SMALL, "--cores", "1", "--", "all")
    snakemake(clone, *touch, env=own_package(clone))  # a touch that hides no change
    pushed = sharing(clone, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    lock = (clone / "dvc.lock").read_text()

    config = clone / SMALL
    config.write_text(config.read_text().replace("epochs: 2", "epochs: 3"))
    snakemake(clone, *touch, env=own_package(clone))
    assert "Nothing to be done" in dry_run(clone)  # what the touch hides from Snakemake
    refused = sharing(clone, "push")
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "Traceback" not in said, said
    assert "refusing to push results/" in said and "train_shard ×2: Params have changed since last execution" in said, said
    assert "marked up to date by `snakemake --touch`" in said and "Nothing was pushed" in said
    assert (clone / "dvc.lock").read_text() == lock
    assert "Nothing to be done" in dry_run(clone)  # the records are as the touch left them

    forcerun = re.search(r"`snakemake (--forcerun [\w ]+)`", said)
    assert forcerun and "train_shard" in forcerun.group(1), said
    snakemake(clone, "--cores", "2", "--configfile", SMALL, *forcerun.group(1).split(), "--", "all",
              env=own_package(clone))
    pushed = sharing(clone, "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert (clone / "dvc.lock").read_text() != lock
