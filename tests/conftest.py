"""Shared fixtures: the repository, a Snakemake runner, and tiny datasets in real formats."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs", "profiles", "report"]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 2400,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``snakemake`` of this environment in ``workdir`` (``env``: more environment variables)."""
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "ROBUSTCERT_DEVICE": os.environ.get("ROBUSTCERT_DEVICE", "cpu"), **(env or {})}
    result = subprocess.run([str(exe), *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def copy_workflow(target: Path) -> Path:
    """``target``, a new folder holding a copy of the workflow (not of results/)."""
    target.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A copy of the workflow (not of results/) in a temporary folder."""
    return copy_workflow(tmp_path / "wf")


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data root with a 400 + 100 image MNIST in torchvision's raw idx format."""
    from formats import write_mnist

    root = tmp_path / "data"
    write_mnist(root)
    return root
