"""The kernel's side of a connection: socket options at the start, FIN and RST at the end.

These are TCP decisions, not asyncio ones: keepalive and Nagle, a bounded
send buffer, when to half-close, when a reset is the kind thing to do, read
off the socket's TCP state. They live apart from `gochat.transport` so that
the protocol class reads as the life of a connection and this policy, which
depends on Linux details (TCP_INFO, SO_LINGER), can be read in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

try:  # Linux: the kernel's unsent bytes of a socket (SIOCOUTQ is TIOCOUTQ there)
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - other platforms
    _OUTQ = None

CLOSE_LINGER = 5.0  # seconds a closing connection may take to flush its last lines
FIN_GRACE = 1.0  # seconds a client may take to close after our FIN before it is reset
# TCP states in which the peer has acknowledged our FIN, hence every byte before it.
FIN_ACKED_STATES = frozenset({5, 6, 7})  # FIN_WAIT2, TIME_WAIT, CLOSE (linux/tcp_states.h)


def reset(transport: asyncio.Transport) -> None:
    """Drop the connection with a TCP reset: the kernel frees its buffer at once.

    A plain abort still lets a stalled peer trickle out what sits in the kernel's
    send buffer; a reader dropped for being too slow gets nothing more.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def close_within(
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
    try:
        transport.write_eof()
    except OSError:  # the peer reset meanwhile (ENOTCONN): nothing left to say to it
        transport.abort()
        return
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
        reset(transport)
    else:
        transport.abort()


def kernel_unsent(sock: socket.socket | None) -> int:
    """Bytes in the kernel's send queue of `sock` not yet taken by the peer (Linux
    SIOCOUTQ); 0 where the kernel cannot say. How a stopped reader is seen while its
    backlog still fits in the kernel's autotuned buffer (gochat.stalls)."""
    if sock is None or _OUTQ is None:
        return 0
    try:
        answer = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", answer)[0])


def tune_socket(sock: socket.socket, sndbuf: int) -> None:
    """Keepalive finds half-open peers; no Nagle, chat lines are small and urgent.

    The kernel's send buffer is its own (autotuned) unless GOCHAT_SOCKET_SNDBUF
    says otherwise: a reader behind a burst then waits in the kernel, not in
    our process, and gochat.stalls still sees one that stopped.
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
