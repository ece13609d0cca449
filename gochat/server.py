"""Listeners, admission, background chores and an orderly shutdown.

The server owns the event loop's view of the world: the chat core, every
connection, every background task. Admission (per-IP and total caps) happens in
`connection_made`, before a byte of banner is sent, so a connection flood
costs a refusal line and a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gochat.chat import ChatCore
from gochat.config import Config, format_host_port, parse_host_port
from gochat.events import Raw
from gochat.frontends.jsonlines import JsonFrontEnd
from gochat.frontends.text import NAME_PROMPT, TextFrontEnd
from gochat.journal import Journal, open_journal
from gochat.metrics import MetricsServer
from gochat.ratelimit import ConnectionCounter, GuessLimiter, ip_key
from gochat.render import BOLD, CYAN, RESET, render
from gochat.rox import Rox
from gochat.store import Store, StoreError
from gochat.tls import TlsError, load_context, off_reason
from gochat.transport import Connection, FrontEnd, drop_closing
from gochat.wire import encode

log = logging.getLogger("gochat.server")

FrontEndFactory = Callable[[Connection], "FrontEnd"]

BANNER = r"""
                   _           _
   __ _  ___   ___| |__   __ _| |_
  / _` |/ _ \ / __| '_ \ / _` | __|
 | (_| | (_) | (__| | | | (_| | |_
  \__, |\___/ \___|_| |_|\__,_|\__|
  |___/
"""
WELCOME = "Welcome to gochat! Names are 2-20 letters, digits, _ or -."
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye!"
TOO_MANY_FROM_IP = "Too many connections from your IP. Try again later."
SERVER_FULL = "The server is full. Try again later."
PRUNE_INTERVAL = 60.0
LOBBY_GUESSES_PER_SOURCE = 5  # wrong lobby passwords per minute from one IP (IPv6: /64)
LOBBY_GUESSES_PER_LOBBY = 20  # ... and per lobby from everywhere: a botnet gets no more
LOBBY_GUESS_WINDOW = 60.0
DRAIN_CHECK = 0.5  # at shutdown, a connection that took no output for this long is dropped


class StartupError(RuntimeError):
    """The daemon cannot start as configured; the message says why and what to fix."""


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
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ports: dict[str, int] = {}
        self.tls: ssl.SSLContext | None = None  # what new TLS connections use; see reload()
        self._listeners: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._banners = {
            colour: encode((f"{BOLD}{CYAN}{BANNER}{RESET}" if colour else BANNER) + f"{WELCOME}\n")
            + render(Raw(NAME_PROMPT), colour)
            for colour in (True, False)
        }
        self._closing = False
        self._dirty: list[Connection] = []  # connections with output queued this turn
        self._drained = asyncio.Event()
        self.metrics: MetricsServer | None = None
        self.started_at: float | None = None
        self.started_wall = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

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
        self.tls = self._tls_context()
        await self.bind()
        for name, listener in zip(("plain", "tls"), self._listeners, strict=False):
            bound = [sock.getsockname() for sock in listener.sockets]
            shown = ", ".join(format_host_port(address[0], address[1]) for address in bound)
            log.info("listening (%s) on %s", name, shown)
            if name == "plain":
                for address in bound:
                    for lan in advertised(address):
                        if lan != address[0]:  # a wildcard: say where others reach it
                            log.info("LAN address: %s (nc %s %d)", lan, lan, address[1])
        log.info("%s", self.assistant.status())
        self.spawn(self._prune_lobbies())

    async def bind(self) -> None:
        """Bind the chat listeners (TLS if self.tls is set) and the metrics endpoint.

        --check-config runs this too (see check_bind), so a port in use or two
        settings naming one port fail the check exactly as they fail start-up.
        """
        self._loop = asyncio.get_running_loop()
        config = self.config
        for conflict in port_conflicts(config, self.tls is not None):
            raise StartupError(conflict)
        for name, port, tls, front_end in self._chat_listeners():
            self._listeners.append(await self._listen(name, port, tls, front_end))
        if config.metrics_addr:
            await self._start_metrics()

    async def check_bind(self, tls: ssl.SSLContext | None) -> None:
        """--check-config: bind every port as start() would, then let go; StartupError."""
        self.tls = tls
        try:
            await self.bind()
        finally:
            if self.metrics is not None:
                await self.metrics.close()
            for listener in self._listeners:
                listener.close()
                await listener.wait_closed()
            self._listeners.clear()

    def _chat_listeners(self) -> list[tuple[str, int, bool, FrontEndFactory]]:
        """(name, port, TLS?, front end) for every chat listener the settings ask for."""
        config = self.config
        wanted: list[tuple[str, int, bool, FrontEndFactory]] = [
            ("plain", config.port, False, self._text_front_end)
        ]
        if self.tls is not None:
            wanted.append(("tls", config.tls_port, True, self._text_front_end))
        if config.json_port:
            wanted.append(("json", config.json_port, False, self._json_front_end))
        if self.tls is not None and config.json_tls_port:
            wanted.append(("json_tls", config.json_tls_port, True, self._json_front_end))
        return wanted

    async def _listen(
        self, name: str, port: int, tls: bool, front_end: FrontEndFactory
    ) -> asyncio.Server:
        try:
            server = await self.loop.create_server(
                # TLS starts in the Connection, after admission: handshakes count as connections.
                # The context is read per connection, so a SIGHUP reload reaches new ones.
                lambda: Connection(self, name, self.tls if tls else None, front_end),
                self.config.host,
                port,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as exc:
            address = format_host_port(self.config.host, port)
            raise StartupError(f"cannot listen on {address} ({name}): {_reason(exc)}") from None
        self.ports[name] = server.sockets[0].getsockname()[1]
        return server

    async def _start_metrics(self) -> None:
        metrics = MetricsServer(self)
        try:
            self.ports["metrics"] = await metrics.start()
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {self.config.metrics_addr}: {_reason(exc)}"
            ) from None
        self.metrics = metrics

    def _tls_context(self) -> ssl.SSLContext | None:
        """The TLS context, or None when TLS is off as configured (see gochat.tls)."""
        reason = off_reason(self.config)
        if reason is not None:
            text, warn = reason
            log.log(logging.WARNING if warn else logging.INFO, "TLS disabled: %s", text)
            return None
        try:
            return load_context(self.config)
        except TlsError as exc:
            raise StartupError(str(exc)) from None

    def reload(self) -> None:
        """SIGHUP: load the TLS certificate and key again (certbot renewed them).

        New handshakes use the new pair; connections already up keep theirs. A
        pair that does not load is refused with a log line and the old one stays.
        Nothing else is re-read: other settings need a restart, and so does
        turning TLS on when it was off at start (the TLS port was never bound).
        """
        if self.tls is None:
            if off_reason(self.config) is None:
                log.warning(
                    "SIGHUP: TLS was off at start; enabling it needs a restart "
                    "(nothing reloaded; other settings need a restart too)"
                )
            else:
                log.info("SIGHUP: nothing to reload (TLS is off; settings need a restart)")
            return
        try:
            context = load_context(self.config)
        except TlsError as exc:
            log.error("SIGHUP: %s; new connections keep the previous certificate", exc)
            return
        self.tls = context
        log.info(
            "SIGHUP: reloaded TLS certificate %s and key %s for new connections "
            "(other settings need a restart)",
            self.config.tls_cert,
            self.config.tls_key,
        )

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
        log.info("connect %s (%s)", session.address, session.listener)
        return None

    def release(self, session: Connection) -> None:
        self.sessions.discard(session)
        self.counter.release(session.ip_key)
        if self._closing and not self.sessions:
            self._drained.set()

    def flush_soon(self, session: Connection) -> None:
        """Have `session`'s queued output written at the end of this loop turn."""
        if not self._dirty:
            self.loop.call_soon(self._flush_dirty)
        self._dirty.append(session)

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session.flush()

    def _text_front_end(self, link: Connection) -> FrontEnd:
        return TextFrontEnd(self, link)

    def _json_front_end(self, link: Connection) -> FrontEnd:
        return JsonFrontEnd(self, link)

    def banner(self, colour: bool) -> bytes:
        return self._banners[colour]

    def foreign_protocol_reply(self, kind: str) -> bytes:
        """The one line a TLS, HTTP or SSH client gets on the plain port."""
        if kind == "tls":
            if "tls" in self.ports:
                text = (
                    f"This is the plain-text chat port; TLS is on port {self.ports['tls']} "
                    f"(openssl s_client -quiet -connect HOST:{self.ports['tls']})."
                )
            else:
                text = "This is a plain-text chat port and TLS is not enabled; use nc or telnet."
            return encode(text + "\n")
        server = "an SSH server" if kind == "ssh" else "a web server"
        text = f"This is a plain-text chat port, not {server}; connect with nc or telnet."
        if kind == "http":
            body = encode(text + "\n")
            head = (
                "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            return head.encode() + body
        return encode(text + "\n")

    # -- tasks ------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coroutine` as a task the server tracks and cancels at shutdown."""
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

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
        if self.metrics is not None:
            await self.metrics.close()
        for listener in self._listeners:
            listener.close()
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
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        if self.journal is not None:
            await self.journal.close()  # every queued write, within GOCHAT_STORE_CLOSE_TIMEOUT
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.assistant.close(), 1.0)
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


def port_conflicts(config: Config, tls_on: bool) -> list[str]:
    """Settings that name one port twice (start-up and --check-config both ask)."""
    found = []
    chat = [("GOCHAT_PORT", config.port), ("GOCHAT_JSON_PORT", config.json_port)]
    if tls_on:
        chat += [
            ("GOCHAT_TLS_PORT", config.tls_port),
            ("GOCHAT_JSON_TLS_PORT", config.json_tls_port),
        ]
    seen: dict[int, str] = {}
    for variable, port in chat:
        if port and port in seen:
            found.append(f"{seen[port]} and {variable} are both {port}")
        elif port:
            seen[port] = variable
    if config.metrics_addr:
        _host, port = parse_host_port(config.metrics_addr)
        if port and port in seen:
            found.append(f"GOCHAT_METRICS_ADDR port {port} is also a chat port")
    return found


def _reason(exc: OSError) -> str:
    """'address already in use', not asyncio's 'error while attempting to bind on ...'."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def advertised(address: tuple[Any, ...]) -> list[str]:
    """The addresses that reach a listener bound to `address` (a getsockname() tuple).

    A listener on one address is reached there only. One on 0.0.0.0 or :: is
    reached on every address of its family assigned to this machine; the
    LAN address is offered only if it is one of those (a bind to it works),
    never an address nothing listens on.
    """
    host = address[0]
    if host not in ("0.0.0.0", "::"):
        return [host]
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    lan = lan_address(family)
    if lan is None:
        return []
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((lan, 0))  # EADDRNOTAVAIL unless the address is ours
    except OSError:
        return []
    return [lan]


def lan_address(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """The address other machines on the LAN would reach us on (no packet is sent)."""
    target = ("2001:db8::1", 1) if family == socket.AF_INET6 else ("10.255.255.255", 1)
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(target)
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address
