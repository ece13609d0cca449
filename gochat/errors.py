"""Errors that say whose fault they are.

A `UserError` is the user's doing and becomes one line to that user; anything
else raised while handling a line is our bug: it is logged with a traceback
and the user gets a generic line, never the exception's text. A
`StartupError` is the operator's to fix: the daemon cannot start as configured.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done; the text is shown to them.

    `code` is the stable name a program gets (docs/protocol.md's error codes);
    the text is for people and may change.
    """

    def __init__(self, text: str = "", *, code: str = "refused") -> None:
        super().__init__(text)
        self.code = code


class UsageError(UserError):
    """A command was called with the wrong arguments; the registry adds the usage."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, code="bad_argument")
        self.detail = detail


class StartupError(RuntimeError):
    """The daemon cannot start as configured; the message says why and what to fix."""
