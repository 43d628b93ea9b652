"""Share the workflow's results through DVC: push them once, pull them at any later commit, rerun only
what the later code or config changes.

    python -m robustcert.sharing push [--remote NAME]
    python -m robustcert.sharing pull [--remote NAME] [TARGET ...]

``dvc.yaml`` has one stage per config, ``workflow@<name>`` (a ``foreach``); each runs Snakemake on its
config and tracks that config's results folder (its ``pathvars: results``: ``results/`` for the default,
``results-mnist/`` for config/mnist.yaml, …) as its one output, so the results of several configs are
shared side by side. What Snakemake needs to judge pulled files travels with them: ``push`` writes
``<results>/provenance.json``, per file its date and Snakemake's own metadata record (rule, params —
with the code fingerprint of ``robustcert.fingerprint`` —, input list, input checksums, start and end
time).

``push`` takes the stages whose results folder is here and differs from ``dvc.lock`` (or the one
``--stage`` names); for each it refuses unless Snakemake plans nothing for the stage's targets (the
results are complete and up to date, by Snakemake's own provenance; files that ``snakemake --touch``
marked up to date judged by the records of the runs that made them, :class:`TouchLedger`), writes the
provenance, then ``dvc commit`` (``dvc.lock``) and ``dvc push``.

``pull`` takes every stage that ``dvc.lock`` records (or the one ``--stage`` names) and, per stage:

(``pull`` is the one command: a plain ``dvc pull`` brings no records; the Snakefile then refuses to plan,
see ``unrestored``.)

1. says which deps differ from ``dvc.lock`` (code or config changed since the push) — not a refusal.
2. the remote is probed; unreachable or missing, the error names it and its URL; nothing is touched.
3. ``dvc fetch`` (into ``.dvc/cache`` only); every fetched object is checked against its hash (the
   listing against dvc.lock, each file against the listing) and the pushed provenance read strictly
   (:func:`read_provenance`: paths inside the results folder only), before anything is checked out.
   Then ``dvc checkout`` without ``--force``: DVC refuses to overwrite or delete local files that
   differ from the pushed ones, and so does this command.
4. restores the records into ``.snakemake/metadata`` where there is none (a local record stays) and
   dates the files in the pushed order, all after the start of the pull (so later than the checkout's
   scripts) and not in the future: neither the mtime nor the script trigger fires spuriously, while the
   params trigger compares the pushed params and code fingerprints with this checkout's. No ``--touch``:
   it would record the current params and hide a change.
5. ``snakemake -n``: reports the jobs it plans per rule and why; runs nothing.

Nothing here deletes or overwrites results: no ``--force`` is ever passed to DVC.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

#: The stage of dvc.yaml, a ``foreach`` over configs: ``workflow@default``, ``workflow@mnist``, …
STAGE = "workflow"
#: Loaded by the Snakefile's ``configfile:`` directive before any ``--configfile``.
DEFAULT_CONFIG = "config/config.yaml"
#: Options of the stage's command that decide how, not what, Snakemake runs; dropped for -n.
EXECUTION_OPTIONS = {"--cores", "-c", "--jobs", "-j", "--resources", "--res", "--local-cores"}
PROG = "python -m robustcert.sharing"
#: Written into each output folder of the stage at push: Snakemake's records of its files.
PROVENANCE = "provenance.json"
#: Under .snakemake: per results folder, the records that ``snakemake --touch`` replaced (TouchLedger).
TOUCHED = "robustcert-touched"
#: The folder of the workflow's results unless a config's ``pathvars: results`` says otherwise.
RESULTS = "results"
#: Files of each results folder that are not shared (.dvcignore): the report is made from the results.
NOT_SHARED = ("report.html", "report.zip")
say_now = functools.partial(print, flush=True)


class SharingError(Exception):
    """A refusal or failure, with a message for the user; nothing was deleted."""


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]
    options: list[str] = field(default_factory=list)  # Snakemake options of the command, minus execution ones
    targets: list[str] = field(default_factory=list)
    configfiles: list[str] = field(default_factory=list)

    @property
    def results(self) -> str:
        """The stage's one output: its config's results folder."""
        return self.outs[0]


@dataclass
class Remote:
    name: str
    url: str
    location: str  # the resolved path or URL that DVC talks to
    protocol: str


# ---------------------------------------------------------------- running dvc and snakemake


def _run(args: list[str], root: Path, *, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=root, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SharingError(f"`{shlex.join(args[2:] if args[1:2] == ['-m'] else args)}` failed "
                           f"({result.returncode}):\n{_tail(result)}")
    return result


def dvc(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "dvc", *args], root, check=check)


def snakemake(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "snakemake", *args], root, check=check)


def _tail(result: subprocess.CompletedProcess, lines: int = 30) -> str:
    text = (result.stdout + result.stderr).strip().splitlines()
    if "Building DAG of jobs..." in text:  # Snakemake: what follows its banner
        text = text[len(text) - text[::-1].index("Building DAG of jobs...") :]
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------- the stage and the remote


def load_stages(root: Path, name: str = STAGE) -> list[Stage]:
    """The stages of dvc.yaml that ``name`` names (``workflow``: one per config; ``workflow@mnist``: that
    one), templating resolved by DVC, with the Snakemake arguments of their commands."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if not (root / "dvc.yaml").exists():
        raise SharingError(f"{root}/dvc.yaml not found: run this in the repository's root folder")
    try:
        with Repo(str(root)) as repo:
            collected = [Stage(name=stage.addressing, cmd=stage.cmd, deps=[d.def_path for d in stage.deps],
                               outs=[o.def_path for o in stage.outs]) for stage in repo.stage.collect(name)]
    except DvcException as error:
        raise SharingError(f"cannot read the stage '{name}' of dvc.yaml: {error}") from error
    stages = [_parse_command(root, stage) for stage in collected]
    _check_folders_apart(stages)
    return stages


