"""The transport adapter: one asyncio Protocol per connection; it knows bytes, never chat.

A `Connection` admits the connection (the server's caps), puts TLS under it,
tunes the socket, sniffs a foreign protocol on a plain port, runs the one
timer its front end asks for, and closes by the FIN/RST policy of
`gochat.sockets`; its output side (one write per loop turn, the backlog of a
reader behind) is `gochat.flow.Flow`'s. What the bytes mean is the front end's business: a
`FrontEnd` is sans-IO and talks to its connection only through the `Link`
methods (`write`, `close`, `pause_reading`, `resume_reading`, `set_timer`,
`cancel_timer`), as websockets' `Protocol` does with its `Connection`.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import functools
import logging
import ssl
from collections.abc import Callable
from typing import Protocol, cast

from gochat.flow import TRANSPORT_HIGH, Flow, FlowHost
from gochat.sockets import close_within, drop_closing, reset, tune_socket
from gochat.wire import sniff_foreign

# drop_closing is re-exported: gochat/server.py imports it from here.
__all__ = ["TLS_READ_BUFFER", "Connection", "FrontEnd", "Host", "TlsLayer", "drop_closing"]

log = logging.getLogger("gochat.transport")

TLS_READ_BUFFER = 16 * 1024  # bytes per TLS connection (asyncio's own: 256 KiB)


class FrontEnd(Protocol):
    """A dialect (text, later JSON and IRC): bytes in, core calls, bytes out via its Link."""

    def refusal(self, text: str) -> bytes:
        """The bytes that refuse a connection before it starts (server full, shutting down)."""

    def start(self) -> None:
        """Admitted, TLS done: greet and arm a timer."""

    def receive(self, data: bytes) -> None:
        """Bytes from the peer, in order."""

    def end_of_input(self) -> None:
        """The peer closed its side; finish what it asked for, then close."""

    def timer_expired(self) -> None:
        """The timer set with `Link.set_timer` went off."""

    def closing(self, reason: str, *, abort: bool) -> None:
        """The connection is closing for `reason` (not at the front end's request).

        `abort` is set when a reader is dropped mid-fan-out (SendQ exceeded): the
        user leaves the chat later, in `lost`, not in the middle of a delivery.
        """

    def lost(self) -> None:
        """The connection is gone: forget the user."""

    def who(self) -> str:
        """This connection for a log line: the user's name and address, as far as known."""

    def skipped(self, lobby: str, count: int) -> bytes:
        """The line that tells this reader `count` chat lines in `lobby` were skipped."""

    def shutdown(self, notice: str) -> None:
        """The server is stopping: say `notice` and close."""


class Host(FlowHost, Protocol):
    """What a connection needs from the server that accepted it (gochat.server.ChatServer);
    its config and output budget are FlowHost's."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def admit(self, connection: Connection) -> str | None:
        """Count a new connection, or return the line it is refused with."""

    def release(self, connection: Connection) -> None:
        """The connection is gone: uncount it."""

    def flush_soon(self, connection: Connection) -> None:
        """Write `connection`'s queued output at the end of this loop turn."""

    def foreign_protocol_reply(self, kind: str) -> bytes:
        """The one line a TLS, HTTP or SSH client gets on a plain port."""


class TlsLayer(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol with a read buffer sized for chat.

    The stock one zero-fills a 256 KiB buffer per connection (cpython issue
    #109534), so every TLS user cost about 280 KiB of RSS. The buffer receives
    one socket read of ciphertext at a time; a TLS record is at most 16 KiB
    plus overhead, and a smaller buffer only means more reads of bulk data,
    which chat does not have.
    """

    max_size = TLS_READ_BUFFER


class Connection(Flow, asyncio.Protocol):
    """One accepted connection: the bytes side of a user, whatever their dialect."""

    __slots__ = (
        "address",
        "admitted",
        "closed",
        "eof",
        "front",
        "handshaking",
        "ip_key",
        "listener",
        "server",
        "sniffed",
        "timer",
        "tls",
        "transport",
    )

    server: Host
    front: FrontEnd

    def __init__(
        self,
        server: Host,
        listener: str,
        tls: ssl.SSLContext | None,
        front_end: Callable[[Connection], FrontEnd],
    ) -> None:
        self.server = server
        self.listener = listener
        self.tls = tls  # set: the handshake runs once the connection is admitted
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.ip_key = "?"
        self.admitted = False
        self.closed = False
        self.sniffed = tls is not None  # a plain port checks the first bytes for TLS, HTTP...
        self.eof = False  # the peer has closed its side
        self.handshaking = False  # TLS: the handshake is running on the raw transport
        self.timer: asyncio.TimerHandle | None = None
        self.start_output()
        self.front = front_end(self)

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        transport = cast(asyncio.Transport, transport)
        if self.handshaking:  # the TLS layer's transport: the handshake is done
            self._tls_ready(transport)
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        refusal = self.server.admit(self)
        if refusal is not None:
            self.closed = True
            if self.tls is None:  # a TLS client could not read a plain-text line
                transport.write(self.front.refusal(refusal))
            close_within(transport, self.server.loop)
            return
        self.admitted = True
        if self.tls is not None:
            self._start_tls(transport, self.tls)
            return
        self._start(transport)

    def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Put the TLS layer under this connection now, before the first byte is read.

        Not loop.start_tls(): that is a coroutine, so it takes over the socket
        only a loop turn later, and uvloop starts reading as soon as
        connection_made returns (pause_reading there is undone): a ClientHello
        could reach the front end as chat text. Nor create_server(ssl=...): that
        hands the connection over only after the handshake, so handshakes in
        progress would escape the connection caps. Here the layer takes the
        socket synchronously and calls connection_made again, with the TLS
        transport, when the handshake is done; application data that came with
        the handshake's last flight follows it, in order.
        """
        loop = self.server.loop
        handshake: asyncio.Future[None] = loop.create_future()
        layer = TlsLayer(
            loop,
            self,
            context,
            handshake,
            server_side=True,
            # typeshed says int; asyncio takes any number of seconds
            ssl_handshake_timeout=self.server.config.tls_handshake_timeout,  # type: ignore[arg-type]
        )
        self.handshaking = True
        raw.set_protocol(layer)
        layer.connection_made(raw)
        handshake.add_done_callback(functools.partial(self._handshake_done, raw))

    def _tls_ready(self, transport: asyncio.Transport) -> None:
        self.handshaking = False
        if self.closed:  # closed (shutdown) while the handshake finished
            transport.abort()
            return
        self._start(transport)

    def _handshake_done(self, raw: asyncio.Transport, handshake: asyncio.Future[None]) -> None:
        """A failed, timed-out or reset handshake: close and release the slot."""
        if not handshake.cancelled() and handshake.exception() is None:
            return  # connection_made has started the front end
        self.handshaking = False
        raw.abort()
        exc = None if handshake.cancelled() else handshake.exception()
        self.connection_lost(exc if isinstance(exc, Exception) else None)

    def _start(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        config = self.server.config
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, config.socket_sndbuf)
        transport.set_write_buffer_limits(high=TRANSPORT_HIGH)
        self.front.start()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.sniffed:
            self.sniffed = True
            foreign = sniff_foreign(data)
            if foreign is not None:
                self._refuse_foreign(foreign)
                return
        self.front.receive(data)

    def eof_received(self) -> bool:
        """The peer closed its side: its front end finishes what it asked for, then closes."""
        self.eof = True
        if not self.closed:
            self.front.end_of_input()
        return not self.closed  # half-open only while its lines are pending

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.front.closing("connection reset" if exc else "connection closed", abort=False)
        self.cancel_timer()
        self._forget_backlog()
        self.front.lost()
        if self.admitted:
            self.admitted = False
            self.server.release(self)
        self.transport = None

    # -- the Link: what the front end may ask of its connection ---------------
    # (write, and the flow control behind it, are Flow's: gochat/flow.py)

    def queued(self) -> None:
        self.server.flush_soon(self)

    def close(self, *, abort: bool = False) -> None:
        """Stop all I/O: flush and close by the FIN/RST policy, or reset at once (`abort`)."""
        already = self.closed
        self.closed = True
        self.cancel_timer()
        transport = self.transport
        if transport is None or (already and transport.is_closing()):
            return
        if abort or self.handshaking:  # mid-handshake there is nothing to flush
            self.outbox = None
            self._forget_backlog()
            reset(transport)
        else:
            self.send_the_rest(transport)
            close_within(transport, self.server.loop, half_close=not self.eof)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def set_timer(self, when: float) -> None:
        """Call the front end's `timer_expired` at loop time `when` (one timer at a time)."""
        self.cancel_timer()
        self.timer = self.server.loop.call_at(when, self._on_timer)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if not self.closed:
            self.front.timer_expired()

    def _refuse_foreign(self, kind: str) -> None:
        log.info("refused %s from %s on the plain port", kind, self.address)
        self.write(self.server.foreign_protocol_reply(kind))  # after the greeting, in order
        self.front.closing(f"{kind} on the plain port", abort=False)
        self.close()
