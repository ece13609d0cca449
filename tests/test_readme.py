"""README's Quick start is what CI runs: the server command and the test command."""

from __future__ import annotations

import os
import re

from .conftest import ROOT

SERVER_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/python -m gochat"


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def _quick_start_commands() -> list[str]:
    readme = _read("README.md")
    section = re.search(r"^## Quick start\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README has no '## Quick start' section"
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section.group(1), re.S)]


def test_quick_start_shows_the_server_and_the_test_command():
    """Two commands: run the server, and install + test."""
    commands = _quick_start_commands()
    assert SERVER_COMMAND in commands
    assert "./scripts/test" in commands
    assert len(commands) == 2, commands


def test_ci_runs_the_readme_test_command():
    """.ci/run's last line is README's test command, verbatim."""
    lines = [line.strip() for line in _read(".ci", "run").splitlines()]
    last = [line for line in lines if line and not line.startswith("#")][-1]
    assert last in _quick_start_commands()
    assert last != SERVER_COMMAND


def test_test_script_installs_the_clients_and_passes_arguments_to_pytest():
    """scripts/test is executable, strict, installs the client tools and runs pytest "$@"."""
    path = os.path.join(ROOT, "scripts", "test")
    assert os.access(path, os.X_OK)
    script = _read("scripts", "test")
    assert "set -euo pipefail" in script
    for package in ("netcat-openbsd", "telnet", "socat", "openssl"):
        assert package in script
    assert "pip install -q -e '.[test]'" in script
    assert re.search(r'^exec \.venv/bin/python -m pytest -q "\$@"$', script, re.M)


def test_the_design_picture_names_modules_that_exist():
    """README's Design diagram and docs/design.md's table name real modules: a rename
    that leaves them behind fails here."""
    readme = re.search(r"^## Design\n(.*?)^## ", _read("README.md"), re.S | re.M)
    assert readme, "README has no '## Design' section"
    named = set(re.findall(r"[\w/]+\.py", readme.group(1) + _read("docs", "design.md")))
    assert len(named) > 10
    modules = {
        os.path.relpath(os.path.join(folder, file), ROOT)
        for folder, _, files in os.walk(os.path.join(ROOT, "gochat"))
        for file in files
        if file.endswith(".py")
    }
    for name in named:
        found = os.path.exists(os.path.join(ROOT, name)) or [
            m for m in modules if m.endswith("/" + name)
        ]
        assert found, f"{name} is named in the design docs but does not exist"