def _parse_command(root: Path, result: Stage) -> Stage:
    """Fill in the Snakemake options, targets and config files of the stage's command; check that the
    stage tracks its config files and exactly its config's results folder."""
    name = result.name
    words = shlex.split(result.cmd)
    if not words or Path(words[0]).name != "snakemake" or "--" not in words:
        raise SharingError(f"the stage '{name}' must run `snakemake [options] -- targets`; dvc.yaml has: {result.cmd}")
    split = words.index("--")
    options, result.targets = words[1:split], words[split + 1:]
    i = 0
    while i < len(options):
        word = options[i]
        key = word.split("=", 1)[0]
        values = []
        j = i + 1
        if "=" not in word:
            while j < len(options) and not options[j].startswith("-"):
                values.append(options[j])
                j += 1
        if key in ("--configfile", "--configfiles"):
            result.configfiles += values or word.split("=", 1)[1:]
        if key not in EXECUTION_OPTIONS:
            result.options += options[i:j]
        i = j
    untracked = [c for c in [DEFAULT_CONFIG, *result.configfiles]
                 if os.path.normpath(c) not in {os.path.normpath(d) for d in result.deps}]
    if untracked:
        raise SharingError(f"dvc.yaml: the stage '{name}' reads {', '.join(untracked)} but does not list it under "
                           "deps, so a change to it would go unnoticed; add it to deps")
    folder = results_folder(root, result.configfiles)
    if [os.path.normpath(out) for out in result.outs] != [folder]:
        raise SharingError(f"dvc.yaml: the stage '{name}' must have as its one output its config's results folder "
                           f"'{folder}' (pathvars: results of {', '.join([DEFAULT_CONFIG, *result.configfiles])}); "
                           f"it has {', '.join(result.outs) or 'none'}")
    return result


def results_folder(root: Path, configfiles: list[str]) -> str:
    """The results folder of a run on these config files: the last ``pathvars: results`` of the default
    config and of each file (Snakemake merges them in that order), else ``results``."""
    folder = RESULTS
    for configfile in [DEFAULT_CONFIG, *configfiles]:
        path = root / configfile
        if not path.is_file():
            raise SharingError(f"the config file {configfile} of dvc.yaml does not exist")
        settings = yaml.safe_load(path.read_text())
        pathvars = settings.get("pathvars") if isinstance(settings, dict) else None
        if isinstance(pathvars, dict) and pathvars.get("results"):
            folder = pathvars["results"]
    return os.path.normpath(folder)


def _check_folders_apart(stages: list[Stage]) -> None:
    """Refuse two stages whose results folders are one or inside one another (DVC's outputs may not
    overlap, and one config's run would change the other's shared results)."""
    for i, first in enumerate(stages):
        for second in stages[i + 1:]:
            a, b = Path(first.results), Path(second.results)
            if a == b or a in b.parents or b in a.parents:
                raise SharingError(f"dvc.yaml: the stages '{first.name}' and '{second.name}' write to "
                                   f"'{first.results}' and '{second.results}': give each config a results "
                                   "folder of its own (pathvars: results)")


