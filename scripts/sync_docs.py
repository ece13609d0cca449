"""Rewrite .env.example and README's settings table from gochat.config.

Run after adding or changing a setting: `.venv/bin/python scripts/sync_docs.py`.
tests/test_config.py fails until the two files agree with the code.
"""

from __future__ import annotations

import pathlib
import re

from gochat.cli import env_template
from gochat.config import settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
START, END = "<!-- settings-table -->", "<!-- /settings-table -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f, default in settings():
        flag = f" (`{f.metadata['flag']}`)" if f.metadata["flag"] else ""
        shown = f"`{default}`" if default != "" else "unset"
        rows.append(f"| `{f.metadata['env']}`{flag} | {shown} | {f.metadata['help']} |")
    return "\n".join(rows)


def main() -> None:
    (ROOT / ".env.example").write_text(env_template(), encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = f"{START}\n{table()}\n{END}"
    if END in readme:
        readme = re.sub(
            re.escape(START) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S
        )
    else:
        readme = readme.replace(START, block)
    (ROOT / "README.md").write_text(readme, encoding="utf-8")


if __name__ == "__main__":
    main()
