"""One connection: bytes in, lines out, a small state machine in between.

A `Session` is an asyncio Protocol rather than a task with a StreamReader:
data arrives by callback, is framed by `wire.LineReader` and handled at once,
so an idle connection costs a transport, a socket and this object, and no
coroutine frame. Work that must not run on the loop (bcrypt) runs as a task;
until it finishes, reading is paused and later lines wait in order.

States: NAME (choosing a user name) -> CHAT -> CLOSED. Output to this
connection is written without waiting; if more than the send-queue cap is
left unsent, asyncio calls `pause_writing` and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import logging
import socket
import ssl
import struct
from collections import deque
from collections.abc import Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from gochat.clients import Client
from gochat.commands import REGISTRY, Command
from gochat.errors import UsageError, UserError
from gochat.events import Event, Farewell, Level, Notice, Raw
from gochat.names import user_name_problem
from gochat.ratelimit import MessageLimiter, Verdict, wait_phrase
from gochat.render import PROMPT, render
from gochat.wire import LineReader, LineTooLong, decode_line, encode, sniff_foreign

if TYPE_CHECKING:
    from gochat.server import ChatServer

log = logging.getLogger("gochat.session")

CLOSE_LINGER = 5.0  # seconds a closing connection may take to flush its last lines
FIN_GRACE = 1.0  # seconds a client may take to close after our FIN before it is reset
# TCP states in which the peer has acknowledged our FIN, hence every byte before it.
FIN_ACKED_STATES = frozenset({5, 6, 7})  # FIN_WAIT2, TIME_WAIT, CLOSE (linux/tcp_states.h)
LOOKUPS_PER_MESSAGE = 4  # /users, /lobbies, /history allowed per message of the rate limit
LINES_PER_TURN = 32  # lines handled per connection before other connections get a turn
FEED_BYTES = 2048  # a big read is split into lines this many bytes at a time, in turn
TLS_READ_BUFFER = 16 * 1024  # bytes per TLS connection (asyncio's own: 256 KiB)
NAME_PROMPT = "Enter your username: "
PROMPT_BYTES = PROMPT.encode()


class TlsLayer(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol with a read buffer sized for chat.

    The stock one zero-fills a 256 KiB buffer per connection (cpython issue
    #109534), so every TLS user cost about 280 KiB of RSS. The buffer receives
    one socket read of ciphertext at a time; a TLS record is at most 16 KiB
    plus overhead, and a smaller buffer only means more reads of bulk data,
    which chat does not have.
    """

    max_size = TLS_READ_BUFFER


class State(Enum):
    NAME = "name"
    CHAT = "chat"
    CLOSED = "closed"


