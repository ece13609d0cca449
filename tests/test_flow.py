"""Flow control over real sockets: a reader that keeps draining is never dropped for
lag (its oldest chat lines are skipped and it is told), one that stops is dropped after
GOCHAT_STALL_TIMEOUT, output that may not be skipped has a hard cap, and a sender slow
to read its own echoes stays. The policy itself is tested sans-IO in test_backlog.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

from .conftest import ChatClient, free_port, wait_until

LINES = 2000
BODY = "q" * 400
SKIPPED = "messages skipped in #general; /history to catch up"


async def small_client(port: int) -> ChatClient:
    """A client whose socket takes little at a time: its reading is easy to hold back."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return ChatClient(*await asyncio.open_connection(sock=sock))


@contextlib.asynccontextmanager
async def reading_slowly(client: ChatClient, every: float = 0.05):
    """Read for a moment every `every` seconds (a reader on a slow link), until the block ends."""
    transport = client.reader._transport  # type: ignore[attr-defined]
    stop = asyncio.Event()

    async def trickle() -> None:
        while not stop.is_set():
            transport.pause_reading()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            transport.resume_reading()
            await asyncio.sleep(0.002)  # pacing the simulated link, not waiting for a result

    task = asyncio.create_task(trickle())
    try:
        yield
    finally:
        stop.set()
        await task
        transport.resume_reading()


def burst(count: int = LINES) -> bytes:
    return b"".join(f"n{i:05d} {BODY}\r\n".encode() for i in range(count))


async def test_a_slow_reader_skips_old_lines_and_is_not_dropped(make_server):
    """Behind by a whole burst but draining: not dropped; told how many lines it missed,
    then given the newest; a healthy reader meanwhile gets every line, in order."""
    server = await make_server(
        rate_messages=0, sendq_bytes=16384, socket_sndbuf=8192, stall_timeout=2.0
    )
    port = server.ports["plain"]
    sender = await (await ChatClient.connect(port)).login("sender")
    healthy = await (await ChatClient.connect(port)).login("healthy")
    slow = await (await small_client(port)).login("slow")
    async with reading_slowly(slow):
        sender.writer.write(burst())
        text = await healthy.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
        assert [int(p[1:6]) for p in text.split("╰─> ")[1:]] == list(range(LINES))
        seen = await slow.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
    assert SKIPPED in seen
    skipped = int(seen.split(SKIPPED)[0].rsplit("⚠ ", 1)[1].split()[0])
    got = [int(p[1:6]) for p in seen.split("╰─> ")[1:]]
    assert got == sorted(got) and len(got) + skipped == LINES  # nothing lost unannounced
    assert "slow" in server.core.clients
    assert not server.core.counters.disconnects["stalled"]
    assert not server.core.counters.disconnects["SendQ exceeded"]
    for client in (sender, healthy, slow):
        await client.close()


async def test_a_sender_slow_to_read_its_echoes_stays(make_server):
    """The sender pastes a burst and reads nothing until everyone else has it: it is
    behind on its own lines, not gone, and is kept."""
    server = await make_server(rate_messages=0, sendq_bytes=16384, socket_sndbuf=8192)
    port = server.ports["plain"]
    sender = await (await small_client(port)).login("sender")
    healthy = await (await ChatClient.connect(port)).login("healthy")
    sender.reader._transport.pause_reading()  # type: ignore[attr-defined]
    sender.writer.write(burst())
    await healthy.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
    sender.reader._transport.resume_reading()  # type: ignore[attr-defined]
    echoes = await sender.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
    assert SKIPPED in echoes and "sender" in server.core.clients
    for client in (sender, healthy):
        await client.close()


