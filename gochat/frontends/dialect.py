"""What a line dialect must say: the hooks `lines.LineFrontEnd` calls, and nothing else.

A dialect (text, JSON; IRC next) is a parser and a voice: `LineFrontEnd`
decides when a line is too long, when a budget refuses, when a command ran or
failed, and asks the dialect to say so in its own words. Kept apart from the
mechanism, the list of what a new dialect must write is this one short class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from gochat.command_table import Command
from gochat.errors import UserError


class Dialect(ABC):
    """The words of one front end; every answer a line-based connection gives goes here."""

    __slots__ = ()

    @property
    @abstractmethod
    def dialect(self) -> str:
        """The front end's name in the command table ("text", "json")."""

    @abstractmethod
    def greet(self) -> None:
        """The first thing a new connection is told (a banner and prompt; a hello)."""

    @abstractmethod
    def handle_line(self, line: bytes) -> None:
        """One complete line, in order; NAME or CHAT state."""

    @abstractmethod
    def line_too_long(self, limit: int) -> None:
        """A line past the cap was discarded."""

    @abstractmethod
    def rate_limited(self, wait: int) -> None:
        """A line was refused by a budget; say how long to wait."""

    @abstractmethod
    def refused(self, error: UserError) -> None:
        """Something the user asked for was refused; `error` says why."""

    @abstractmethod
    def command_refused(self, command: Command, error: UserError) -> None:
        """The command was refused (a usage error is a `UsageError`)."""

    @abstractmethod
    def command_failed(self, command: Command) -> None:
        """Our bug broke the command (it is logged): say so, without detail."""

    def out_of_phase(self, command: Command) -> None:
        """`command` cannot be sent now (before logging in, or after)."""
        self.refused(UserError(f"/{command.name} can't be used now."))

    def refused_quietly(self, wait: int) -> None:  # noqa: B027 (optional hook)
        """A budget refused another line within a second of the last answer (text: silence)."""

    def command_done(self, command: Command) -> None:  # noqa: B027 (optional hook)
        """The command ran (a dialect that acknowledges commands says so here)."""

    @abstractmethod
    def farewell(self, text: str) -> None:
        """The last thing said before closing."""
