"""What every hostile scenario shares: honest users chatting, attacker sockets, figures.

An attack is only interesting next to the people it is aimed at, so each
scenario runs `HonestChat`: a few users on their own loopback addresses who
keep talking in #general and check, line by line, that they receive every one
of each other's messages in order, as valid UTF-8, with no escape sequence
other than the server's own colours.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import re
import socket
import statistics
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from gochat.server import ChatServer

from ..conftest import ChatClient, wait_until

HONEST_BASE = 2  # honest users connect from 127.0.0.2, 127.0.0.3, ...

# The only escape sequences the server itself writes: SGR colours and erase-line.
SERVER_ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[K")
# Anything a terminal could act on: C0 but CR/LF, DEL, C1, bidi controls.
UNSAFE = re.compile(
    r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
HONEST_LINE = re.compile(r"╰─> hm (h\d+) (\d{5})")


def address(block: int, index: int) -> str:
    """The `index`-th attacker address of scenario `block`: 127.<block>.x.y."""
    return f"127.{block}.{index // 250}.{index % 250 + 1}"


def spread(count: int, per_ip: int, block: int) -> Iterator[str]:
    """`count` local addresses, `per_ip` connections from each."""
    for i in range(count):
        yield address(block, i // per_ip)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so "after" shows what is still held."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def unsafe_parts(text: str, colour: bool) -> list[str]:
    """Escape sequences and control characters in `text` the server did not write itself."""
    if colour:
        text = SERVER_ESCAPES.sub("", text)
    return [repr(m.group()) for m in UNSAFE.finditer(text)] + (["ESC"] if "\x1b" in text else [])


async def raw_socket(
    port: int, local: str, *, rcvbuf: int = 0, host: str = "127.0.0.1"
) -> socket.socket:
    """A non-blocking socket connected from `local`; nothing reads it unless asked."""
    sock = socket.socket()
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((local, 0))
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0): the abrupt way."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_until_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


@dataclass
class Listener:
    """One honest user's view: what arrived, in which order, and what must not have."""

    name: str
    client: ChatClient
    colour: bool
    seen: dict[str, list[int]] = field(default_factory=dict)
    unsafe: list[str] = field(default_factory=list)
    bad_utf8: int = 0
    lines: int = 0
    closed: bool = False
    pending: bytes = b""
    text_lines: list[str] = field(default_factory=list)  # kept only when asked


