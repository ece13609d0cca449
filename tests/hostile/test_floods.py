"""Scenario 4: floods of lines, of commands and of connections.

A client that sends as fast as it can is rate limited, told once per window
and then disconnected as a flood, after a bounded number of lines. Commands
whose cost grows with the number of users or lobbies (/join and /create
announce to a whole lobby and make state, /users and /lobbies list everyone)
are held to the same budget. Connection floods meet the per-IP cap from one
address and the global cap from 200 addresses, each refused client with one
clear line. Honest users chat throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from gochat.chat import MAX_LOBBIES
from gochat.server import SERVER_FULL, TOO_MANY_FROM_IP

from ..conftest import ChatClient, wait_until
from .support import (
    HonestChat,
    address,
    attackers_gone,
    raw_socket,
    release_free_memory,
    rss_mb,
    snapshot,
    spread,
)

RATE = 50  # messages per 10 s: room for the honest users' steady talk (4 a second)
FLOOD_FACTOR = 1  # refused lines in a window before the cut: RATE of them
FLOOD_LINES = FLOOD_FACTOR * RATE


async def _flood(client: ChatClient, payload: bytes, limit: float = 15.0) -> str:
    """Write `payload` over and over, reading replies, until the server hangs up.

    Gives up after `limit` seconds: a flood the server never cuts off fails the test.
    """
    received = bytearray()
    deadline = asyncio.get_running_loop().time() + limit

    async def read() -> None:
        while chunk := await client.reader.read(1 << 20):
            received.extend(chunk)

    reader = asyncio.create_task(read())
    with contextlib.suppress(ConnectionError, OSError):
        while not reader.done():
            if asyncio.get_running_loop().time() > deadline:
                reader.cancel()
                break
            client.writer.write(payload)
            await asyncio.wait_for(client.writer.drain(), 10)
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        await asyncio.wait_for(reader, 10)
    await client.close()
    return received.decode("utf-8", "replace")


async def test_message_flood_is_cut_off(make_server):
    """Chat lines at full speed: RATE get through, one notice, then a flood disconnect."""
    server = await make_server(rate_messages=RATE, flood_factor=FLOOD_FACTOR)
    counters = server.core.counters
    async with HonestChat(server, period=0.25, keep_text=True) as honest:
        before = snapshot(server)
        flooder = await ChatClient.connect(server.ports["plain"], local=address(40, 0))
        await flooder.login("flooder")
        refused0 = counters.rate_limited
        cpu0, wall0 = time.process_time(), time.monotonic()
        text = await _flood(flooder, b"".join(b"spam %05d\r\n" % i for i in range(2000)))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        assert 1 <= text.count("Rate limited!") <= 1 + wall  # at most one a second
        assert "Disconnected for flooding" in text
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()
        spam_seen = [t for t in honest.listeners[1].text_lines if "╰─> spam " in t]
        assert len(spam_seen) == RATE
        assert counters.rate_limited - refused0 == FLOOD_LINES + 1
        print(
            f"\nmessage flood: {RATE} lines relayed, {FLOOD_LINES + 1} refused, then cut off "
            f"after {wall * 1e3:.0f} ms costing {cpu * 1e3:.0f} ms CPU (server and flooder "
            f"share the process); {honest.figures()}"
        )


COMMAND_FLOODS = {
    # command lines, what must stay bounded
    "join": b"/join den\r\n/join general\r\n",
    "create": None,  # a fresh lobby name per line
    "users": b"/users\r\n",
    "lobbies": b"/lobbies\r\n",
}


@pytest.mark.parametrize("kind", list(COMMAND_FLOODS))
async def test_command_flood_is_cut_off(make_server, kind: str):
    """Commands that fan out, make state or list everyone cannot be spammed either."""
    server = await make_server(rate_messages=RATE, flood_factor=FLOOD_FACTOR)
    if kind == "join":
        server.core.lobbies.add("den", creator="h0", description="", password_hash=None, now=0.0)
    async with HonestChat(server, period=0.25, keep_text=True) as honest:
        before = snapshot(server)
        lobbies0 = len(server.core.lobbies)
        flooder = await ChatClient.connect(server.ports["plain"], local=address(41, 0))
        await flooder.login("flooder")
        payload = COMMAND_FLOODS[kind] or b"".join(b"/create x%05d\r\n" % i for i in range(3000))
        wall0 = time.monotonic()
        text = await _flood(flooder, payload)
        wall = time.monotonic() - wall0
        assert "Disconnected for flooding" in text
        assert 1 <= text.count("Rate limited!") <= 1 + wall  # at most one a second
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()
        presence = [t for t in honest.listeners[1].text_lines if "flooder" in t]
        assert len(presence) <= RATE + 2  # at most one notice per permitted command
        assert len(server.core.lobbies) - lobbies0 <= RATE
        print(
            f"\n/{kind} flood: honest users saw {len(presence)} lines about the flooder; "
            f"{honest.figures()}"
        )


async def _opening(client: ChatClient) -> str:
    """'prompt' if the server let the client in, else everything it said before hanging up."""
    try:
        await client.expect("Enter your username: ", timeout=10)
    except ConnectionError:
        return client.buffer
    return "prompt"


async def test_connection_flood_from_one_address(make_server):
    """60 connections at once from one address: 10 get the prompt, 50 one line and a close."""
    server = await make_server(rate_messages=RATE)
    port = server.ports["plain"]
    refused0 = server.core.counters.connections_refused
    async with HonestChat(server, period=0.25) as honest:
        before = snapshot(server)
        clients = await asyncio.gather(
            *(ChatClient.connect(port, local=address(42, 0)) for _ in range(60))
        )
        outcomes = await asyncio.gather(*(_opening(c) for c in clients))
        assert outcomes.count("prompt") == 10
        refusals = [o for o in outcomes if o != "prompt"]
        assert refusals == [TOO_MANY_FROM_IP + "\r\n"] * 50
        assert server.core.counters.connections_refused - refused0 == 50
        assert server.counter.count(address(42, 0)) == 10
        for client in clients:
            await client.close()
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()


async def test_connection_flood_from_200_addresses(make_server):
    """200 addresses against 100 free slots: 100 prompts, 100 'server is full' and a close."""
    honest_users = 3
    server = await make_server(rate_messages=RATE, max_connections=honest_users + 100)
    port = server.ports["plain"]
    async with HonestChat(server, honest_users, period=0.25) as honest:
        before = snapshot(server)
        clients: list[ChatClient] = []
        for start in range(0, 200, 50):
            clients += await asyncio.gather(
                *(ChatClient.connect(port, local=address(43, i)) for i in range(start, start + 50))
            )
        outcomes = await asyncio.gather(*(_opening(c) for c in clients))
        assert outcomes.count("prompt") == 100
        assert [o for o in outcomes if o != "prompt"] == [SERVER_FULL + "\r\n"] * 100
        assert server.stats()["connections"] == honest_users + 100
        assert server.stats()["ip_keys"] == honest_users + 100
        for client in clients:
            await client.close()
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()
        # With the attackers gone there is room again.
        late = await ChatClient.connect(port, local=address(43, 250))
        await late.expect("Enter your username: ")
        await late.close()


async def test_lobby_count_is_capped(make_server):
    """Lobbies cost memory (and store rows) until pruned, so their number is capped."""
    server = await make_server(rate_messages=0)
    async with HonestChat(server, period=0.25) as honest:
        creator = await ChatClient.connect(server.ports["plain"], local=address(44, 0))
        await creator.login("creator")
        creator.writer.write(b"".join(b"/create c%04d\r\n" % i for i in range(MAX_LOBBIES + 20)))
        await creator.expect(f"The server holds at most {MAX_LOBBIES} lobbies", timeout=20)
        assert len(server.core.lobbies) == MAX_LOBBIES
        await creator.close()
        await honest.finish()
        honest.check()


async def test_tiny_line_flood_memory_stays_bounded(make_server):
    """200 users each pour 2 MB of empty lines: input is split into lines a slice at a time.

    Empty lines cost nothing to answer, so nothing disconnects these clients; what
    must not happen is each 256 KiB read turning into a quarter million line objects.
    """
    server = await make_server(rate_messages=RATE)
    port = server.ports["plain"]
    loop = asyncio.get_running_loop()
    release_free_memory()
    async with HonestChat(server, period=0.25) as honest:
        before = snapshot(server)
        rss_before = rss_mb()
        socks = []
        for i, local in enumerate(spread(200, 10, 45)):
            sock = await raw_socket(port, local)
            sock.send(b"tiny%d\r\n" % i)
            socks.append(sock)
        await wait_until(lambda: len(server.core.clients) == 203, 10, "pourers logged in")
        payload = b"\n" * (256 * 1024)

        async def pour(sock: socket.socket) -> None:
            with contextlib.suppress(OSError):
                for _ in range(8):
                    await loop.sock_sendall(sock, payload)

        pouring = asyncio.gather(*(pour(s) for s in socks))
        peak = rss_mb()
        async with asyncio.timeout(120):  # against hanging; the sampling is a figure
            while not pouring.done():
                await asyncio.sleep(0.05)
                peak = max(peak, rss_mb())
        await pouring
        for sock in socks:
            sock.close()
        await honest.finish()
        # 400 MB of line ends take the server a while to work through on a busy machine.
        await attackers_gone(server, before, 120)
        honest.check()
        print(
            f"\ntiny-line flood: 200 x 2 MB of empty lines; RSS {rss_before:.1f} MB before, "
            f"peak {peak:.1f} MB; {honest.figures()}"
        )
        assert peak - rss_before < 100
