"""Scenario 5: half-open and abrupt clients, on the plain and the TLS port.

Clients reset the connection in the middle of a line, with lines still queued,
while a bcrypt hash runs for them; half-close; give up half way through a TLS
handshake or never finish one; speak plain text to the TLS port and TLS to the
plain port. Honest users (one of them over TLS) keep chatting, and afterwards
the server's connections, per-IP counters, clients, tasks and file descriptors
are back where they were: nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import struct
import threading
from pathlib import Path

import bcrypt
import pytest

from ..conftest import ChatClient, tls_client_context, wait_until
from .support import (
    HonestChat,
    address,
    attackers_gone,
    open_fds,
    raw_socket,
    read_until_eof,
    reset,
    snapshot,
)

HANDSHAKE_TIMEOUT = 1.0
LEFT = re.compile(r"(\S+) left the chat")


def client_hello() -> bytes:
    """The first flight of a real TLS client, made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_client_context().wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture
async def tls_server(make_server, cert: tuple[Path, Path]):
    crt, key = cert
    return await make_server(
        tls_cert=str(crt),
        tls_key=str(key),
        tls_port=0,
        tls_handshake_timeout=HANDSHAKE_TIMEOUT,
        rate_messages=50,
        bcrypt_rounds=10,
        presence_batch=100,  # each departure on its own line, so each can be checked by name
    )


