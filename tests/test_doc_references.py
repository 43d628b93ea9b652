"""No doc, docstring, comment or config of the project names a project file that does not exist (the tests,
which name the files they create, are not read).

A reference is a path under one of the project's own folders (``docs/api.md``, ``config/mnist.yaml``,
``scripts/certify.py``, ``src/robustcert/api.py``, ``rules/common.smk``…); templates (``<stage>``,
``{m}``, ``*``) and files the workflow writes (``results/…``) are not checked. A Markdown link
(``[text](methods.md)``) is checked relative to the page.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("docs", "config", "scripts", "src", "rules", "tests", "benchmarks", "envs", "profiles", "report", ".ci")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w)" % "|".join(re.escape(f) for f in FOLDERS))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
TEMPLATE = re.compile(r"[<>{}*…]")
# files a reader is told to create (docs/sharing.md: a config of one's own)
READERS_FILES = {"config/mine.yaml"}


def project_files() -> list[str]:
    """The tracked files and the untracked ones git does not ignore, relative to the repository."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return [name for name in listed if name and (REPO / name).is_file()]


def texts() -> dict[str, str]:
    """The text of every doc, source, config and rule file."""
    suffixes = {".md", ".py", ".yaml", ".yml", ".smk", ".toml", ".cff", ".txt", ""}
    out = {}
    for name in project_files():
        path = REPO / name
        if name.startswith("tests/") or path.suffix not in suffixes:  # tests name the files they create
            continue
        try:
            out[name] = path.read_text()
        except UnicodeDecodeError:
            continue
    return out


def missing_references() -> list[str]:
    """``file: reference`` for every named project path that does not exist."""
    missing = []
    for name, text in texts().items():
        for match in PATH.finditer(text):
            reference = match.group(1).rstrip(".")
            if TEMPLATE.search(text[match.start():match.end() + 1]) or reference.endswith("/"):
                continue
            if reference not in READERS_FILES and not (REPO / reference).exists():
                missing.append(f"{name}: {reference}")
        if name.endswith(".md"):
            for match in LINK.finditer(text):
                target = match.group(1)
                if "://" in target or target.startswith("mailto:") or TEMPLATE.search(target):
                    continue
                if not ((REPO / name).parent / target).exists():
                    missing.append(f"{name}: link {target}")
    return missing


def test_every_named_project_file_exists():
    assert missing_references() == []


def test_nothing_cites_an_internal_document():
    citing = [name for name, text in texts().items() if re.search(r"(?<![\w/])METHODS\.md", text)]
    assert citing == []
