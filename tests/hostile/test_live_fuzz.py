"""Scenario 2: a live fuzzer against a running server while honest users chat.

Attackers connect from their own addresses and, for a bounded time, send
random and malformed input: every escape-sequence family (7-bit and 8-bit),
C1 bytes, NUL, bidi controls, broken UTF-8, telnet junk, 64 KiB and 1 MB
lines, a TLS ClientHello and an HTTP request (as the first bytes and in the
middle of a session), and commands with garbage arguments. They reconnect
when dropped. The honest users must keep receiving each other's lines in
order and must never receive an escape sequence the server did not write;
the attackers' text must reach them, cleaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import pytest

from ..conftest import ChatClient
from .support import HonestChat, address, attackers_gone, snapshot

DURATION = 3.0  # seconds of fuzzing (the bench soak runs for minutes)
FUZZERS = 8
SEED = 20_260_522

CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303" + "00" * 32 + "000020c02bc02fc02cc030cca9cca8c013c014"
    "009c009d002f0035000a0100005800000018001600001363686174"
)
HTTP = b"GET / HTTP/1.1\r\nHost: chat.example\r\nUser-Agent: curl/8\r\n\r\n"

ESCAPES = [
    b"\x1b[2J\x1b[H",
    b"\x1b[31;1mred\x1b[0m",
    b"\x1b[?25l",
    b"\x1b[6n",  # device status report: makes a terminal *answer*
    b"\x1b]0;owned\x07",
    b"\x1b]52;c;cm0gLXJmIH4=\x1b\\",
    b"\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\",
    b'\x1bP$q"p\x1b\\',
    b"\x1bXsos\x1b\\",
    b"\x1b^pm\x1b\\",
    b"\x1b_apc\x1b\\",
    b"\x1b(0lqk\x1b(B",
    b"\x1b7\x1b8",
    b"\x1bc",
    b"\x1b",
    b"\x9b2J",
    b"\x9d0;raw c1\x07",
    "\x9b1;31m".encode(),
    "\x9d52;c;eA==\x9c".encode(),
    "\x90qdcs\x9c".encode(),
    "\x9e pm \x9c\x9f apc \x9c\x98 sos \x9c".encode(),
    b"\x00\x00",
    b"\x07\x07",
    b"\x08\x08\x08\x08",
    b"\x7f",
    b"\r\x00",
    b"\x0b\x0c",
    "\u202etxet desrever\u202c".encode(),
    "\u2066isolate\u2069".encode(),
    b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xed\xa0\x80\xc0\xaf",
    "👩‍💻 ок 日本".encode(),
    b"\xff\xfd\x18\xff\xfb\x01",
    b"\xff\xf4\xff\xfd\x06",
    b"\xff\xff",
    b"\t",
]

COMMANDS = [
    b"/join \x1b[2J",
    b"/join #\x9b31m",
    b"/create ev\x1b]0;x\x07il no-pass desc \x1b[31mred\x1b[0m \x9d0;t\x9c",
    b"/msg h0 \x1b]52;c;ZXZpbA==\x07dm",
    b"/msg h1 \x9b2J dm",
    b"/tag h0 \x1b[5mblink",
    b"/tag h2 \xe2\x80\xae gnirts",
    b"/sp \x1b[1m",
    b"/sp list",
    b"/color \x00on",
    b"/color off",
    b"/users",
    b"/lobbies",
    b"/help",
    b"//\x1b[2J slash",
    b"/\x1b[2J",
    b"/" + b"z" * 300,
    b"/msg",
    b"/create",
    b"/join",
]


class Fuzzer:
    """One attacker: random lines in random chunks, reconnecting whenever dropped."""

    def __init__(self, port: int, index: int, deadline: float) -> None:
        self.port = port
        self.index = index
        self.deadline = deadline
        self.rng = random.Random(SEED + index)
        self.local = address(20, index)
        self.reads = index % 4 != 3  # one in four never reads its replies
        self.sent_lines = 0
        self.connections = 0
        self.refused_foreign = 0

    def line(self, n: int) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            parts = [rng.choice(ESCAPES) for _ in range(rng.randint(1, 4))]
            return b"fz%d " % n + b" x ".join(parts) + b" end"
        if roll < 0.6:
            return rng.choice(COMMANDS)
        if roll < 0.75:
            return b"fz%d " % n + rng.randbytes(rng.randint(1, 60))
        if roll < 0.8:
            return rng.choice([CLIENT_HELLO, HTTP, b"SSH-2.0-OpenSSH_9.6", b"PRI * HTTP/2.0"])
        if roll < 0.83:
            return b"\xff\xfa\x18" + rng.randbytes(20)  # subnegotiation left open for a while
        if roll < 0.86:
            return rng.choice([b"A", b"\x1b[", b"\x9b"]) * (64 * 1024)  # 64 KiB line
        if roll < 0.87:
            return b"B" * (1024 * 1024)  # 1 MB line
        return b"fz%d plain %s" % (n, rng.choice([b"hi", b"", b" ", b"\xc2\xa0"]))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await self.session(loop)

    async def session(self, loop: asyncio.AbstractEventLoop) -> None:
        client = await ChatClient.connect(self.port, local=self.local)
        self.connections += 1
        drain = asyncio.create_task(self.drain(client)) if self.reads else None
        try:
            if self.rng.random() < 0.15:
                # A foreign protocol as the very first bytes: one line and a close.
                client.writer.write(self.rng.choice([CLIENT_HELLO, HTTP]))
                await client.writer.drain()
                if drain is None:
                    await asyncio.wait_for(client.reader.read(), 5)
                else:
                    await asyncio.wait_for(drain, 5)
                self.refused_foreign += 1
                return
            names = [b"\x1b[2J", b"r\x00ot", b"x" * 40, b"", b"f%d" % self.index]
            for name in names[self.rng.randint(0, 3) :]:
                client.writer.write(name + b"\r\n")
            n = 0
            while loop.time() < self.deadline:
                batch = b"".join(
                    self.line(n + k) + self.rng.choice([b"\r\n", b"\n", b"\r", b"\r\x00"])
                    for k in range(self.rng.randint(1, 8))
                )
                n += 8
                # Split the batch at random points, as a network would.
                while batch:
                    cut = self.rng.randint(1, max(1, len(batch)))
                    client.writer.write(batch[:cut])
                    batch = batch[cut:]
                    await asyncio.wait_for(client.writer.drain(), 2)
                self.sent_lines += 1
                await asyncio.sleep(self.rng.choice([0, 0.001, 0.01, 0.05]))
                if client.reader.at_eof():
                    return
        finally:
            if drain is not None:
                drain.cancel()
            client.writer.transport.abort()

    @staticmethod
    async def drain(client: ChatClient) -> None:
        while await client.reader.read(1 << 20):
            pass


async def test_live_fuzzer_against_honest_chat(make_server, caplog: pytest.LogCaptureFixture):
    """Random and malformed input from 8 attackers: the server stays up, honest chat is clean."""
    caplog.set_level(logging.WARNING)
    server = await make_server(rate_messages=30, rate_window=10)
    port = server.ports["plain"]
    async with HonestChat(server, keep_text=True, period=0.4) as honest:
        before = snapshot(server)
        deadline = asyncio.get_running_loop().time() + DURATION
        fuzzers = [Fuzzer(port, i, deadline) for i in range(FUZZERS)]
        await asyncio.gather(*(f.run() for f in fuzzers))
        await honest.finish()
        await attackers_gone(server, before)
        honest.check()
        print(
            f"\nlive fuzz: {sum(f.connections for f in fuzzers)} attacker connections, "
            f"{sum(f.refused_foreign for f in fuzzers)} foreign openings refused; "
            f"{honest.figures()}; server counters {server.core.counters}"
        )
        # The attackers' words did reach the honest users, cleaned: the test saw real relaying.
        relayed = [t for t in honest.listeners[1].text_lines if "╰─> fz" in t]
        assert relayed, "no fuzzer line was relayed: the scenario proved nothing"
        dms = [t for t in honest.listeners[0].text_lines if "[DM]" in t]
        assert dms, "no fuzzer DM reached h0"
        assert any(" x " in t for t in relayed)  # escape-laden lines arrived with escapes gone
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