def has_data(sock: socket.socket) -> bool:
    """Whether something has arrived on non-blocking `sock` (left unread)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


class TlsHonestChat(HonestChat):
    """Honest users where the last one is connected over TLS."""

    async def start(self) -> None:
        port = self.server.ports["plain"]
        tls_port = self.server.ports["tls"]
        connect = ChatClient.connect

        async def tls_connect(_port: int, *, local: str) -> ChatClient:
            if local.endswith(str(1 + self.count)):
                return await connect(tls_port, local=local, ssl=tls_client_context())
            return await connect(port, local=local)

        ChatClient.connect = tls_connect  # type: ignore[method-assign]
        try:
            await super().start()
        finally:
            ChatClient.connect = connect  # type: ignore[method-assign]


async def _check_nothing_leaked(server, honest: HonestChat, before: dict, fds: int) -> None:
    await honest.finish()
    await attackers_gone(server, before)
    await wait_until(lambda: open_fds() <= fds, 10, f"file descriptors back to {fds}")
    honest.check()


class GatedHash:
    """bcrypt.hashpw that holds every hash at a gate, so a test knows one is running."""

    def __init__(self) -> None:
        self.real = bcrypt.hashpw
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started = self.finished = 0

    def __call__(self, secret: bytes, salt: bytes) -> bytes:
        with self.lock:
            self.started += 1
        try:
            self.gate.wait(30)
            return self.real(secret, salt)
        finally:
            with self.lock:
                self.finished += 1


async def _plain_attackers(port: int) -> list[socket.socket]:
    """At the prompt mid-name, after login mid-line, with lines queued, in a bcrypt hash."""
    socks = []
    for i in range(10):
        sock = await raw_socket(port, address(50, i))
        sock.send(b"half a na")
        socks.append(sock)
    for i in range(10, 20):
        sock = await raw_socket(port, address(50, i))
        sock.send(b"gone%d\r\nhalf a message with no end" % i)
        socks.append(sock)
    for i in range(20, 25):
        sock = await raw_socket(port, address(50, i))
        sock.send(b"queued%d\r\n" % i + b"/help\r\n" * 300 + b"partial")
        socks.append(sock)
    for i in range(25, 30):
        sock = await raw_socket(port, address(50, i))
        sock.send(b"hasher%d\r\n/create vault%d s3cretpw locked room\r\nmore\r\n" % (i, i))
        socks.append(sock)
    return socks


async def test_resets_mid_line(tls_server, caplog: pytest.LogCaptureFixture, monkeypatch):
    """RST mid-name, mid-message, with queued lines and during a bcrypt hash: nothing leaks."""
    caplog.set_level(logging.WARNING)
    server = tls_server
    hashing = GatedHash()
    monkeypatch.setattr(bcrypt, "hashpw", hashing)
    try:
        async with TlsHonestChat(server, keep_text=True) as honest:
            before, fds = snapshot(server), open_fds()
            users = len(server.core.clients)
            socks = await _plain_attackers(server.ports["plain"])
            await wait_until(
                lambda: len(server.core.clients) == users + 20 and hashing.started == 5,
                what="20 attackers logged in, 5 of them hashing a lobby password",
            )
            for sock in socks:
                reset(sock)
            await _check_nothing_leaked(server, honest, before, fds)
            # Each of the 20 logged-in attackers left #general visibly, exactly once; the 10
            # still at the name prompt were never in it. (Waited for: the departure lines
            # may still be on their way to h1 when the counters are back.)
            watcher = honest.listeners[1]
            logged_in = [f"gone{i}" for i in range(10, 20)]
            logged_in += [f"queued{i}" for i in range(20, 25)]
            logged_in += [f"hasher{i}" for i in range(25, 30)]

            def departed() -> list[str]:
                lines = watcher.text_lines
                return sorted(m.group(1) for t in lines if (m := LEFT.search(t)))

            await wait_until(
                lambda: departed() == sorted(logged_in), what="20 'left the chat' lines"
            )
            # The hashes finish after their connections are gone: no lobby may appear.
            hashing.gate.set()
            await wait_until(lambda: hashing.finished == 5, what="the hashes to finish")
            # A positive round trip through the same path: an honest /create hashes behind
            # the same gate and its lobby appears, so the five abandoned hashes' results
            # have reached the loop before it (they finished before this one started).
            await watcher.client.send("/create proof s3cretpw a proof room")
            await wait_until(
                lambda: any("Lobby #proof created" in t for t in watcher.text_lines),
                what="the honest /create to finish",
            )
            assert hashing.finished == 6
            assert [lobby.name for lobby in server.core.lobbies] == ["general", "proof"]
    finally:
        hashing.gate.set()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_half_close_at_prompt(tls_server):
    """A client that sends half a name and then FIN is closed, not kept half-open."""
    server = tls_server
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        socks = [await raw_socket(server.ports["plain"], address(51, i)) for i in range(20)]
        for sock in socks:
            sock.send(b"half")
            sock.shutdown(socket.SHUT_WR)
        for sock in socks:
            await read_until_eof(sock, 5)
            sock.close()
        await _check_nothing_leaked(server, honest, before, fds)


async def test_tls_handshakes_abandoned(tls_server):
    """Close or reset mid-handshake, or never finish one: closed, counted, released."""
    server = tls_server
    port = server.ports["tls"]
    hello = client_hello()
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        socks = []
        for i in range(30):
            sock = await raw_socket(port, address(52, i))
            kind = i % 3
            if kind == 0:
                sock.send(hello[: len(hello) // 2])  # half a ClientHello, then FIN
                sock.shutdown(socket.SHUT_WR)
            elif kind == 1:
                sock.send(hello)  # a whole ClientHello, then RST before the reply is read
            socks.append(sock)  # kind 2: silent until the handshake timeout
        # The server has answered each whole ClientHello: the reset lands mid-handshake.
        await wait_until(
            lambda: all(map(has_data, socks[1::3])), what="the server's reply to each ClientHello"
        )
        for sock in socks[1::3]:
            reset(sock)
        for sock in socks[0::3] + socks[2::3]:
            await read_until_eof(sock, HANDSHAKE_TIMEOUT + 5)
            sock.close()
        await _check_nothing_leaked(server, honest, before, fds)


async def test_handshakes_count_against_the_per_ip_cap(make_server, cert: tuple[Path, Path]):
    """Handshakes in progress are connections: the 11th from one address is refused at once."""
    server = await make_server(
        tls_cert=str(cert[0]), tls_key=str(cert[1]), tls_port=0, tls_handshake_timeout=30.0
    )
    port = server.ports["tls"]
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        socks = [await raw_socket(port, address(53, 0)) for _ in range(30)]
        await wait_until(
            lambda: server.counter.count(address(53, 0)) == 10, 5, "10 pending handshakes counted"
        )
        assert server.stats()["connections"] == before["connections"] + 10
        # The 20 refused are closed at once (no plain-text line: a TLS client could not read it),
        # long before the 30 s handshake timeout would have freed them.
        closed = await asyncio.gather(*(read_until_eof(s, 10) for s in socks[10:]))
        assert closed == [b""] * 20
        for sock in socks:
            sock.close()
        await _check_nothing_leaked(server, honest, before, fds)


async def test_plain_text_on_the_tls_port(tls_server):
    """An nc user on the TLS port is hung up on; nothing is logged as an error, nothing leaks."""
    server = tls_server
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        for i in range(10):
            sock = await raw_socket(server.ports["tls"], address(54, i))
            sock.send(b"alice\r\nhello everyone\r\n")
            await read_until_eof(sock, HANDSHAKE_TIMEOUT + 5)
            sock.close()
        await _check_nothing_leaked(server, honest, before, fds)


async def test_tls_on_the_plain_port(tls_server):
    """A ClientHello on the plain port gets one line naming the TLS port, then a close."""
    server = tls_server
    hello = client_hello()
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        for i in range(10):
            sock = await raw_socket(server.ports["plain"], address(55, i))
            sock.send(hello)
            text = await read_until_eof(sock, 5)
            assert f"TLS is on port {server.ports['tls']}".encode() in text
            sock.close()
        await _check_nothing_leaked(server, honest, before, fds)


async def test_tls_user_resets_mid_line(tls_server):
    """A logged-in TLS user vanishing mid-line is cleaned up like a plain one."""
    server = tls_server
    async with TlsHonestChat(server) as honest:
        before, fds = snapshot(server), open_fds()
        victims = []
        for i in range(5):
            client = await ChatClient.connect(
                server.ports["tls"], local=address(56, i), ssl=tls_client_context()
            )
            await client.login(f"tlsgone{i}")
            client.writer.write(b"half a line")
            await client.writer.drain()
            victims.append(client)
        for client in victims:
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()
        await _check_nothing_leaked(server, honest, before, fds)


def test_cert_is_real(cert: tuple[Path, Path]) -> None:
    """The throwaway certificate the TLS scenarios use loads as a server certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    assert Path(cert[0]).read_text().startswith("-----BEGIN CERTIFICATE-----")
