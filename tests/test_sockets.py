"""gochat.sockets: the close policy meets a peer that is already gone."""

from __future__ import annotations

import asyncio
import socket

from gochat.sockets import close_within, kernel_unsent


class ResetTransport:
    """A plain TCP transport whose peer reset before our FIN: write_eof fails (ENOTCONN)."""

    def __init__(self) -> None:
        self.aborted = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(107, "Transport endpoint is not connected")

    def abort(self) -> None:
        self.aborted = True


async def test_a_half_close_to_a_peer_that_reset_aborts_instead_of_raising() -> None:
    """Found by a departure storm with SIGTERM behind it: the shutdown's close of a
    connection whose client had just reset raised, and the daemon exited 1 or hung."""
    transport = ResetTransport()
    close_within(transport, asyncio.get_running_loop(), half_close=True)  # type: ignore[arg-type]
    assert transport.aborted


def test_kernel_unsent_counts_what_a_stopped_peer_has_not_taken() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        assert kernel_unsent(peer) == 0
        peer.setblocking(False)
        sent = 0
        try:
            while sent < 8 << 20:
                sent += peer.send(b"x" * 65536)
        except BlockingIOError:
            pass
        assert 0 < kernel_unsent(peer) <= sent
        assert kernel_unsent(None) == 0
    finally:
        for sock in (client, peer, server):
            sock.close()
