"""What every line-based front end shares: the state table, the budgets, running
commands from the table, and closing.

A dialect (text, JSON) subclasses `LineFrontEnd` and says how a line is parsed
and how answers look (the hooks of `dialect.Dialect`); its lines come in order
and in turn from a `pump.LinePump`. The rules (what spends the budget, when a flooder is cut
off, that a refused command costs nothing, that later lines wait while a
command runs) are here, once. Sans-IO: all output goes through `self.link`.

States, and what moves between them (anything else is a bug, not a flag):

    NAME   --a free, valid name-->  CHAT
    NAME   --quit, name timeout, close-->  CLOSED
    CHAT   --quit, idle timeout, flood, close-->  CLOSED
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from gochat.clients import Client, OutputMode
from gochat.command_table import Args, Command, Cost, Phase, Services
from gochat.commands import REGISTRY, check_allowed
from gochat.errors import UserError
from gochat.events import Skipped
from gochat.frontends.dialect import Dialect
from gochat.frontends.pump import LinePump
from gochat.ratelimit import MessageLimiter, Verdict

if TYPE_CHECKING:
    from gochat.chat import ChatCore
    from gochat.config import Config
    from gochat.transport import Connection

log = logging.getLogger("gochat.frontend")

SAY = REGISTRY["say"]
LOOKUPS_PER_MESSAGE = 4  # /users, /lobbies, /history allowed per message of the rate limit


class State(Enum):
    NAME = "name"
    CHAT = "chat"
    CLOSED = "closed"


MOVES = {
    State.NAME: frozenset({State.CHAT, State.CLOSED}),
    State.CHAT: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}
"""The legal transitions; `_enter` refuses any other (h11's state table, in small)."""


class Host(Services, Protocol):
    """What a front end needs from the server that owns it (gochat.server.ChatServer)."""

    @property
    def config(self) -> Config: ...

    @property
    def core(self) -> ChatCore: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def monotonic(self) -> float: ...

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class IllegalTransition(RuntimeError):
    """A bug: the front end tried to move between states that do not connect."""


class LineFrontEnd(Dialect, LinePump):
    """One user's connection, for a dialect that speaks in lines."""

    __slots__ = (
        "client",
        "last_activity",
        "link",
        "lookups",
        "server",
        "state",
        "task",
    )

    link: Connection

    def __init__(self, server: Host, link: Connection, mode: OutputMode) -> None:
        config = server.config
        self.server = server
        self.link = link
        self.state = State.NAME
        self.start_lines(config.max_line_bytes)
        self.last_activity = 0.0
        self.task: asyncio.Task[None] | None = None
        self.lookups: MessageLimiter | None = None  # made on the first /users, /lobbies...
        self.client = Client(
            "",
            _write_nothing,
            limiter=MessageLimiter.create(
                config.rate_messages, config.rate_window, config.flood_factor
            ),
            mode=mode,
        )

    def skipped(self, lobby: str, count: int) -> bytes:
        """The line saying a slow reader skipped `count` chat lines (transport.FrontEnd)."""
        return self.client.mode.render(Skipped(lobby, count))

    # -- what handlers may use (commands.Context) ------------------------------

    @property
    def core(self) -> ChatCore:
        return self.server.core

    @property
    def ip_key(self) -> str:
        return self.link.ip_key

    @property
    def active(self) -> bool:
        return self.state is not State.CLOSED

    def monotonic(self) -> float:
        return self.server.monotonic()

    def quit(self, reason: str, farewell: str) -> None:
        """Say `farewell` and close once it is written."""
        if self.state is State.CLOSED:
            return
        self.farewell(farewell)
        self._close(reason)

    # -- the connection's side (transport.FrontEnd) ----------------------------

    def start(self) -> None:
        self.client.address = self.link.address
        self.client.write = self.link.write
        self.last_activity = self.server.loop.time()
        self.link.set_timer(self.last_activity + self.server.config.name_timeout)
        self.greet()

    def receive(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self.last_activity = self.server.loop.time()
        self.feed(data)

    def end_of_input(self) -> None:
        if self.task is None and self.lines_idle and self.state is not State.CLOSED:
            self.input_ended()

    # -- what the pump asks of its owner (pump.LinePump) ---------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None

    def input_ended(self) -> None:
        self._close("client closed the connection")

    def later(self, callback: Callable[[], None]) -> None:
        self.server.loop.call_soon(callback)

    def timer_expired(self) -> None:
        """Name timeout in NAME; idle timeout in CHAT, re-armed lazily after activity."""
        config = self.server.config
        if self.state is State.NAME:
            self.quit(
                "name timeout",
                f"No name chosen within {config.name_timeout:g} seconds. Goodbye.",
            )
        elif self.state is State.CHAT:
            deadline = self.last_activity + config.idle_timeout
            if self.server.loop.time() >= deadline:
                self.quit(
                    "idle timeout",
                    f"Disconnected after {config.idle_timeout:g} seconds of inactivity.",
                )
            else:
                self.link.set_timer(deadline)

    def closing(self, reason: str, *, abort: bool) -> None:
        if abort:
            self.core.counters.sendq_disconnects += 1
        self._finish(reason, abort=abort)

    def lost(self) -> None:
        if self.client.name:
            self.core.logout(self.client, "disconnected")

    def shutdown(self, notice: str) -> None:
        self.quit("server shutdown", notice)

    def who(self) -> str:
        name, address = self.client.name, self.link.address
        return f"{name}@{address}" if name else address

    def log_in(self, name: str) -> None:
        """Take `name` and join the chat, or raise the `UserError` saying why not."""
        self.core.log_in(self.client, name)
        self._enter(State.CHAT)
        self.link.set_timer(self.last_activity + self.server.config.idle_timeout)

    # -- commands from the table ------------------------------------------------------

    def dispatch(self, command: Command, args: Args) -> None:
        """Run `command` if this is its phase of the session (see `execute`)."""
        phase = command.phase
        if phase is not Phase.ANY and (phase is Phase.CHAT) is not (self.state is State.CHAT):
            self.out_of_phase(command)
            return
        self.execute(command, args)

    def execute(self, command: Command, args: Args) -> None:
        """Run `command` if its budget allows; a refused one gives the charge back."""
        charged = None
        if command.cost is Cost.MESSAGE:
            if not self.within_rate():
                return
            charged = self.client.limiter
        elif command.cost is Cost.LOOKUP and not self._within_lookups():
            return
        self._run(command, args, charged)

    def say(self, text: str) -> None:
        """A line that is no command: said to the user's lobby, as the `say` command."""
        self.execute(SAY, Args({"text": text}))

    def _within_lookups(self) -> bool:
        """Listings are free of the message budget but have their own: /users in a
        500-user lobby, repeated, would otherwise cost everyone their latency."""
        if self.lookups is None:
            config = self.server.config
            per_window = LOOKUPS_PER_MESSAGE * config.rate_messages
            self.lookups = MessageLimiter.create(
                per_window, config.rate_window, config.flood_factor
            )
        return self.within_rate(self.lookups)

    def within_rate(self, limiter: MessageLimiter | None = None) -> bool:
        """Charge one line to a budget (the message budget by default); False if refused."""
        limiter = limiter or self.client.limiter
        verdict, wait = limiter.check(self.server.monotonic())
        if verdict is Verdict.SEND:
            return True
        self.core.counters.rate_limited += 1
        if verdict is Verdict.REFUSE_WITH_NOTICE:
            self.rate_limited(wait)
        elif verdict is Verdict.REFUSE_SILENTLY:
            self.refused_quietly(wait)
        elif verdict is Verdict.DISCONNECT:
            log.warning("flood: disconnecting %s", self.who())
            self.core.counters.flood_disconnects += 1
            self.quit("flooding", "Disconnected for flooding. Slow down next time.")
        return False

    # -- commands -----------------------------------------------------------------------

    def _run(self, command: Command, args: Args, charged: MessageLimiter | None) -> None:
        """Run `command`; a refused one gives back what it was `charged` from the budget."""
        try:
            check_allowed(self, command)
            result = command.handler(self, args)
        except Exception as exc:
            self._report(command, exc, charged)
            return
        if result is None:
            self.command_done(command)
            return
        coroutine: Coroutine[Any, Any, None] = result  # type: ignore[assignment]
        self.task = self.server.spawn(coroutine)
        self.task.add_done_callback(functools.partial(self._command_done, command, charged))

    def _command_done(
        self, command: Command, charged: MessageLimiter | None, task: asyncio.Task[None]
    ) -> None:
        self.task = None
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._report(command, error, charged)
            elif self.active:
                self.command_done(command)
        self.resume_lines()

    def _report(self, command: Command, exc: BaseException, charged: MessageLimiter | None) -> None:
        if isinstance(exc, UserError):
            if charged is not None:
                charged.refund()  # refused: it reached nobody, so it costs nothing
            self.command_refused(command, exc)
        else:
            log.error("/%s failed for %s", command.name, self.who(), exc_info=exc)
            self.command_failed(command)

    # -- helpers --------------------------------------------------------------------

    def _enter(self, state: State) -> None:
        if state not in MOVES[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {state.value}")
        self.state = state

    def _close(self, reason: str) -> None:
        """Close at this front end's request: leave the chat, flush, close the connection."""
        if self.state is State.CLOSED:
            return
        self._finish(reason, abort=False)
        self.link.close()

    def _finish(self, reason: str, *, abort: bool) -> None:
        """Stop this user's I/O; leave the chat now unless mid-fan-out (abort)."""
        if self.state is State.CLOSED:
            return
        logged_in = self.state is State.CHAT
        self._enter(State.CLOSED)
        self.client.detach()
        if self.task is not None:
            self.task.cancel()
        log.debug("disconnect %s: %s", self.who(), reason)
        self.core.counters.disconnects[reason] += 1
        if logged_in and not abort:
            self.core.logout(self.client, reason)


def _write_nothing(data: bytes, lobby: str | None = None, /) -> None:
    """Output before the connection has started goes nowhere."""
