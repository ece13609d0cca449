"""Scenario 6: SIGTERM while 1,000 clients are connected and messages flow.

The daemon runs as a real process (`python -m gochat`). A thousand clients log
in and read; twenty of them chat as fast as the rate limit lets them; a few
attackers sit at the name prompt, and a few stopped reading after asking for
more output than their socket buffers hold. Then SIGTERM: every reading
client must get the goodbye, the daemon must close every session itself and
exit 0, and the log must hold no traceback. (How long that takes is a figure
printed here and measured by bench/, not asserted.)
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import sys
import time
from pathlib import Path

from ..conftest import daemon_env
from .support import address, raw_socket, read_until_eof, rss_mb

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 1000
CHATTERS = 10
GOODBYE = b"Server is shutting down. Goodbye!"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def shutdown_env(**extra: str) -> dict[str, str]:
    return daemon_env(
        GOCHAT_MAX_CONN_PER_IP="0",
        GOCHAT_DB="none",
        GOCHAT_RATE_MESSAGES="50",
        **extra,
    )


async def start_daemon(workdir: Path, **extra: str) -> tuple[asyncio.subprocess.Process, Path, int]:
    """`python -m gochat` in `workdir`, logging to a file; returns (process, log, port)."""
    raise_fd_limit()
    log = workdir / "gochat.log"
    with open(log, "wb") as sink:  # noqa: ASYNC230 - once, before any client
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gochat",
            cwd=workdir,
            env=shutdown_env(**extra),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = re.search(r"listening \(plain\) on 127\.0\.0\.1:(\d+)", log.read_text())
        if match:
            return proc, log, int(match.group(1))
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("daemon did not start: " + log.read_text()[-2000:])


class Reader(asyncio.Protocol):
    """A client that logs in and reads everything, keeping only what the test checks."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.tail = bytearray()
        self.received = 0
        self.welcomed = asyncio.Event()
        self.chatted = asyncio.Event()  # the chatters' second round has arrived
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.name + b"\r\n")

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.tail += data
        if not self.welcomed.is_set() and b"Welcome, " in self.tail:
            self.welcomed.set()
        if not self.chatted.is_set() and b"under fire %d\r\n" % (2 * CHATTERS - 1) in self.tail:
            self.chatted.set()
        if len(self.tail) > 8192:
            del self.tail[:-2048]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def _connect(loop: asyncio.AbstractEventLoop, port: int, i: int) -> Reader:
    _, reader = await loop.create_connection(
        lambda: Reader(b"u%04d" % i), "127.0.0.1", port, local_addr=(address(60, i // 50), 0)
    )
    return reader


async def _chat(readers: list[Reader], stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        for reader in readers[:CHATTERS]:
            if reader.transport is not None and not reader.transport.is_closing():
                reader.transport.write(b"under fire %d\r\n" % sent)
                sent += 1
        await asyncio.sleep(0.5)
    return sent


async def test_sigterm_with_1000_clients(tmp_path: Path):
    """SIGTERM under load: everyone reading gets the goodbye, every session is closed, exit 0."""
    loop = asyncio.get_running_loop()
    proc, log, port = await start_daemon(tmp_path)
    try:
        readers: list[Reader] = []
        for start in range(0, CLIENTS, 100):
            readers += await asyncio.gather(
                *(_connect(loop, port, i) for i in range(start, min(start + 100, CLIENTS)))
            )
        await asyncio.wait_for(asyncio.gather(*(r.welcomed.wait() for r in readers)), 60)

        # Attackers: tricklers at the name prompt, and clients that asked for a lot and stopped.
        tricklers = [await raw_socket(port, address(61, i)) for i in range(20)]
        for sock in tricklers:
            sock.send(b"slo")
        stuck = [await raw_socket(port, address(62, i), rcvbuf=4096) for i in range(5)]
        for i, sock in enumerate(stuck):
            sock.send(b"stuck%d\r\n" % i + b"/help\r\n" * 120)

        stop = asyncio.Event()
        chat = asyncio.create_task(_chat(readers, stop))
        # Messages are flowing: every reader has had two rounds of the chatters' lines.
        await asyncio.wait_for(asyncio.gather(*(r.chatted.wait() for r in readers)), 60)
        rss = rss_mb(proc.pid)

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)  # a bound against hanging, not a speed
        took = time.monotonic() - signalled
        stop.set()
        sent = await chat

        # Every connection was released by the server: readers, tricklers and stuck ones.
        lost = await asyncio.wait_for(asyncio.gather(*(r.closed for r in readers)), 60)
        trickled = await asyncio.gather(*(read_until_eof(s, 60) for s in tricklers))
        await asyncio.gather(*(read_until_eof(s, 60) for s in stuck))
        missing = [r.name for r in readers if GOODBYE not in r.tail]
        text = log.read_text()
        print(
            f"\nshutdown under fire: {CLIENTS} clients, {sent} messages sent during the run, "
            f"daemon RSS {rss:.1f} MB; exit {code} {took:.2f} s after SIGTERM"
        )
        assert missing == [], f"{len(missing)} clients missed the goodbye: {missing[:10]}"
        assert [GOODBYE in t for t in trickled] == [True] * len(tricklers)
        # Everyone leaves at once, so nobody is sent the others' "left the chat" lines.
        assert not [r.name for r in readers if b"left the chat" in r.tail]
        assert code == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        assert re.search(r"^\S+ (ERROR|CRITICAL) ", text, re.MULTILINE) is None, text[-3000:]
        # The daemon closed every connection itself, in its shutdown, before it exited: its
        # last activity line counts one "server shutdown" per connection it had then.
        at_shutdown = int(re.findall(r"shutting down: (\d+) connections", text)[-1])
        assert at_shutdown >= len(readers)
        assert re.search(rf"disconnects \([^)]*server shutdown {at_shutdown}\b", text), text[-3000:]
        assert text.rstrip().endswith("shutdown complete"), text[-3000:]
        assert all(exc is None or isinstance(exc, OSError) for exc in lost)
        for sock in (*tricklers, *stuck):
            sock.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_raise_fd_limit_is_harmless() -> None:
    """The helper never lowers the limit (1000 clients need about 2,100 descriptors here)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_fd_limit()
    after = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert after == (before[1], before[1])  # the soft limit raised to the hard one
    assert after[0] >= 2 * CLIENTS + 200
