"""The text front end: what nc, telnet, socat and s_client users speak.

Sans-IO, like every front end (see `lines.LineFrontEnd` for what they share:
the line pump, the state table, the budgets and commands): a line is decoded
and cleaned by `wire.decode_line`, the name prompt comes first, `/name args`
runs a command from the table, `//` escapes a line that starts with `/`, and
anything else is said to the user's lobby. Output is ANSI (colour and the
go-chat-server prompt redraw) or plain, per connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from gochat.command_table import Command
from gochat.commands import REGISTRY
from gochat.errors import UsageError, UserError
from gochat.events import Event, Farewell, Level, Notice, Raw
from gochat.frontends.lines import Host, IllegalTransition, LineFrontEnd, State
from gochat.ratelimit import wait_phrase
from gochat.render import PROMPT, TextMode, render, text_mode
from gochat.wire import decode_line, encode

if TYPE_CHECKING:
    from gochat.transport import Connection


class TextHost(Host, Protocol):
    """A text front end's server also owns the banner (rendered once per mode)."""

    def banner(self, colour: bool) -> bytes: ...


__all__ = ["NAME_PROMPT", "IllegalTransition", "State", "TextFrontEnd"]

DIALECT = "text"
NAME_PROMPT = "Enter your username: "
PROMPT_BYTES = PROMPT.encode()


class TextFrontEnd(LineFrontEnd):
    """One nc/telnet user's dialect: the name prompt, `/` commands, plain or ANSI output."""

    __slots__ = ()

    def __init__(self, server: TextHost, link: Connection) -> None:
        super().__init__(server, link, text_mode(server.config.color_default))

    @property
    def colour(self) -> bool:
        """ANSI output (`/color on`) or plain; the client's mode is always a TextMode here."""
        mode = self.client.mode
        return isinstance(mode, TextMode) and mode.colour

    # -- the dialect ------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return DIALECT

    def refusal(self, text: str) -> bytes:
        return encode(text + "\n")

    def greet(self) -> None:
        host = cast(TextHost, self.server)  # set from a TextHost in __init__; no slot per user
        self.link.write(host.banner(self.colour))

    def handle_line(self, line: bytes) -> None:
        text = decode_line(line).strip()
        if self.state is State.NAME:
            self._choose_name(text)
        else:
            self._dispatch(text)

    def line_too_long(self, limit: int) -> None:
        self._send(
            Notice(f"Line too long: the limit is {limit} bytes; it was discarded.", Level.WARN)
        )

    def rate_limited(self, wait: int) -> None:
        self._send(Notice(f"Rate limited! {wait_phrase(wait)}", Level.WARN))

    def command_refused(self, command: Command, error: UserError) -> None:
        if isinstance(error, UsageError):
            detail = f" ({error.detail})" if error.detail else ""
            self._send(Notice(f"Usage: {command.usage}{detail}", Level.WARN))
        else:
            self.refused(error)

    def refused(self, error: UserError) -> None:
        self._send(Notice(str(error), Level.ERROR))

    def command_failed(self, command: Command) -> None:
        self._send(Notice("Something went wrong on our side; it has been logged.", Level.ERROR))

    def farewell(self, text: str) -> None:
        self._send(Farewell(text))

    def _choose_name(self, name: str) -> None:
        if not name:
            self._prompt_name()
            return
        if name.lower() == "/quit":
            self.quit("quit at the name prompt", "Goodbye!")
            return
        try:
            self.log_in(name)
        except UserError as exc:
            self._send(Notice(str(exc), Level.ERROR))
            self._prompt_name()

    def _dispatch(self, text: str) -> None:
        if not text:
            if self.colour:
                self.client.write(PROMPT_BYTES)
            return
        if text[0] == "/" and not text.startswith("//"):
            name, _, rest = text[1:].partition(" ")
            command = REGISTRY.get(name, DIALECT)
            if command is None:
                self._send(
                    Notice(f"Unknown command /{name}. Type /help for the list.", Level.ERROR)
                )
                return
            try:
                args = command.read_words(rest.strip())
            except UsageError as exc:
                self.command_refused(command, exc)
                return
            self.dispatch(command, args)
            return
        if text.startswith("//"):
            text = text[1:]
        self.say(text)

    def _send(self, event: Event) -> None:
        # No "> " chat prompt before the user is chatting: the name prompt follows.
        self.client.write(render(event, self.colour, prompt=self.state is State.CHAT))

    def _prompt_name(self) -> None:
        self._send(Raw(NAME_PROMPT))
