"""Scenario 3: slow-loris at the name prompt and readers that stop reading.

500 connections trickle one byte at a time at the name prompt (half of them
first park a nearly full line, the worst a slow-loris can hold), and 500 log
in and then never read again. The name timeout sheds the first kind, the
send-queue cap the second; honest users keep chatting throughout and the
process's memory is reported before, during and after.

CI runs this with a 2 s name timeout and a 64 KiB send queue so it finishes
in seconds; the defaults (60 s, 256 KiB) only change how long the attackers
last, not what happens. `bench/soak.py` runs the long version.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ..conftest import wait_until
from .support import (
    HonestChat,
    attackers_gone,
    open_fds,
    raw_socket,
    read_until_eof,
    release_free_memory,
    rss_mb,
    snapshot,
    spread,
)

TRICKLERS = 500
STALLERS = 500
NAME_TIMEOUT = 2.0
TRICKLE_EVERY = 0.4  # seconds between bytes ("every few seconds", scaled to the timeout)
PARKED = 8000  # bytes of unfinished line a trickler may park first (cap is 8192)


async def _connect_all(port: int, addresses: list[str], rcvbuf: int = 0) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for start in range(0, len(addresses), 100):
        batch = addresses[start : start + 100]
        socks += await asyncio.gather(*(raw_socket(port, a, rcvbuf=rcvbuf) for a in batch))
    return socks


def _connect_now(port: int, addresses: list[str]) -> list[socket.socket]:
    """Connect every address without yielding to the loop: the kernel completes the
    handshakes into the listen backlog and the server accepts them all in one burst,
    so their name timeouts start together, after the last one is connected."""
    socks: list[socket.socket] = []
    try:
        for local in addresses:
            sock = socket.socket()
            socks.append(sock)
            sock.bind((local, 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def _trickle(socks: list[socket.socket], stop: asyncio.Event) -> None:
    """One byte per socket every TRICKLE_EVERY seconds, never a line end."""
    while not stop.is_set():
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"z")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TRICKLE_EVERY)


async def test_slowloris_and_stalled_readers(make_server):
    """1000 slow attackers are shed by the name timeout and the stall timeout; chat flows."""
    server = await make_server(
        name_timeout=NAME_TIMEOUT,
        sendq_bytes=65536,
        socket_sndbuf=4096,
        stall_timeout=3.0,
        rate_messages=60,
        max_connections=2000,
    )
    port = server.ports["plain"]
    counters = server.core.counters
    release_free_memory()
    async with HonestChat(server, period=0.2, size=900) as honest:
        before = snapshot(server)
        fds_before = open_fds()
        rss_before = rss_mb()
        logins0, sendq0 = counters.logins, counters.sendq_disconnects
        timeouts0 = counters.disconnects["name timeout"]

        # Stalled readers: a tiny receive buffer, a name, and then never a read. They last
        # until the honest chat fills their send queues: seconds, not a loop turn.
        stallers = await _connect_all(port, list(spread(STALLERS, 10, 31)), rcvbuf=2048)
        for i, sock in enumerate(stallers):
            sock.send(b"stall%d\r\n" % i)
        await wait_until(
            lambda: counters.logins - logins0 == STALLERS, 30, f"{STALLERS} stallers logged in"
        )
        peak = rss_mb()
        tricklers = _connect_now(port, list(spread(TRICKLERS, 10, 30)))
        for sock in tricklers[::2]:
            sock.send(b"p" * PARKED)
        attack = before["connections"] + TRICKLERS + STALLERS
        await wait_until(
            lambda: server.stats()["connections"] == attack, 10, "all 1000 attackers at once"
        )
        stop = asyncio.Event()
        trickle = asyncio.create_task(_trickle(tricklers, stop))

        async def sample() -> None:  # a figure for the report, not a condition
            nonlocal peak
            while True:
                peak = max(peak, rss_mb())
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())

        def shed() -> bool:
            return (
                counters.disconnects["name timeout"] - timeouts0 == TRICKLERS
                and counters.sendq_disconnects - sendq0 == STALLERS
                and server.stats()["connections"] == before["connections"]
            )

        try:
            await wait_until(shed, 60, "the name timeout and the send-queue cap to shed all")
        finally:
            sampler.cancel()
            stop.set()
            await trickle

        # Every trickler was told why and closed by the server, not by us.
        farewells = await asyncio.gather(*(read_until_eof(s) for s in tricklers[:50]))
        for text in farewells:
            assert b"No name chosen within 2 seconds. Goodbye." in text
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()
        for sock in (*tricklers, *stallers):
            sock.close()
        await wait_until(lambda: open_fds() <= fds_before, what=f"descriptors back to {fds_before}")
        release_free_memory()
        rss_after = rss_mb()

        assert counters.disconnects["name timeout"] - timeouts0 == TRICKLERS
        assert counters.logins - logins0 == STALLERS
        assert counters.sendq_disconnects - sendq0 == STALLERS
        print(
            f"\nslow-loris: {TRICKLERS} tricklers + {STALLERS} stalled readers, "
            f"all {TRICKLERS + STALLERS} connected at once; RSS before {rss_before:.1f} MB, "
            f"during {peak:.1f} MB, after {rss_after:.1f} MB (server and test clients share "
            f"one process; 'after' is measured once freed memory is handed back); "
            f"{honest.figures()}"
        )
        assert peak - rss_before < 100, "memory grew by more than 100 MB"
        assert rss_after - rss_before < 20, "memory still held after the attackers left"
