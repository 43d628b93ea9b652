"""docs/api.md's examples run: every ```python block of the page, each in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def code_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def run_block(python: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """One block run as a script by the interpreter ``python``, in ``cwd``."""
    return subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_every_api_entry_has_an_example():
    import robustcert

    text = "\n".join(code_blocks(API_DOC))
    assert len(code_blocks(API_DOC)) >= 6
    missing = [name for name in robustcert.__all__ if name not in text]
    assert not missing, f"API names without an example in docs/api.md: {missing}"


@pytest.mark.parametrize("index", range(len(code_blocks(API_DOC))))
def test_api_doc_example_runs(index: int, tmp_path: Path):
    result = run_block(sys.executable, code_blocks(API_DOC)[index], tmp_path)
    assert result.returncode == 0, f"docs/api.md example {index + 1} failed:\n{result.stdout}\n{result.stderr}"
