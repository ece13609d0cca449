"""The quality gates run with the tests: ruff lint, ruff format and mypy --strict.

They are tests so that README's one test command is the whole check, and a
change that breaks the style or the types fails like a change that breaks
behaviour.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

GATES = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "--quiet", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "--quiet", "."],
    "mypy --strict": [sys.executable, "-m", "mypy", "--strict", "gochat"],
}


@pytest.mark.parametrize("gate", list(GATES))
def test_quality_gate(gate: str) -> None:
    """The gate passes on the whole tree; its own output is the failure message."""
    result = subprocess.run(
        GATES[gate], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{gate} failed:\n{result.stdout}{result.stderr}"
