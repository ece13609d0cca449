"""Admission, per-turn output, background chores and an orderly shutdown.

The server owns the event loop's view of the world: the chat core, every
connection, every background task. Admission (per-IP and total caps) happens in
`connection_made`, before a byte of banner is sent, so a connection flood
costs a refusal line and a close. Which ports are bound, and with which TLS
context, is gochat.listeners; what a connection is greeted with, gochat.greeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from gochat import activity, greeting
from gochat.backlog import OutputBudget
from gochat.chat import ChatCore
from gochat.config import Config
from gochat.errors import StartupError
from gochat.frontends.jsonlines import JsonFrontEnd
from gochat.frontends.text import TextFrontEnd
from gochat.journal import Journal, open_journal
from gochat.listeners import Listeners
from gochat.metrics import MetricsServer
from gochat.ratelimit import ConnectionCounter, GuessLimiter, ip_key
from gochat.rox import Rox
from gochat.stalls import StallWatch
from gochat.store import Store, StoreError
from gochat.transport import Connection, FrontEnd, drop_closing

log = logging.getLogger("gochat.server")

FLUSH_CHUNK = 1000  # connections written per callback (see _flush_dirty)

SHUTDOWN_NOTICE = "Server is shutting down. Goodbye!"
TOO_MANY_FROM_IP = "Too many connections from your IP. Try again later."
SERVER_FULL = "The server is full. Try again later."
PRUNE_INTERVAL = 60.0
LOBBY_GUESSES_PER_SOURCE = 5  # wrong lobby passwords per minute from one IP (IPv6: /64)
LOBBY_GUESSES_PER_LOBBY = 20  # ... and per lobby from everywhere: a botnet gets no more
LOBBY_GUESS_WINDOW = 60.0
DRAIN_CHECK = 0.5  # at shutdown, a connection that took no output for this long is dropped


class ChatServer:
    """The daemon: listeners plus the chat core, all on one event loop."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.core = ChatCore(config, clock)
        self._store = store  # None: the one GOCHAT_DB names
        self.journal: Journal | None = None
        self.assistant = Rox(config, self.core, self.spawn)
        self.monotonic = monotonic
        self.counter = ConnectionCounter(config.max_conn_per_ip, config.max_connections)
        self.lobby_guesses = GuessLimiter(
            LOBBY_GUESSES_PER_SOURCE, LOBBY_GUESSES_PER_LOBBY, LOBBY_GUESS_WINDOW
        )
        self.sessions: set[Connection] = set()
        self.output_budget = OutputBudget(config.output_budget)  # every reader's backlog
        self.stalls = StallWatch(config.stall_timeout)
        self.activity = activity.Activity(self.core.counters)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.listeners = Listeners(config, self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._banners = greeting.banners()
        self._closing = False
        self._dirty: list[Connection] = []  # connections with output queued this turn
        self._drained = asyncio.Event()
        self.started_at: float | None = None
        self.started_wall = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def ports(self) -> dict[str, int]:
        """The port each listener got (plain, tls, json, json_tls, metrics): 0 picks one."""
        return self.listeners.ports

    @property
    def metrics(self) -> MetricsServer | None:
        """The /metrics endpoint; None until bound, or with GOCHAT_METRICS_ADDR empty."""
        return self.listeners.metrics

    # -- start ----------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load TLS, bind every port, start the background chores.

        Each step that can refuse to start is shared with --check-config (the
        store's open, gochat.tls, bind), so the check and start-up cannot disagree.
        """
        self._loop = asyncio.get_running_loop()
        try:  # lobbies and history first: nothing is served before they are back
            self.journal = await open_journal(self.config, self.core, self._store)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        self.started_at, self.started_wall = self.monotonic(), time.time()
        self.core.delivery.later = self._loop.call_later  # presence waits for the turn's end
        self.listeners.load_tls()
        await self.bind()
        self.listeners.log_addresses()
        log.info("%s", self.assistant.status())
        self.spawn(self._prune_lobbies())
        self.spawn(self._watch_stalls())
        self.spawn(self._report_activity())

    async def bind(self) -> None:
        """Bind the chat listeners (TLS if one is loaded) and the metrics endpoint.

        --check-config runs this too (see check_bind), so a port in use or two
        settings naming one port fail the check exactly as they fail start-up.
        """
        self._loop = asyncio.get_running_loop()
        await self.listeners.bind()

    async def check_bind(self, tls: ssl.SSLContext | None) -> None:
        """--check-config: bind every port as start() would, then let go; StartupError."""
        self.listeners.tls = tls
        try:
            await self.bind()
        finally:
            await self.listeners.close()

    def reload(self) -> None:
        """SIGHUP: new TLS connections get the renewed certificate (see Listeners.reload)."""
        self.listeners.reload()

    # -- admission --------------------------------------------------------------

    def admit(self, session: Connection) -> str | None:
        """Count a new connection, or return the line it is refused with."""
        if self._closing:
            return SHUTDOWN_NOTICE
        session.ip_key = ip_key(session.address)
        refusal = self.counter.acquire(session.ip_key)
        if refusal is not None:
            self.core.counters.connections_refused += 1
            log.warning(
                "refused %s: %s",
                session.address,
                "per-IP cap" if refusal == "ip" else "server full",
            )
            return TOO_MANY_FROM_IP if refusal == "ip" else SERVER_FULL
        self.sessions.add(session)
        self.core.counters.connections_accepted += 1
        log.debug("connect %s (%s)", session.address, session.listener)
        return None

    def release(self, session: Connection) -> None:
        self.sessions.discard(session)
        self.stalls.forget(session)
        self.counter.release(session.ip_key)
        if self._closing and not self.sessions:
            self._drained.set()

    def flush_soon(self, session: Connection) -> None:
        """Have `session`'s queued output written at the end of this loop turn."""
        if not self._dirty:
            self.loop.call_soon(self._flush_dirty)
        self._dirty.append(session)

    def _flush_dirty(self) -> None:
        """Write this turn's output, FLUSH_CHUNK connections per callback: a line to
        10,000 people is 10,000 sends (about 50 ms), and the loop polls between chunks."""
        dirty = self._dirty
        if len(dirty) > FLUSH_CHUNK:
            self._dirty = dirty[FLUSH_CHUNK:]  # the rest, to which this turn's others add
            dirty = dirty[:FLUSH_CHUNK]
            self.loop.call_soon(self._flush_dirty)
        else:
            self._dirty = []
        for session in dirty:
            session.flush()

    def text_front_end(self, link: Connection) -> FrontEnd:
        return TextFrontEnd(self, link)

    def json_front_end(self, link: Connection) -> FrontEnd:
        return JsonFrontEnd(self, link)

    def banner(self, colour: bool) -> bytes:
        return self._banners[colour]

    def foreign_protocol_reply(self, kind: str) -> bytes:
        """The one line a TLS, HTTP or SSH client gets on the plain port."""
        return greeting.foreign_protocol_reply(kind, self.ports.get("tls"))

    # -- tasks ------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coroutine` as a task the server tracks and cancels at shutdown."""
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _report_activity(self) -> None:
        """Once a minute, one line for all the connections (gochat.activity)."""
        while True:
            await asyncio.sleep(activity.EVERY)
            self._log_activity()

    def _log_activity(self) -> None:
        line = self.activity.line(self.core.counters)
        if line is not None:
            log.info("%s", line)

    async def _watch_stalls(self) -> None:
        """A few looks per GOCHAT_STALL_TIMEOUT for readers that stopped (gochat.stalls)."""
        watch = self.stalls
        while True:
            await asyncio.sleep(min(1.0, watch.timeout / 3))
            for connection in watch.look(self.sessions, self.loop.time()):
                cast(Connection, connection).drop_stalled(watch.timeout)

    async def _prune_lobbies(self) -> None:
        interval = min(PRUNE_INTERVAL, max(1.0, self.config.lobby_idle_minutes * 60 / 4))
        while True:
            await asyncio.sleep(interval)
            self.core.prune_lobbies()

    # -- stats and shutdown ---------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts a test or an operator can check for leaks."""
        return {
            "connections": len(self.sessions),
            "counted": self.counter.total,
            "ip_keys": self.counter.keys,
            "clients": len(self.core.clients),
            "lobbies": len(self.core.lobbies),
            "tasks": len(self.tasks),
        }

    async def shutdown(self) -> None:
        """Stop accepting, say goodbye to everyone, let output drain, close."""
        self._closing = True
        self.core.touch_occupied()  # before everyone leaves: lobbies in use are not idle
        self.core.closing = True
        await self.listeners.stop_accepting()
        for task in list(self.tasks):
            task.cancel()
        sessions = list(self.sessions)
        log.info("shutting down: %d connections", len(sessions))
        for session in sessions:
            session.front.shutdown(SHUTDOWN_NOTICE)
        if self.sessions:
            await self._drain(self.config.shutdown_grace)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.abort()
        await asyncio.sleep(0)
        await self.listeners.wait_closed()
        if self.journal is not None:
            await self.journal.close()  # every queued write, within GOCHAT_STORE_CLOSE_TIMEOUT
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.assistant.close(), 1.0)
        self._log_activity()
        log.info("shutdown complete")

    async def _drain(self, grace: float) -> None:
        """Let goodbyes flush for up to `grace` seconds; drop connections that take nothing.

        A peer that stopped reading would hold shutdown for the whole grace; one that
        took no byte since the last look (DRAIN_CHECK seconds) is aborted at once.
        """
        loop = self.loop
        deadline = loop.time() + grace
        unsent = {s: s.transport.get_write_buffer_size() for s in self.sessions if s.transport}
        while self.sessions and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                wait = min(DRAIN_CHECK, max(0.0, deadline - loop.time()))
                await asyncio.wait_for(self._drained.wait(), wait)
            for session in list(self.sessions):
                if session.transport is None:
                    continue
                size = session.transport.get_write_buffer_size()
                if unsent.get(session, size + 1) <= size:
                    drop_closing(session.transport)
                unsent[session] = size
