"""The two lower layers on their own: the text front end with no socket, and the
transport adapter over `socket.socketpair()` with a front end that only records.

The third layer, the whole server on port 0, is the rest of the suite.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from gochat.frontends.text import IllegalTransition, State, TextFrontEnd
from gochat.transport import Connection

from .conftest import wait_until


class RecordingLink:
    """What a front end may ask of its connection, recorded instead of done."""

    def __init__(self) -> None:
        self.address = "192.0.2.7"
        self.ip_key = "192.0.2.7"
        self.eof = False
        self.sent = bytearray()
        self.closed: list[bool] = []  # the abort flag of each close
        self.paused = False
        self.timer: float | None = None

    def write(self, data: bytes, lobby: str | None = None) -> None:
        self.sent += data

    def close(self, *, abort: bool = False) -> None:
        self.closed.append(abort)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_timer(self, when: float) -> None:
        self.timer = when

    def cancel_timer(self) -> None:
        self.timer = None

    def take(self) -> str:
        text, self.sent = self.sent.decode(), bytearray()
        return text


async def test_text_front_end_is_bytes_in_bytes_out(make_server):
    """Greeting, name, a line, /quit: all through the link, no socket involved."""
    server = await make_server()
    link = RecordingLink()
    front = TextFrontEnd(server, link)  # type: ignore[arg-type]
    front.start()
    assert link.take().endswith("Enter your username: ")
    assert link.timer == pytest.approx(front.last_activity + server.config.name_timeout)
    front.receive(b"ali")
    assert link.sent == b""  # half a line: nothing to answer yet
    front.receive(b"ce\r\n")
    assert "Welcome, alice!" in link.take()
    assert front.state is State.CHAT
    assert link.timer == pytest.approx(front.last_activity + server.config.idle_timeout)
    front.receive(b"hello\r\n")
    assert "╰─> hello\r\n" in link.take()
    front.receive(b"/quit\r\n")
    assert link.take() == "Goodbye! Thanks for chatting.\r\n"
    assert link.closed == [False] and front.state is State.CLOSED
    front.receive(b"after the end\r\n")
    assert link.sent == b""
    assert "alice" not in server.core.clients


async def test_text_front_end_holds_lines_while_a_command_runs(make_server):
    """A /create with a password hashes off the loop; reading pauses, later lines wait."""
    server = await make_server()
    link = RecordingLink()
    front = TextFrontEnd(server, link)  # type: ignore[arg-type]
    front.start()
    front.receive(b"bob\r\n/create vault s3cret the safe\r\nfirst in the vault\r\n")
    assert link.paused and front.task is not None
    await wait_until(lambda: not link.paused, what="the hash and the held line")
    text = link.take()
    assert text.index("Lobby #vault created") < text.index("╰─> first in the vault")


async def test_an_illegal_transition_is_an_error(make_server):
    """CHAT never goes back to NAME: the state table refuses it."""
    server = await make_server()
    front = TextFrontEnd(server, RecordingLink())  # type: ignore[arg-type]
    front.start()
    front.receive(b"carol\r\n")
    with pytest.raises(IllegalTransition, match="chat -> name"):
        front._enter(State.NAME)


class RecordingFront:
    """A front end that only records what its connection tells it."""

    def __init__(self, link: Connection) -> None:
        self.link = link
        self.events: list[object] = []

    def refusal(self, text: str) -> bytes:
        return text.encode()

    def start(self) -> None:
        self.events.append("start")
        self.link.write(b"hello\n")

    def receive(self, data: bytes) -> None:
        self.events.append(data)

    def end_of_input(self) -> None:
        self.events.append("eof")
        self.link.write(b"bye\n")
        self.link.close()

    def timer_expired(self) -> None:
        self.events.append("timer")

    def closing(self, reason: str, *, abort: bool) -> None:
        self.events.append(("closing", reason, abort))

    def lost(self) -> None:
        self.events.append("lost")

    def shutdown(self, notice: str) -> None:
        self.events.append(("shutdown", notice))

    def who(self) -> str:
        return "recorder"

    def received(self) -> bytes:
        return b"".join(event for event in self.events if isinstance(event, bytes))


async def test_adapter_over_a_socketpair(make_server):
    """Bytes reach the front end in order; writes go out once per turn; EOF then close."""
    server = await make_server()
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    fronts: list[RecordingFront] = []

    def front_end(link: Connection) -> RecordingFront:
        fronts.append(RecordingFront(link))
        return fronts[-1]

    transport, connection = await loop.connect_accepted_socket(
        lambda: Connection(server, "plain", None, front_end), sock=ours
    )
    [front] = fronts
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        writer.write(b"one ")
        writer.write(b"two\n")
        await writer.drain()
        await wait_until(
            lambda: b"".join(e for e in front.events if isinstance(e, bytes)) == b"one two\n"
        )
        connection.write(b"a")
        connection.write(b"b")
        assert connection.outbox == [b"a", b"b"]  # queued, written at the end of the turn
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ab"
        connection.set_timer(loop.time())
        await wait_until(lambda: "timer" in front.events, what="the timer")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"bye\n"  # then EOF
        await wait_until(lambda: "lost" in front.events, what="the connection to end")
        assert front.events[0] == "start" and "eof" in front.events
        assert server.stats()["connections"] == 0
    finally:
        writer.close()
        transport.close()


class Flushable:
    """A connection as the server's flush pass sees it."""

    def __init__(self, log: list[int], n: int) -> None:
        self.log, self.n = log, n

    def flush(self) -> None:
        self.log.append(self.n)


async def test_a_big_flush_pass_lets_the_loop_poll_between_chunks(make_server):
    """2,500 connections with output in one turn are written 1,000 per callback, in order:
    the loop polls sockets between the chunks instead of after all 2,500 sends."""
    from gochat.server import FLUSH_CHUNK

    server = await make_server()
    written: list[int] = []
    for n in range(2500):
        server.flush_soon(Flushable(written, n))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # one loop iteration: exactly the first chunk has run
    assert written == list(range(FLUSH_CHUNK))
    await wait_until(lambda: len(written) == 2500, what="the other chunks")
    assert written == list(range(2500))
