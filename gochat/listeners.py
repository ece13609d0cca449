"""The ports the daemon listens on, and the TLS context new connections get.

Kept apart from gochat.server so that everything which can refuse to bind
(two settings naming one port, a port in use, a certificate that does not
load) is in one place that start-up and --check-config share, and so that the
server itself is only about connections and their lifetime. A SIGHUP swaps the
TLS context here; each connection reads it when it is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from gochat.collector import Source
from gochat.config import Config, format_host_port, parse_host_port
from gochat.errors import StartupError
from gochat.metrics import MetricsServer
from gochat.tls import TlsError, load_context, off_reason
from gochat.transport import Connection, FrontEnd, Host

# The server's logger: these lines were always the server's, and operators filter on it.
log = logging.getLogger("gochat.server")

FrontEndFactory = Callable[[Connection], FrontEnd]


class Owner(Host, Source, Protocol):
    """The server the listeners feed (gochat.server.ChatServer): it admits each
    connection, picks the front end of its port's dialect, and is what the
    metrics endpoint reads."""

    def text_front_end(self, link: Connection) -> FrontEnd: ...

    def json_front_end(self, link: Connection) -> FrontEnd: ...


class Listeners:
    """The chat listeners, the metrics endpoint, and the TLS context they hand out."""

    def __init__(self, config: Config, owner: Owner) -> None:
        self.config = config
        self.owner = owner
        self.ports: dict[str, int] = {}
        self.tls: ssl.SSLContext | None = None  # what new TLS connections use; see reload()
        self.metrics: MetricsServer | None = None
        self._servers: list[asyncio.Server] = []
        self._names: list[str] = []  # each server's listener name, in the same order

    def load_tls(self) -> None:
        """Set the TLS context, or None when TLS is off as configured (see gochat.tls)."""
        reason = off_reason(self.config)
        if reason is not None:
            text, warn = reason
            log.log(logging.WARNING if warn else logging.INFO, "TLS disabled: %s", text)
            self.tls = None
            return
        try:
            self.tls = load_context(self.config)
        except TlsError as exc:
            raise StartupError(str(exc)) from None

    async def bind(self) -> None:
        """Bind the chat listeners (TLS if self.tls is set) and the metrics endpoint."""
        config = self.config
        for conflict in port_conflicts(config, self.tls is not None):
            raise StartupError(conflict)
        for name, port, tls, front_end in self._chat_listeners():
            self._servers.append(await self._listen(name, port, tls, front_end))
            self._names.append(name)
        if config.metrics_addr:
            await self._start_metrics()

    async def close(self) -> None:
        """Let go of every port at once (--check-config, after binding them)."""
        if self.metrics is not None:
            await self.metrics.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()
        self._names.clear()

    async def stop_accepting(self) -> None:
        """Shutdown, first step: no new connection, no more scrapes."""
        if self.metrics is not None:
            await self.metrics.close()
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        """Shutdown, last step: give each chat listener a second to finish closing."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def log_addresses(self) -> None:
        """Say where the daemon listens, and where a wildcard is reached from the LAN."""
        for name, server in zip(self._names, self._servers, strict=True):
            bound = [sock.getsockname() for sock in server.sockets]
            shown = ", ".join(format_host_port(address[0], address[1]) for address in bound)
            log.info("listening (%s) on %s", name, shown)
            if name == "plain":
                for address in bound:
                    for lan in advertised(address):
                        if lan != address[0]:  # a wildcard: say where others reach it
                            log.info("LAN address: %s (nc %s %d)", lan, lan, address[1])

    def _chat_listeners(self) -> list[tuple[str, int, bool, FrontEndFactory]]:
        """(name, port, TLS?, front end) for every chat listener the settings ask for."""
        config, owner = self.config, self.owner
        wanted: list[tuple[str, int, bool, FrontEndFactory]] = [
            ("plain", config.port, False, owner.text_front_end)
        ]
        if self.tls is not None:
            wanted.append(("tls", config.tls_port, True, owner.text_front_end))
        if config.json_port:
            wanted.append(("json", config.json_port, False, owner.json_front_end))
        if self.tls is not None and config.json_tls_port:
            wanted.append(("json_tls", config.json_tls_port, True, owner.json_front_end))
        return wanted

    async def _listen(
        self, name: str, port: int, tls: bool, front_end: FrontEndFactory
    ) -> asyncio.Server:
        try:
            server = await self.owner.loop.create_server(
                # TLS starts in the Connection, after admission: handshakes count as connections.
                # The context is read per connection, so a SIGHUP reload reaches new ones.
                lambda: Connection(self.owner, name, self.tls if tls else None, front_end),
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
        metrics = MetricsServer(self.owner)
        try:
            self.ports["metrics"] = await metrics.start()
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {self.config.metrics_addr}: {_reason(exc)}"
            ) from None
        self.metrics = metrics

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
