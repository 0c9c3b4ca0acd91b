"""Every example script runs offline and succeeds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script, tmp_path):
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip(), "an example should show what it did"


def test_there_are_examples():
    assert len(EXAMPLES) >= 5
