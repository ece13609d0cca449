"""The JSON-lines front end: bots and programs, one JSON object per line (docs/protocol.md).

Everything that is a rule (the line pump, the state table, the budgets, the
command table, closing) is `lines.LineFrontEnd`'s, shared with the text front
end; here a line is decoded by `json_codec.decode_request`, a request becomes a
call of the same command table (or `ChatCore.say`), and every answer and event
is a JSON line. Each line this connection gets is numbered (`seq`), on top of
the bytes shared with every other JSON recipient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gochat import __version__
from gochat.command_table import Command
from gochat.commands import REGISTRY
from gochat.errors import UsageError, UserError
from gochat.events import Event, Farewell
from gochat.frontends.json_codec import (
    DIALECT,
    Id,
    RequestError,
    decode_request,
    encode_error,
    encode_event,
    encode_hello,
    encode_ok,
    with_seq,
)
from gochat.frontends.lines import Host, LineFrontEnd, State

if TYPE_CHECKING:
    from gochat.transport import Connection


class JsonMode:
    """JSON recipients: one encoded line per event, the same bytes for all of them."""

    __slots__ = ()

    def render(self, event: Event) -> bytes:
        return encode_event(event) or b""

    def __repr__(self) -> str:
        return "<JsonMode>"


JSON = JsonMode()


class JsonFrontEnd(LineFrontEnd):
    """One bot's or program's connection."""

    __slots__ = ("re", "seq")

    def __init__(self, server: Host, link: Connection) -> None:
        super().__init__(server, link, JSON)
        self.seq = 0
        link.stamp = self._number
        self.re: Id | None = None  # the id of the request being answered

    # -- the dialect ------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return DIALECT

    @staticmethod
    def _offered(name: str) -> Command | None:
        return REGISTRY.get(name, DIALECT)

    def refusal(self, text: str) -> bytes:
        return encode_error("refused", text)

    def greet(self) -> None:
        hello = encode_hello(__version__, max_line_bytes=self.server.config.max_line_bytes)
        self.client.write(hello)

    def handle_line(self, line: bytes) -> None:
        if not line.strip():
            return  # a blank line between requests is no request
        request = decode_request(line, self._offered)
        if isinstance(request, RequestError):
            self.client.write(request.encode())
            return
        self.re = request.id
        self.dispatch(request.command, request.args)

    def line_too_long(self, limit: int) -> None:
        text = f"Line too long: the limit is {limit} bytes; it was discarded."
        self.client.write(encode_error("line_too_long", text))

    def rate_limited(self, wait: int) -> None:
        text = f"Rate limited: wait {wait} s."
        self.client.write(encode_error("rate_limited", text, re=self.re, retry_after=wait))

    def refused_quietly(self, wait: int) -> None:
        self.rate_limited(wait)  # every request gets an answer, with its id

    def command_refused(self, command: Command, error: UserError) -> None:
        if isinstance(error, UsageError):
            self._error("bad_argument", str(error) or f"Usage: {command.usage}")
        else:
            self.refused(error)

    def refused(self, error: UserError) -> None:
        self._error(error.code, str(error))

    def command_failed(self, command: Command) -> None:
        self._error("internal", "Something went wrong on our side; it has been logged.")

    def command_done(self, command: Command) -> None:
        if self.active:
            self.client.write(encode_ok(self.re))

    def out_of_phase(self, command: Command) -> None:
        if self.state is State.NAME:
            self._error("not_logged_in", 'Log in first: {"cmd":"login","name":...}.')
        else:
            self._error("already_logged_in", f"You are logged in as {self.client.name}.")

    def farewell(self, text: str) -> None:
        self.client.write(encode_event(Farewell(text)) or b"")

    def _error(self, code: str, text: str) -> None:
        self.client.write(encode_error(code, text, re=self.re))

    def _number(self, line: bytes) -> bytes:
        """Number each line as it is handed to the transport (`seq`), so a client can see a
        gap; lines a slow reader skipped were never handed over, and are told instead."""
        if not line:
            return line
        self.seq += 1
        return with_seq(line, self.seq)