def resolve_remote(root: Path, name: str | None) -> Remote:
    """The named (or default) DVC remote, with its URL; errors name what is configured."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        remotes = {key: dict(value) for key, value in repo.config.get("remote", {}).items()}
        configured = ", ".join(f"'{key}' ({value.get('url')})" for key, value in remotes.items()) or "none"
        if name is None:
            name = repo.config.get("core", {}).get("remote")
            if not name:
                raise SharingError(
                    "no DVC remote given and no default one configured (configured remotes: "
                    f"{configured}). Add one with `dvc remote add -d shared URL` (URL: a folder, "
                    "s3://…, ssh://…) and commit .dvc/config, or pass --remote NAME.")
        if name not in remotes:
            raise SharingError(f"the DVC remote '{name}' is not configured (configured remotes: {configured}); "
                               "see `dvc remote list`")
        url = str(remotes[name].get("url"))
        try:
            remote = repo.cloud.get_remote(name)
        except (DvcException, ImportError) as error:  # e.g. s3:// without the dvc-s3 plugin
            raise SharingError(f"the DVC remote '{name}' ({url}) is unreachable: {error}. "
                               "Nothing was pulled or pushed.") from error
        return Remote(name=name, url=url, location=str(remote.path), protocol=str(remote.fs.protocol))


def unreachable(root: Path, remote: Remote, timeout: float = 20) -> str | None:
    """Why the remote cannot be reached, or None. DVC itself reports an unreachable remote as one that
    holds no files ("Everything is up to date"), so it is probed here first."""
    if remote.protocol == "local":
        path = Path(remote.location)
        if not path.exists():
            return f"the folder {path} does not exist (not mounted? wrong path?)"
        if not path.is_dir():
            return f"{path} is not a folder"
        if not os.access(path, os.R_OK | os.X_OK):
            return f"the folder {path} is not readable"
        return None
    if remote.protocol in ("http", "https"):
        try:
            urllib.request.urlopen(urllib.request.Request(remote.location, method="HEAD"), timeout=timeout)
        except urllib.error.HTTPError:
            return None  # the server answered
        except (urllib.error.URLError, OSError) as error:
            return str(getattr(error, "reason", error))
        return None
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            fs = repo.cloud.get_remote(remote.name).fs
            fs.exists(remote.location)
    except Exception as error:  # noqa: BLE001 - any failure to talk to the remote is the answer
        return f"{type(error).__name__}: {error}"
    return None


def _lock_entry(root: Path, name: str) -> dict | None:
    lock = root / "dvc.lock"
    if not lock.exists():
        return None
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(name)


def stage_changes(root: Path, name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``dvc status`` of the stage: (changed deps, changed outs, other changes such as 'changed command')."""
    result = dvc(root, "status", "--json", name)
    if result.returncode != 0:
        raise SharingError(f"`dvc status {name}` failed:\n{_tail(result)}")
    text = result.stdout.strip()
    status = json.loads(text[text.index("{"):]) if "{" in text else {}
    deps: dict[str, str] = {}
    outs: dict[str, str] = {}
    other: list[str] = []
    for entry in status.get(name, []):
        if isinstance(entry, dict):
            deps.update(entry.get("changed deps", {}))
            outs.update(entry.get("changed outs", {}))
            other += [key for key in entry if key not in ("changed deps", "changed outs")]
        else:
            other.append(str(entry))
    return deps, outs, other


def _git_changes(root: Path, paths: list[str]) -> list[str]:
    try:
        result = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=root,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


# ---------------------------------------------------------------- snakemake's view


def plan(root: Path, stage: Stage, targets: list[str]) -> dict[str, tuple[int, set[str]]]:
    """What ``snakemake -n`` plans for the targets: by rule, the number of jobs and the reasons Snakemake
    gives (the part of each ``reason:`` before its details, e.g. "Params have changed since last
    execution"). Empty: nothing to be done."""
    result = snakemake(root, "-n", "--cores", "1", *stage.options, "--", *targets)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SharingError(f"`snakemake -n` failed:\n{_tail(result)}")
    if "Nothing to be done" in output:
        return {}
    planned: dict[str, tuple[int, set[str]]] = {}
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n?)*)", output, flags=re.M):
        count, reasons = planned.get(rule, (0, set()))
        for reason in re.findall(r"^\s+reason: (.*)$", block, flags=re.M):
            reasons |= {part.split(":", 1)[0].strip() for part in reason.split(";")}
        planned[rule] = (count + 1, reasons)
    return planned


def _describe_plan(planned: dict[str, tuple[int, set[str]]]) -> str:
    return "\n".join(f"  {rule} ×{count}: {'; '.join(sorted(reasons)) or 'needed by the targets'}"
                     for rule, (count, reasons) in planned.items())