class HonestChat:
    """A few honest users who chat in #general for as long as an attack lasts.

    Each sends `hm <name> <seq>` every `period` seconds (padded to `size`
    characters); every user records every honest line it receives. `finish`
    stops the talk, waits for the last lines to arrive and returns what the
    scenario asserts on.
    """

    def __init__(
        self,
        server: ChatServer,
        count: int = 3,
        *,
        period: float = 0.25,
        size: int = 0,
        keep_text: bool = False,
    ) -> None:
        self.server = server
        self.count = count
        self.period = period
        self.size = size
        self.keep_text = keep_text
        self.listeners: list[Listener] = []
        self.sent: dict[str, int] = {}
        self.sent_at: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._talker: asyncio.Task[None] | None = None
        self._talking = True

    async def __aenter__(self) -> HonestChat:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        port = self.server.ports["plain"]
        for i in range(self.count):
            name = f"h{i}"
            client = await ChatClient.connect(port, local=f"127.0.0.{HONEST_BASE + i}")
            await client.login(name)
            colour = i == 0  # one user with ANSI colour: only the server's own codes may show
            if colour:
                await client.send("/color on")
                await client.expect("Colour on.")
            client.buffer = ""
            self.listeners.append(Listener(name, client, colour))
            self.sent[name] = 0
        for listener in self.listeners:
            self._tasks.append(asyncio.create_task(self._listen(listener)))
        self._talker = asyncio.create_task(self._talk())
        self._tasks.append(self._talker)

    async def _talk(self) -> None:
        loop = asyncio.get_running_loop()
        while self._talking:
            for listener in self.listeners:
                name = listener.name
                seq = self.sent[name]
                text = f"hm {name} {seq:05d} "
                text += "." * max(0, self.size - len(text))
                self.sent_at[name, seq] = loop.time()
                self.sent[name] = seq + 1
                await listener.client.send(text)
            await asyncio.sleep(self.period)

    async def _listen(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        reader = listener.client.reader
        while True:
            chunk = await reader.read(1 << 18)
            if not chunk:
                listener.closed = True
                return
            now = loop.time()
            data = listener.pending + chunk
            *complete, listener.pending = data.split(b"\r\n")
            for raw in complete:
                self._line(listener, raw, now)

    def _line(self, listener: Listener, raw: bytes, now: float) -> None:
        listener.lines += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            listener.bad_utf8 += 1
            text = raw.decode("utf-8", "replace")
        bad = unsafe_parts(text, listener.colour)
        if bad:
            listener.unsafe.append(f"{text!r}: {bad}")
        if self.keep_text:
            listener.text_lines.append(text)
        match = HONEST_LINE.search(text)
        if match:
            sender, seq = match.group(1), int(match.group(2))
            listener.seen.setdefault(sender, []).append(seq)
            sent = self.sent_at.get((sender, seq))
            if sent is not None:
                self.latencies.append(now - sent)

    def raise_failures(self) -> None:
        """Re-raise what ended an honest user's task: a broken honest user fails the test."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"an honest user's task failed: {task!r}") from (
                    task.exception()
                )

    def received_all(self) -> bool:
        self.raise_failures()
        return all(
            len(listener.seen.get(name, ())) >= sent
            for listener in self.listeners
            for name, sent in self.sent.items()
        )

    async def finish(self, timeout: float = 20.0, min_rounds: int = 4) -> None:
        """Stop talking (after at least `min_rounds` rounds) and wait for every line to land."""

        def talked() -> bool:
            self.raise_failures()
            return min(self.sent.values()) >= min_rounds

        await wait_until(talked, timeout, "honest users to talk")
        self._talking = False
        assert self._talker is not None
        async with asyncio.timeout(timeout):  # its last round is sent (or its error raised)
            await self._talker
        await wait_until(self.received_all, timeout, "honest users to receive every line")

    def check(self) -> None:
        """Every honest user got every honest line, in order, clean, and is still connected."""
        self.raise_failures()
        for listener in self.listeners:
            assert not listener.closed, f"{listener.name} was disconnected"
            assert listener.unsafe == [], f"{listener.name} saw: {listener.unsafe[:5]}"
            assert listener.bad_utf8 == 0, f"{listener.name} got invalid UTF-8"
            for name, sent in self.sent.items():
                assert listener.seen.get(name, []) == list(range(sent)), (
                    f"{listener.name} got {name}'s lines out of order or not at all"
                )
        assert self.server.stats()["clients"] >= self.count

    def figures(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
        return (
            f"honest: {sum(self.sent.values())} lines sent, {len(lat)} deliveries; "
            f"latency median {statistics.median(lat) * 1e3:.1f} ms, "
            f"p95 {p95 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms"
        )

    async def close(self) -> None:
        """Stop the honest users; raise what any of their tasks failed with."""
        self._talking = False
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]  # not CancelledError
        for listener in self.listeners:
            await listener.client.close()
        if failures:
            raise AssertionError(f"honest users' tasks failed: {failures!r}") from failures[0]


TRACKED = ("connections", "counted", "ip_keys", "clients", "tasks")


def snapshot(server: ChatServer) -> dict[str, int]:
    """The counters an attack must leave as it found them (taken with only honest users on)."""
    stats = server.stats()
    return {key: stats[key] for key in TRACKED}


async def attackers_gone(server: ChatServer, before: dict[str, int], timeout: float = 15.0) -> None:
    """Wait until connections, per-IP counters, clients and tasks are back to `before`."""

    def back() -> bool:
        return snapshot(server) == before

    try:
        await wait_until(back, timeout, "attackers' counters to return to zero")
    except AssertionError:
        raise AssertionError(f"stats {server.stats()} != {before}") from None
