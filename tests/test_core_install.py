"""The library alone: a fresh venv (no system site-packages) with only the core install
(``pip install -c constraints.txt -e .``: torch, numpy, scipy) runs every example of docs/api.md.

Slow (minutes: it installs torch into the venv); marked ``core_install``. Skipped, with pip's words,
where pip cannot reach the package registry.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_api_docs import API_DOC, code_blocks, run_block

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_ONLY = ("snakemake", "dvc", "pandas", "matplotlib", "statsmodels", "scikit-learn", "torchvision",
                 "jsonschema", "PyYAML")


def core_install(venv: Path) -> Path:
    """The python of a fresh venv holding robustcert's core install (constraints.txt's versions)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the build backend, which the install fetches first: where pip cannot get it, it can get nothing
    probe = subprocess.run([str(python), "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(venv / "probe"),
                            "setuptools>=77"], capture_output=True, text=True, timeout=600)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach the package registry: {(probe.stdout + probe.stderr).strip()[-500:]}")
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt"),
                             "-e", str(REPO)], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, f"the core install failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return python


@pytest.mark.core_install
def test_core_install_runs_the_api_examples_without_the_workflow_extra(tmp_path: Path):
    python = core_install(tmp_path / "venv")
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert {"torch", "numpy", "scipy", "robustcert"} <= installed
    assert installed.isdisjoint(name.lower() for name in WORKFLOW_ONLY)
    for index, code in enumerate(code_blocks(API_DOC)):
        result = run_block(str(python), code, tmp_path)
        assert result.returncode == 0, f"docs/api.md example {index + 1} failed:\n{result.stdout}\n{result.stderr}"