# ---------------------------------------------------------------- provenance: what Snakemake knows of the results


def _persistence(root: Path):
    """Snakemake's own store of job metadata (``.snakemake/metadata``, its default file backend)."""
    from snakemake.persistence.file import FilePersistence

    return FilePersistence(nolock=True, path=root / ".snakemake")


def _result_files(root: Path, outs: list[str]) -> list[Path]:
    return [path for out in outs for path in sorted((root / out).rglob("*"))
            if path.is_file() and path.name != PROVENANCE and path.relative_to(root / out).as_posix() not in NOT_SHARED]


def write_provenance(root: Path, stage: Stage) -> list[Path]:
    """Write ``<out>/provenance.json`` for each output folder of the stage: per file, its modification
    time and Snakemake's metadata record (rule, params with the code fingerprint, input list, input
    checksums, start and end time). It travels with the results; ``pull`` restores it."""
    store = _persistence(root)
    written = []
    for out in stage.outs:
        records = {}
        for path in _result_files(root, [out]):
            key = path.relative_to(root).as_posix()
            record = store._read_record(key)
            records[key] = {"mtime": path.stat().st_mtime,
                            "metadata": dict(record.items()) if record is not None else None}
        target = root / out / PROVENANCE
        target.write_text(json.dumps({"format": 1, "files": records}, indent=None, sort_keys=True))
        _mark_restored(root, target)
        written.append(target)
    return written


def _records(root: Path, results: str) -> dict[str, dict]:
    """Snakemake's record of every file of the results folder that has one (key: its path)."""
    store = _persistence(root)
    records = {}
    for path in _result_files(root, [results]):
        key = path.relative_to(root).as_posix()
        record = store._read_record(key)
        if record is not None:
            records[key] = _plain(record)
    return records


def _plain(record) -> dict:
    """A metadata record as the JSON of the ledger holds it (lists, not tuples)."""
    return json.loads(json.dumps(record.model_dump()))


class TouchLedger:
    """What ``snakemake --touch`` hides: it records the current params and code for outputs made with
    others, so that no dry run plans them again. Hooked into every run (Snakemake's onstart, onsuccess
    and onerror; ``is_touch`` says whether the run only touches), a touch run keeps, per results folder,
    the record each touched file had (``made``: how it was made) beside the one the touch wrote
    (``touched``); :func:`records_as_made` puts the ``made`` records back for the dry run of ``push`` as
    long as a file still has its ``touched`` record (a later real run replaces it)."""

    def __init__(self, results: str, is_touch: Callable[[], bool], root: Path | str = ".") -> None:
        self.root, self.results, self.is_touch = Path(root), results, is_touch
        self.before: dict[str, dict] | None = None

    def start(self, log: object = None) -> None:
        """Before a touch run touches anything (onstart): the records as they are."""
        if self.is_touch():
            self.before = _records(self.root, self.results)

    def record(self, log: object = None) -> None:
        """After a touch run (onsuccess, onerror): add the files whose records it changed to the ledger."""
        if self.before is None:
            return
        ledger = read_ledger(self.root, self.results)
        for key, now in _records(self.root, self.results).items():
            before = self.before.get(key)
            if before is None or before == now:
                continue
            earlier = ledger.get(key)
            made = earlier["made"] if earlier and earlier["touched"] == before else before
            ledger[key] = {"made": made, "touched": now}
        _write_ledger(self.root, self.results, ledger)


def _ledger_path(root: Path, results: str) -> Path:
    return root / ".snakemake" / TOUCHED / (results.replace("/", "__") + ".json")


def read_ledger(root: Path, results: str) -> dict[str, dict]:
    """The touched files of a results folder: {key: {"made": record, "touched": record}}."""
    path = _ledger_path(root, results)
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_ledger(root: Path, results: str, ledger: dict[str, dict]) -> None:
    path = _ledger_path(root, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ledger, sort_keys=True))


@contextlib.contextmanager
def records_as_made(root: Path, results: str):
    """Within the block, every file that ``snakemake --touch`` marked up to date (and that no real run has
    made since) has the record of the run that made it, so that a dry run judges it by how it was made;
    yields those files with their rules. Afterwards the records are as before; the ledger forgets files
    made since."""
    from snakemake.persistence import MetadataRecord

    store = _persistence(root)
    ledger = read_ledger(root, results)
    current = {key: store._read_record(key) for key in ledger}
    touched = [key for key, entry in ledger.items()
               if current[key] is not None and _plain(current[key]) == entry["touched"]]
    if len(touched) != len(ledger):
        _write_ledger(root, results, {key: ledger[key] for key in touched})
    try:
        for key in touched:
            store._write_record(key, MetadataRecord.model_validate(ledger[key]["made"]))
        yield {key: ledger[key]["touched"]["rule"] for key in touched}
    finally:
        for key in touched:
            store._write_record(key, current[key])