class Session(asyncio.Protocol):
    """The protocol instance of one accepted connection."""

    __slots__ = (
        "address",
        "admitted",
        "client",
        "core",
        "eof",
        "handshaking",
        "ip_key",
        "last_activity",
        "listener",
        "lookups",
        "outbox",
        "pending",
        "reader",
        "server",
        "sniffed",
        "state",
        "task",
        "timer",
        "tls",
        "transport",
    )

    def __init__(
        self, server: ChatServer, listener: str, tls: ssl.SSLContext | None = None
    ) -> None:
        config = server.config
        self.server = server
        self.tls = tls  # set: the handshake runs once the connection is admitted
        self.core = server.core
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.state = State.NAME
        self.reader = LineReader(config.max_line_bytes)
        self.address = "?"
        self.ip_key = "?"
        self.admitted = False
        self.sniffed = listener != "plain"
        self.eof = False
        self.handshaking = False  # TLS: the handshake is running on the raw transport
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.pending: deque[Item] | None = None
        self.outbox: list[bytes] = []
        self.lookups: MessageLimiter | None = None  # made on the first /users, /lobbies...
        self.client = Client(
            "",
            self._write_nothing,
            limiter=MessageLimiter.create(
                config.rate_messages, config.rate_window, config.flood_factor
            ),
            colour=config.color_default,
        )

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
        self.client.address = self.address
        refusal = self.server.admit(self)
        if refusal is not None:
            self.state = State.CLOSED
            if self.tls is None:  # a TLS client could not read a plain-text line
                transport.write(encode(refusal + "\n"))
            _close_within(transport, self.server.loop)
            return
        self.admitted = True
        if self.tls is not None:
            self._start_tls(transport, self.tls)
            return
        self._start(transport)

    def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Put the TLS layer under this session now, before the first byte is read.

        Not loop.start_tls(): that is a coroutine, so it takes over the socket
        only a loop turn later, and uvloop starts reading as soon as
        connection_made returns (pause_reading there is undone): a ClientHello
        could reach the session as chat text. Nor create_server(ssl=...): that
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
        if self.state is State.CLOSED:  # closed (shutdown) while the handshake finished
            transport.abort()
            return
        self._start(transport)

    def _handshake_done(self, raw: asyncio.Transport, handshake: asyncio.Future[None]) -> None:
        """A failed, timed-out or reset handshake: close and release the slot."""
        if not handshake.cancelled() and handshake.exception() is None:
            return  # connection_made has started the session
        self.handshaking = False
        raw.abort()
        exc = None if handshake.cancelled() else handshake.exception()
        self.connection_lost(exc if isinstance(exc, Exception) else None)

    def _start(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _tune_socket(sock, self.server.config.socket_sndbuf)
        transport.set_write_buffer_limits(high=self.server.config.sendq_bytes)
        self.client.write = self._queue
        loop = self.server.loop
        self.last_activity = loop.time()
        self._arm_timer(self.last_activity + self.server.config.name_timeout)
        transport.write(self.server.banner(self.client.colour))

    def data_received(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self.last_activity = self.server.loop.time()
        if not self.sniffed:
            self.sniffed = True
            foreign = sniff_foreign(data)
            if foreign is not None:
                self._refuse_foreign(foreign)
                return
        if self.pending is None and len(data) <= FEED_BYTES:
            self._process(self.reader.feed(data))
            return
        # Raw bytes are compact; lines are not (a 256 KiB read of one-byte lines would be
        # megabytes of objects), so big or held input is split only when its turn comes.
        chunks = [_Unframed(data[i : i + FEED_BYTES]) for i in range(0, len(data), FEED_BYTES)]
        if self.pending is not None:
            self.pending.extend(chunks)
            return
        self._process(deque(chunks))

    def eof_received(self) -> bool:
        """The client closed its side: finish what it asked for, then close."""
        self.eof = True
        if self.task is None and self.pending is None and self.state is not State.CLOSED:
            self._close("client closed the connection")
        return self.state is not State.CLOSED  # half-open only while its lines are pending

    def pause_writing(self) -> None:
        """More than the send-queue cap is unsent: this reader is too slow; drop it."""
        unsent = self.transport.get_write_buffer_size() if self.transport else 0
        log.warning("SendQ exceeded for %s (%d bytes unsent); dropping", self._who(), unsent)
        self.core.counters.sendq_disconnects += 1
        self._close("SendQ exceeded", abort=True)

    def resume_writing(self) -> None:
        """Nothing to do: we never wait for the buffer to drain."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not State.CLOSED:
            self._close("connection reset" if exc else "connection closed", already_lost=True)
        self._cancel_timer()
        self._leave()
        if self.admitted:
            self.admitted = False
            self.server.release(self)
        self.transport = None

    # -- what handlers may use (commands.Context) ------------------------------

    @property
    def active(self) -> bool:
        return self.state is not State.CLOSED

    def monotonic(self) -> float:
        return self.server.monotonic()

    def quit(self, reason: str, farewell: str) -> None:
        """Say `farewell` and close once it is written."""
        if self.state is State.CLOSED:
            return
        self._send(Farewell(farewell))
        self._close(reason)

    def close(self, reason: str) -> None:
        """Close after what was already written (shutdown uses this)."""
        self._close(reason)

    # -- output -------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        """`Client.write`: collect this turn's output; the server writes it once per turn.

        One write per connection per loop turn instead of one per line: each write
        is a send() system call, by far the largest cost of a delivery, and a
        backlog after any stall goes out in one piece instead of line by line.
        """
        outbox = self.outbox
        if not outbox:
            self.server.flush_soon(self)
        outbox.append(data)

    def flush(self) -> None:
        """Hand this turn's output to the transport in one write (never waits)."""
        outbox = self.outbox
        if not outbox:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- the state machine --------------------------------------------------------

    def _process(self, items: list[bytes | LineTooLong] | deque[Item]) -> None:
        """Handle lines in order; hold the rest while a command runs or the turn is used up."""
        queue: deque[Item] = items if isinstance(items, deque) else deque(items)
        budget = LINES_PER_TURN
        while queue:
            if self.state is State.CLOSED:
                return
            if budget == 0:
                self._hold(queue)
                self.server.loop.call_soon(self._resume)
                return
            item = queue.popleft()
            if isinstance(item, _Unframed):
                queue.extendleft(reversed(self.reader.feed(item.data)))
                continue
            budget -= 1
            if isinstance(item, LineTooLong):
                limit = f"Line too long: the limit is {item.limit} bytes; it was discarded."
                self._send(Notice(limit, Level.WARN))
                continue
            text = decode_line(item).strip()
            if self.state is State.NAME:
                self._choose_name(text)
            else:
                self._dispatch(text)
            if self.task is not None and self.active:  # (the line may have closed us)
                self._hold(queue)
                return

    def _hold(self, queue: deque[Item]) -> None:
        """Keep unhandled lines; stop reading until they are done (order kept, memory bounded)."""
        self.pending = queue
        if self.transport is not None:
            self.transport.pause_reading()

    def _resume(self) -> None:
        """Handle held lines; read again once none are left and no command is running."""
        if self.state is State.CLOSED or self.task is not None:
            return
        pending, self.pending = self.pending, None
        if pending:
            self._process(pending)
        if self.pending is None and self.task is None and self.active:
            if self.eof:
                self._close("client closed the connection")
            elif self.transport is not None:
                self.transport.resume_reading()

    def _choose_name(self, name: str) -> None:
        if not name:
            self._prompt_name()
            return
        if name.lower() == "/quit":
            self.quit("quit at the name prompt", "Goodbye!")
            return
        problem = user_name_problem(name)
        if problem is None:
            self.client.rename(name)
            if self.core.login(self.client):
                self.state = State.CHAT
                self._cancel_timer()
                self._arm_timer(self.last_activity + self.server.config.idle_timeout)
                return
            problem = f"The name {name!r} is taken. Pick another."
        self._send(Notice(problem, Level.ERROR))
        self._prompt_name()

    def _dispatch(self, text: str) -> None:
        if not text:
            if self.client.colour:
                self.client.write(PROMPT_BYTES)
            return
        if text[0] == "/" and not text.startswith("//"):
            name, _, rest = text[1:].partition(" ")
            command = REGISTRY.get(name)
            if command is None:
                self._send(
                    Notice(f"Unknown command /{name}. Type /help for the list.", Level.ERROR)
                )
                return
            rest = rest.strip()
            if command.min_args and len(rest.split(maxsplit=command.min_args)) < command.min_args:
                self._send(Notice(f"Usage: {command.usage}", Level.WARN))
                return
            charged = None
            if command.rate_limited:
                if not self._within_rate():
                    return
                charged = self.client.limiter
            if command.lookup and not self._within_lookups():
                return
            self._run(command, rest, charged)
            return
        if text.startswith("//"):
            text = text[1:]
        if not self._within_rate():
            return
        try:
            self.core.say(self.client, text)
        except UserError as exc:
            self.client.limiter.refund()  # refused: it reached nobody, so it costs nothing
            self._send(Notice(str(exc), Level.ERROR))

    def _within_lookups(self) -> bool:
        """Listings are free of the message budget but have their own: /users in a
        500-user lobby, repeated, would otherwise cost everyone their latency."""
        if self.lookups is None:
            config = self.server.config
            per_window = LOOKUPS_PER_MESSAGE * config.rate_messages
            self.lookups = MessageLimiter.create(
                per_window, config.rate_window, config.flood_factor
            )
        return self._within_rate(self.lookups)

    def _within_rate(self, limiter: MessageLimiter | None = None) -> bool:
        limiter = limiter or self.client.limiter
        verdict, wait = limiter.check(self.server.monotonic())
        if verdict is Verdict.SEND:
            return True
        self.core.counters.rate_limited += 1
        if verdict is Verdict.REFUSE_WITH_NOTICE:
            self._send(Notice(f"Rate limited! {wait_phrase(wait)}", Level.WARN))
        elif verdict is Verdict.DISCONNECT:
            log.warning("flood: disconnecting %s", self._who())
            self.core.counters.flood_disconnects += 1
            self.quit("flooding", "Disconnected for flooding. Slow down next time.")
        return False

    def _run(self, command: Command, args: str, charged: MessageLimiter | None) -> None:
        """Run `command`; a refused one gives back what it was `charged` from the budget."""
        try:
            result = command.handler(self, args)
        except Exception as exc:
            self._report(command, exc, charged)
            return
        if result is not None:
            coroutine: Coroutine[Any, Any, None] = result  # type: ignore[assignment]
            self.task = self.server.spawn(coroutine)
            self.task.add_done_callback(functools.partial(self._command_done, command, charged))

    def _command_done(
        self, command: Command, charged: MessageLimiter | None, task: asyncio.Task[None]
    ) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            self._report(command, task.exception(), charged)  # type: ignore[arg-type]
        self._resume()

    def _report(self, command: Command, exc: BaseException, charged: MessageLimiter | None) -> None:
        if charged is not None and isinstance(exc, UserError):
            charged.refund()  # refused: it reached nobody, so it costs nothing
        if isinstance(exc, UsageError):
            detail = f" ({exc.detail})" if exc.detail else ""
            self._send(Notice(f"Usage: {command.usage}{detail}", Level.WARN))
        elif isinstance(exc, UserError):
            self._send(Notice(str(exc), Level.ERROR))
        else:
            log.error("/%s failed for %s", command.name, self._who(), exc_info=exc)
            self._send(Notice("Something went wrong on our side; it has been logged.", Level.ERROR))

    # -- helpers --------------------------------------------------------------

    def _send(self, event: Event) -> None:
        # No "> " chat prompt before the user is chatting: the name prompt follows.
        self.client.write(render(event, self.client.colour, prompt=self.state is State.CHAT))

    def _prompt_name(self) -> None:
        self._send(Raw(NAME_PROMPT))

    def _refuse_foreign(self, kind: str) -> None:
        text = self.server.foreign_protocol_reply(kind)
        log.info("refused %s from %s on the plain port", kind, self.address)
        assert self.transport is not None
        self.transport.write(text)
        self._close(f"{kind} on the plain port")

    def _arm_timer(self, when: float) -> None:
        self.timer = self.server.loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        """Name timeout in NAME; idle timeout in CHAT, re-armed lazily after activity."""
        self.timer = None
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
                self._arm_timer(deadline)

    def _close(self, reason: str, *, abort: bool = False, already_lost: bool = False) -> None:
        """Stop all I/O for this session; leave the chat now unless mid-fan-out (abort)."""
        if self.state is State.CLOSED:
            return
        logged_in = self.state is State.CHAT
        self.state = State.CLOSED
        self.client.detach()
        self._cancel_timer()
        if self.task is not None:
            self.task.cancel()
        log.info("disconnect %s: %s", self._who(), reason)
        self.core.counters.disconnects[reason] += 1
        if logged_in and not abort:
            self.core.logout(self.client, reason)
        if self.transport is not None and not already_lost:
            if abort or self.handshaking:  # mid-handshake there is nothing to flush
                self.outbox.clear()
                _reset(self.transport)
            else:
                self.flush()
                _close_within(self.transport, self.server.loop, half_close=not self.eof)

    def _leave(self) -> None:
        if self.client.name:
            self.core.logout(self.client, "disconnected")

    def _who(self) -> str:
        return f"{self.client.name}@{self.address}" if self.client.name else self.address

    @staticmethod
    def _write_nothing(data: bytes) -> None:
        """Output before the transport exists goes nowhere."""


class _Unframed:
    """Input bytes not split into lines yet (see FEED_BYTES)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


Item = bytes | LineTooLong | _Unframed


def _reset(transport: asyncio.Transport) -> None:
    """Drop the connection with a TCP reset: the kernel frees its buffer at once.

    A plain abort still lets a stalled peer trickle out what sits in the kernel's
    send buffer; a reader dropped for being too slow gets nothing more.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _close_within(
    transport: asyncio.Transport,
    loop: asyncio.AbstractEventLoop,
    *,
    half_close: bool = False,
) -> None:
    """Close after flushing, so that every client notices, and never wait forever.

    A plain close() sends FIN once the buffer drains: telnet, socat and s_client
    exit on it, but Debian's nc keeps waiting for its user to type, since only a
    failed write tells it the connection is gone. So a connection whose peer is
    still open is half-closed (FIN after the last line) and kept; a client that
    has not closed its side FIN_GRACE seconds after acknowledging the FIN (so it
    holds every byte) gets a TCP reset, on which nc exits with all of it shown.
    A peer that never reads (zero window) is aborted after CLOSE_LINGER.
    Without `half_close` (the client closed first, or was refused at admission,
    where holding the socket would help a connection flood) it closes at once.
    """
    if not half_close or not _can_half_close(transport):
        transport.close()
        if transport.get_write_buffer_size():
            loop.call_later(CLOSE_LINGER, transport.abort)
        return
    transport.write_eof()
    loop.call_later(FIN_GRACE, _after_fin, transport, loop, loop.time() + CLOSE_LINGER)


def _after_fin(
    transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, deadline: float
) -> None:
    """FIN_GRACE after a half-close: reset a client that kept its side open."""
    if transport.is_closing():  # the client closed too: nothing left to do
        return
    if fin_acknowledged(transport) or loop.time() >= deadline:
        drop_closing(transport)
    else:
        loop.call_later(FIN_GRACE, _after_fin, transport, loop, deadline)


def _can_half_close(transport: asyncio.Transport) -> bool:
    """Plain TCP on a kernel that reports TCP state (TLS cannot half-close)."""
    return hasattr(socket, "TCP_INFO") and transport.can_write_eof()


def fin_acknowledged(transport: asyncio.BaseTransport) -> bool:
    """True when the peer has acknowledged our FIN, so it holds every byte we sent."""
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return False
    return state in FIN_ACKED_STATES


def drop_closing(transport: asyncio.Transport) -> None:
    """End a closing connection now: a reset if the peer has it all, else a plain abort.

    The reset is what makes nc exit; a peer still owed bytes keeps getting them
    from the kernel after a plain abort, as it would after close().
    """
    if fin_acknowledged(transport):
        _reset(transport)
    else:
        transport.abort()


def _tune_socket(sock: socket.socket, sndbuf: int) -> None:
    """Keepalive finds half-open peers; no Nagle, chat lines are small and urgent.

    A bounded kernel send buffer keeps a stalled reader's backlog in our send
    queue, where the cap sees it, instead of in up to megabytes of kernel memory.
    """
    try:
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
    except OSError:
        pass
