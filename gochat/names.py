"""The rules for user and lobby names, shared so both read the same way."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9_-]{2,20}")

RESERVED_USER_NAMES = frozenset(
    {
        "admin",
        "administrator",
        "ai",
        "anonymous",
        "bot",
        "everyone",
        "gochat",
        "here",
        "mod",
        "moderator",
        "nobody",
        "operator",
        "root",
        "rox",
        "server",
        "system",
        "sysop",
    }
)


def name_key(name: str) -> str:
    """The case-insensitive identity of a name: 'Alice' and 'alice' are one user."""
    return name.casefold()


def lobby_name(text: str) -> str:
    """A lobby name as typed, with the IRC-style leading '#' people add by habit removed."""
    return text[1:] if text.startswith("#") else text


def name_problem(name: str, what: str = "Name") -> str | None:
    """Why `name` is not acceptable, or None if it is."""
    if not NAME_RE.fullmatch(name):
        return f"{what} must be 2-20 characters: letters, digits, _ or -."
    return None


def user_name_problem(name: str) -> str | None:
    """Why `name` cannot be a user name (uniqueness is the ClientManager's job)."""
    problem = name_problem(name)
    if problem is None and name_key(name) in RESERVED_USER_NAMES:
        return f"The name {name!r} is reserved. Pick another."
    return problem