def _marker(root: Path, provenance: Path) -> Path:
    name = provenance.relative_to(root).as_posix().replace("/", "__")
    return root / ".snakemake" / "robustcert-restored" / name


def _mark_restored(root: Path, provenance: Path) -> None:
    marker = _marker(root, provenance)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(hashlib.sha256(provenance.read_bytes()).hexdigest())


def unrestored(results: str = RESULTS, root: Path | str = ".") -> list[str]:
    """The pulled ``provenance.json`` of the results folder whose records Snakemake does not have yet:
    results brought by a plain ``dvc pull`` (or ``dvc checkout``). The Snakefile refuses to plan on them."""
    root = Path(root)
    missing = []
    for provenance in sorted(root.glob(f"{results}/{PROVENANCE}")):
        marker = _marker(root, provenance)
        digest = hashlib.sha256(provenance.read_bytes()).hexdigest()
        if not marker.exists() or marker.read_text().strip() != digest:
            missing.append(provenance.relative_to(root).as_posix())
    return missing


def _cache_object(root: Path, digest: str) -> Path:
    """Where DVC keeps the object of an md5 digest (``….dir``: a folder's listing) in the local cache."""
    return root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


def _lock_listings(root: Path, stage: Stage) -> dict[str, list[dict]]:
    """The fetched listing (DVC's ``.dir`` object) of each output folder that dvc.lock records."""
    listings = {}
    for out in (_lock_entry(root, stage.name) or {}).get("outs", []):
        digest = str(out.get("md5", ""))
        listing = _cache_object(root, digest)
        if digest.endswith(".dir") and listing.is_file():
            listings[out["path"]] = json.loads(listing.read_text())
    return listings


def _pushed_without_provenance(root: Path, stage: Stage) -> list[str]:
    """The fetched output folders of dvc.lock whose listing has no provenance file."""
    return [path for path, listing in _lock_listings(root, stage).items()
            if PROVENANCE not in {entry.get("relpath") for entry in listing}]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_fetched(root: Path, stage: Stage) -> None:
    """Check every fetched object of the stage against the hash that dvc.lock records (the folder's
    listing) and that the listing records (each file), before anything is checked out: a remote whose
    files were edited or damaged is one error naming them. The damaged copies are dropped from
    .dvc/cache, so that a later pull fetches them again; the results folder is not touched."""
    damaged = []
    for out in (_lock_entry(root, stage.name) or {}).get("outs", []):
        digest = str(out.get("md5", ""))
        listing = _cache_object(root, digest)
        if not listing.is_file() or _md5(listing) != digest.removesuffix(".dir"):
            damaged.append((f"{out['path']}/ (its listing)", listing))
            continue
        for entry in json.loads(listing.read_text()):
            copy = _cache_object(root, str(entry.get("md5", "")))
            if not copy.is_file() or _md5(copy) != entry.get("md5"):
                damaged.append((f"{out['path']}/{entry.get('relpath')}", copy))
    if damaged:
        for _, copy in damaged:
            copy.unlink(missing_ok=True)
        raise SharingError(
            f"the remote's copies of {len(damaged)} files of '{stage.name}' differ from the hashes dvc.lock records "
            "(edited or damaged on the remote): " + ", ".join(name for name, _ in damaged[:20])
            + (", …" if len(damaged) > 20 else "") + f". Nothing was checked out; {stage.results}/ and Snakemake's "
            "records are untouched (the damaged copies were dropped from .dvc/cache). Ask their author to push again.")