async def test_a_stopped_reader_is_dropped_after_the_stall_timeout(make_server):
    """Nothing read while output waits: dropped (a TCP reset), everyone else goes on,
    even while all it was sent still fits in the kernel's own (autotuned) send buffer."""
    server = await make_server(rate_messages=0, stall_timeout=1.0)
    port = server.ports["plain"]
    sender = await (await ChatClient.connect(port)).login("sender")
    stopped = await (await small_client(port)).login("stopped")
    stopped.reader._transport.pause_reading()  # type: ignore[attr-defined]
    sender.writer.write(burst())
    await sender.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
    await wait_until(lambda: "stopped" not in server.core.clients, what="the stopped reader")
    assert server.core.counters.disconnects["stalled"] == 1
    await sender.send("still here")
    await sender.expect("still here")
    for client in (sender, stopped):
        await client.close()


async def test_output_that_is_never_skipped_has_a_hard_cap(make_server):
    """A tag from a lobby you are not in is a heads-up that is never skipped: a reader
    that lets them pile past GOCHAT_SENDQ_HARD is dropped; the tagger, whose own copies
    are chat lines, is not."""
    server = await make_server(
        rate_messages=0, sendq_hard=262144, socket_sndbuf=4096, max_message=2000
    )
    port = server.ports["plain"]
    sender = await (await ChatClient.connect(port)).login("sender")
    stopped = await (await small_client(port)).login("stopped")
    await stopped.send("/create elsewhere")
    await stopped.expect("You are now in #elsewhere")
    stopped.reader._transport.pause_reading()  # type: ignore[attr-defined]
    tags = b"".join(f"/tag stopped t{i:04d} {'z' * 1500}\r\n".encode() for i in range(300))
    sender.writer.write(tags)
    await wait_until(lambda: "stopped" not in server.core.clients, what="the hard cap")
    assert server.core.counters.disconnects["SendQ exceeded"] == 1
    assert "sender" in server.core.clients
    await sender.send("still here")  # the later tags found nobody: the sender is told so
    await sender.expect("╰─> still here", timeout=30)
    for client in (sender, stopped):
        await client.close()


async def test_a_json_reader_behind_gets_a_typed_skipped_event_and_no_seq_gap(make_server):
    """JSON: one `skipped` object per lobby with the count; `seq` stays gapless, because
    lines are numbered as they are handed over and skipped ones never were."""
    server = await make_server(
        rate_messages=0,
        sendq_bytes=16384,
        socket_sndbuf=8192,
        stall_timeout=2.0,
        json_port=free_port(),
    )
    sender = await (await ChatClient.connect(server.ports["plain"])).login("sender")
    bot = await small_client(server.ports["json"])
    await bot.send(json.dumps({"cmd": "login", "name": "slowbot", "id": 1}), end=b"\n")
    await bot.expect('"type":"ok","re":1}\n')
    async with reading_slowly(bot):
        sender.writer.write(burst())
        text = await bot.expect(f"n{LINES - 1:05d} ", timeout=30)
        text += await bot.expect("\n")
    objects = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    seqs = [obj["seq"] for obj in objects]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    skipped = [obj for obj in objects if obj["type"] == "skipped"]
    messages = [obj for obj in objects if obj["type"] == "message"]
    assert skipped and all(obj["lobby"] == "general" for obj in skipped)
    assert sum(obj["count"] for obj in skipped) + len(messages) == LINES
    await sender.close()
    await bot.close()


async def test_a_reader_behind_who_quits_still_gets_the_goodbye(make_server):
    """What waits in a backlog goes out on a polite close, the goodbye last."""
    server = await make_server(rate_messages=0, sendq_bytes=16384, socket_sndbuf=8192)
    port = server.ports["plain"]
    sender = await (await ChatClient.connect(port)).login("sender")
    behind = await (await small_client(port)).login("behind")
    behind.reader._transport.pause_reading()  # type: ignore[attr-defined]
    sender.writer.write(burst())
    await sender.expect(f"╰─> n{LINES - 1:05d} ", timeout=30)
    await wait_until(lambda: any(c.backlog is not None for c in server.sessions), what="a backlog")
    await behind.send("/quit")
    behind.reader._transport.resume_reading()  # type: ignore[attr-defined]
    text = await behind.read_until_closed(timeout=30)
    assert text.rstrip().endswith("Goodbye! Thanks for chatting.")
    assert SKIPPED in text
    await sender.close()