def read_provenance(text: str, name: str, results: str) -> dict[str, dict]:
    """The records of a ``provenance.json`` (``name``: the file, for the errors), each checked: JSON of the
    format ``push`` writes, every path a file inside the ``results`` folder (no ``..``, not absolute),
    every record one that Snakemake reads. Anything else is one error naming the file."""
    from pydantic import ValidationError
    from snakemake.persistence import MetadataRecord

    def malformed(why: str) -> SharingError:
        return SharingError(f"{name} is malformed: {why}. Nothing was checked out or recorded; its author pushes "
                            f"again with `{PROG} push`.")

    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise malformed(f"not the JSON object with 'files' that push writes ({type(error).__name__}: {error})") from None
    if not isinstance(files, dict):
        raise malformed("'files' is not an object")
    for key, entry in files.items():
        if not inside(key, results):
            raise malformed(f"it names {key!r}, which is not a path inside {results}/; pull writes nowhere else")
        if not isinstance(entry, dict) or not isinstance(entry.get("mtime"), (int, float)) or "metadata" not in entry:
            raise malformed(f"the entry of {key} is not {{'mtime': number, 'metadata': record or null}}")
        try:
            if entry["metadata"] is not None:
                MetadataRecord.model_validate(entry["metadata"])
        except ValidationError as error:
            first = error.errors()[0]
            raise malformed(f"the record of {key} is not a Snakemake record ({'.'.join(map(str, first['loc']))}: "
                            f"{first['msg']})") from None
    return files


def inside(key: object, results: str) -> bool:
    """Whether ``key`` is a plain relative path of a file inside the results folder: no ``..``, ``.``,
    empty part or backslash, not absolute."""
    if not isinstance(key, str) or "\\" in key or key.startswith("/"):
        return False
    parts = key.split("/")
    return (parts[: len(Path(results).parts)] == list(Path(results).parts) and len(parts) > len(Path(results).parts)
            and all(part not in ("", ".", "..") for part in parts))


def _check_pushed_provenance(root: Path, stage: Stage) -> None:
    """Read each fetched (and verified) provenance file before the checkout: a malformed one, or one
    that names a path outside its results folder, is refused with nothing checked out."""
    for out, listing in _lock_listings(root, stage).items():
        for entry in listing:
            if entry.get("relpath") == PROVENANCE:
                read_provenance(_cache_object(root, entry["md5"]).read_text(errors="replace"),
                                f"the pushed {out}/{PROVENANCE}", out)


def restore_provenance(root: Path, stage: Stage, since: float, kept: set[str]) -> tuple[int, int]:
    """Give Snakemake back what it knew of the pulled results: the pushed metadata record of every file
    the checkout wrote (an old record of a file of that name no longer describes it) and of every kept
    file (``kept``: there before the pull, identical) that has no record here — a local record of a
    kept file stays. Then modification times in the pushed order, all newer than ``since`` (the start
    of the pull: later than every file of the checkout, scripts included, so neither the mtime nor the
    script trigger fires spuriously) and not in the future. Only files inside the results folder, not
    reached through a link, are recorded or dated (:func:`read_provenance`). Returns (records restored,
    files dated)."""
    from snakemake.persistence import MetadataRecord

    store = _persistence(root)
    restored = dated = 0
    for out in stage.outs:
        provenance = root / out / PROVENANCE
        if not provenance.exists():
            continue
        folder = (root / out).resolve()
        files = {key: entry for key, entry in read_provenance(provenance.read_text(errors="replace"),
                                                              provenance.relative_to(root).as_posix(), out).items()
                 if (root / key).is_file() and folder in (root / key).resolve().parents}
        for key, entry in files.items():
            if entry["metadata"] is not None and (key not in kept or store._read_record(key) is None):
                store._write_record(key, MetadataRecord.model_validate(entry["metadata"]))
                restored += 1
        ranks = {mtime: rank for rank, mtime in enumerate(sorted({e["mtime"] for e in files.values()}), 1)}
        now = time.time()
        step = min(1e-3, (now - since) / (len(ranks) + 1))
        if step < 1e-5:  # too little time since the checkout to space the files apart
            time.sleep(1e-5 * (len(ranks) + 1))
            now, step = time.time(), 1e-5
        for key, entry in files.items():
            stamp = now - (len(ranks) - ranks[entry["mtime"]]) * step
            os.utime(root / key, (stamp, stamp), follow_symlinks=False)
            dated += 1
        _mark_restored(root, provenance)
    return restored, dated


# ---------------------------------------------------------------- the commands


def pull(root: Path, remote_name: str | None = None, targets: list[str] | None = None,
         stage_name: str = STAGE, say=say_now) -> dict[str, dict[str, int]]:
    """Fetch the results dvc.lock records (at any commit; every config's, or the stage's that
    ``stage_name`` names) with Snakemake's records of them; returns per stage the jobs Snakemake then
    plans for the stage's targets and ``targets`` (by rule; empty when nothing that made them changed).
    Runs none of them."""
    root = root.resolve()
    stages = load_stages(root, stage_name)
    recorded = [stage for stage in stages if (_lock_entry(root, stage.name) or {}).get("outs")]
    if not recorded:
        raise SharingError(
            f"nothing to pull: dvc.lock has no results of {_named(stages)} "
            f"(dvc.lock {'records none of them' if (root / 'dvc.lock').exists() else 'is missing'}). "
            f"The results of this commit were never pushed: their author runs `{PROG} push` and commits dvc.lock.")
    if targets and len(recorded) > 1:
        raise SharingError(f"more targets belong to one config: name its stage ({_named(recorded)}) with --stage")
    remote = resolve_remote(root, remote_name)
    reason = unreachable(root, remote)
    if reason:
        raise SharingError(f"the DVC remote '{remote.name}' ({remote.url}) is unreachable: {reason}. "
                           f"Nothing was pulled and {', '.join(f'{s.results}/' for s in recorded)} untouched.")
    return {stage.name: _pull_stage(root, stage, remote, targets or [], say) for stage in recorded}


def _named(stages: list[Stage]) -> str:
    return ", ".join(f"'{stage.name}'" for stage in stages) or "no stage"


def _pull_stage(root: Path, stage: Stage, remote: Remote, targets: list[str], say) -> dict[str, int]:
    """``pull`` of one stage (its steps 1 and 3–5) from a reachable remote."""
    untouched = f"Nothing was pulled and {stage.results}/ is untouched."
    # Always the stage's targets (everything the pushed results hold), plus any asked for.
    targets = stage.targets + [target for target in targets if target not in stage.targets]
    since = time.time()
    say(f"{stage.name}: the results of {', '.join(stage.configfiles) or DEFAULT_CONFIG} in {stage.results}/")
    deps, _, other = stage_changes(root, stage.name)
    if deps or other:
        say("the code or config differs from the commit that pushed the results (dvc status: "
            + ", ".join([*deps, *other]) + "); Snakemake will judge which jobs that affects")

    say(f"fetching the results of dvc.lock from '{remote.name}' ({remote.url}) …")
    fetched = dvc(root, "fetch", "--remote", remote.name, stage.name)
    _, outs, _ = stage_changes(root, stage.name)
    missing = [path for path, how in outs.items() if how == "not in cache"]
    if fetched.returncode != 0 or missing:
        output = fetched.stdout + fetched.stderr
        count = len(re.findall(r"^md5: ", output, flags=re.M)) + len(re.findall(r"failed to transfer", output))
        raise SharingError(
            f"the DVC remote '{remote.name}' ({remote.url}) does not hold the results of '{stage.name}' recorded "
            "in dvc.lock" + (f" ({count} files missing)" if count else "")
            + f": were they pushed there (`{PROG} push`)? {untouched}"
            + (f"\n{_tail(fetched, 8)}" if fetched.returncode != 0 else ""))

    verify_fetched(root, stage)
    unrecorded = _pushed_without_provenance(root, stage)
    if unrecorded:
        raise SharingError(
            f"the pushed {', '.join(unrecorded)} hold no {PROVENANCE} (pushed by a plain `dvc push`?): without "
            "Snakemake's records of them a change of code or config since the push would go unseen. Nothing "
            f"was checked out. Their author shares them with `{PROG} push` (`make push`) and commits dvc.lock.")
    _check_pushed_provenance(root, stage)
    kept = {path.relative_to(root).as_posix() for path in _result_files(root, stage.outs)}
    checkout = dvc(root, "checkout", stage.name)  # never --force: local changes stay
    if checkout.returncode != 0:
        listed = [line.strip() for line in (checkout.stdout + checkout.stderr).splitlines()
                  if line.strip() and not line.startswith(("ERROR", "WARNING"))]
        raise SharingError(
            "refusing to overwrite local results: these files differ from the pushed ones "
            "(DVC would have to replace or delete them):\n  " + "\n  ".join(listed[:40] or [_tail(checkout)])
            + f"\nNothing was deleted. Move {stage.results}/ aside (or push those results first) and pull again.")

    _, outs, _ = stage_changes(root, stage.name)
    if outs:
        raise SharingError(f"after the pull, `dvc status {stage.name}` still reports changed results: {outs}")

    restored, dated = restore_provenance(root, stage, since, kept)
    say(f"restored Snakemake's records of {restored} pulled files (params, code fingerprints, input "
        f"checksums) and dated {dated} files in the order they were made")

    planned = plan(root, stage, targets)
    if planned:
        say(f"pulled; nothing was run. Snakemake plans {sum(n for n, _ in planned.values())} jobs "
            f"(`snakemake -n {shlex.join(stage.options)}` for the details; run them with `snakemake`):\n"
            f"{_describe_plan(planned)}")
    else:
        say("pulled; the results are up to date: `snakemake -n` plans nothing")
    return {rule: count for rule, (count, _) in planned.items()}


def push(root: Path, remote_name: str | None = None, stage_name: str = STAGE, say=say_now) -> None:
    """Record the (complete, up to date) results in dvc.lock and push them to the remote: those of the
    stage ``stage_name`` names, or of every config whose results folder is here."""
    root = root.resolve()
    stages = load_stages(root, stage_name)
    if stage_name == STAGE:
        stages = [stage for stage in stages if (root / stage.results).is_dir()]
        if not stages:
            raise SharingError(
                "nothing to push: none of the results folders of dvc.yaml's stages is here ("
                + ", ".join(f"{stage.results}/" for stage in load_stages(root, stage_name))
                + "). Run the workflow first (`dvc repro workflow@default`, or snakemake).")
    remote = resolve_remote(root, remote_name)
    reason = unreachable(root, remote)
    if reason:
        raise SharingError(f"the DVC remote '{remote.name}' ({remote.url}) is unreachable: {reason}. Nothing was pushed.")
    for stage in stages:
        with records_as_made(root, stage.results) as touched:
            pending = plan(root, stage, stage.targets)
        if pending:
            raise SharingError(_not_up_to_date(stage, pending, touched)
                               + (" Nothing was pushed." if stage is stages[0] else ""))
    for stage in stages:
        _push_stage(root, stage, remote, say)
    say("now commit dvc.lock (with the code and config it records), e.g. "
        "`git add dvc.lock dvc.yaml .dvc/config && git commit -m 'results' && git push`")


def _not_up_to_date(stage: Stage, pending: dict[str, tuple[int, set[str]]], touched: dict[str, str]) -> str:
    """Why ``push`` refuses a stage: the first jobs Snakemake plans and their reasons, and what to run."""
    forced = sorted(set(touched.values()) & set(pending))
    return (f"refusing to push {stage.results}/: the results of '{stage.name}' are not complete and up to date for "
            f"this config and code — Snakemake plans {sum(n for n, _ in pending.values())} jobs:\n"
            + _describe_plan(dict(list(pending.items())[:8])) + ("\n  …" if len(pending) > 8 else "")
            + (f"\n{len(touched)} files, e.g. {next(iter(touched))}, were marked up to date by `snakemake --touch`: "
               "they are judged by the records of the runs that made them. Make them for this config and code with "
               f"`snakemake --forcerun {' '.join(forced)}` (and the options of `{stage.cmd}`), then push." if forced
               else f"\nRun the workflow first (`dvc repro {stage.name}` or `{stage.cmd}`)."))


def _push_stage(root: Path, stage: Stage, remote: Remote, say) -> None:
    """``push`` of one stage whose results Snakemake judges complete and up to date."""
    dirty = _git_changes(root, stage.deps)
    if dirty:
        say("note: dvc.lock will record uncommitted changes of " + "; ".join(line.strip() for line in dirty)
            + " — commit them together with dvc.lock")
    deps, outs, other = stage_changes(root, stage.name)
    if _lock_entry(root, stage.name) and not (deps or outs or other):
        say(f"{stage.name}: {stage.results}/ is as dvc.lock records it; pushing what the remote lacks of it")
    else:
        write_provenance(root, stage)
        dvc(root, "commit", "--force", stage.name, check=True)
    say(f"pushing {stage.results}/ ({stage.name}) to '{remote.name}' ({remote.url}) …")
    pushed = dvc(root, "push", "--remote", remote.name, stage.name)
    if pushed.returncode != 0:
        raise SharingError(f"`dvc push {stage.name}` to '{remote.name}' ({remote.url}) failed:\n{_tail(pushed)}")
    say(pushed.stdout.strip().splitlines()[-1] if pushed.stdout.strip() else "pushed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pull_parser = sub.add_parser("pull", help="fetch the pushed results with Snakemake's records of them; report its plan, run nothing")
    pull_parser.add_argument("targets", nargs="*",
                             help="more Snakemake targets to plan for, besides the stage's own")
    push_parser = sub.add_parser("push", help="record the results in dvc.lock and push them to the remote")
    for each in (pull_parser, push_parser):
        each.add_argument("--remote", "-r", help="DVC remote name (default: the default remote)")
        each.add_argument("--stage", default=STAGE,
                          help=f"one config's stage of dvc.yaml, e.g. {STAGE}@mnist (default: every config's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "pull":
            pull(Path.cwd(), args.remote, args.targets, args.stage)
        else:
            push(Path.cwd(), args.remote, args.stage)
    except SharingError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
