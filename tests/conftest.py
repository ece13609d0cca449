"""Shared fixtures: a real server on an ephemeral port, and a byte-speaking client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gochat.config import Config
from gochat.server import ChatServer

DEFAULT_TIMEOUT = 5.0


class FakeClock:
    """A clock tests move by hand: no sleeping to make time pass."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_config(**overrides: Any) -> Config:
    """Settings for tests: loopback, port 0, no TLS unless asked, plain output, fast bcrypt."""
    base = {
        "host": "127.0.0.1",
        "port": 0,
        "tls_port": 0,
        "tls_cert": "/nonexistent/server.crt",
        "tls_key": "/nonexistent/server.key",
        "color": "never",
        "bcrypt_rounds": 4,
        "shutdown_grace": 2.0,
        "db": "none",
        "timezone": "UTC",
        "json_port": 0,  # off unless a test asks (0 turns it off, it is not "any port")
        "json_tls_port": 0,
    }
    base.update(overrides)
    return dataclasses.replace(Config(), **base)


test_config.__test__ = False  # type: ignore[attr-defined]


class ChatClient:
    """A test client that speaks bytes and waits for text with a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = ""
        self.closed = False

    @classmethod
    async def connect(
        cls, port: int, *, host: str = "127.0.0.1", local: str | None = None, **kw: Any
    ) -> ChatClient:
        local_addr = (local, 0) if local else None
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=local_addr, limit=2**22, **kw
        )
        return cls(reader, writer)

    async def send(self, line: str | bytes, end: bytes = b"\r\n") -> None:
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(data + end)
        await self.writer.drain()

    async def _fill(self, timeout: float) -> None:
        chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not chunk:
            self.closed = True
            raise ConnectionError("server closed the connection; buffer: " + self.buffer[-500:])
        self.buffer += chunk.decode("utf-8", "replace")

    async def expect(self, needle: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until `needle` has arrived; return everything up to it and consume it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while needle not in self.buffer:
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = self.buffer[-800:]
                raise AssertionError(f"timed out waiting for {needle!r}; got {got!r}")
            try:
                await self._fill(remaining)
            except TimeoutError:
                raise AssertionError(
                    f"timed out waiting for {needle!r}; got {self.buffer[-800:]!r}"
                ) from None
        head, _, tail = self.buffer.partition(needle)
        self.buffer = tail
        return head + needle

    async def read_until_closed(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Everything until the server closes the connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"connection still open; got {self.buffer[-800:]!r}")
            try:
                await self._fill(remaining)
            except ConnectionError:
                break
            except TimeoutError:
                continue
        text, self.buffer = self.buffer, ""
        return text

    async def login(self, name: str) -> ChatClient:
        await self.expect("Enter your username: ")
        await self.send(name)
        await self.expect(f"Welcome, {name}!")
        return self

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def wait_until(
    condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> None:
    """Poll `condition` on the loop until it holds, failing after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


ServerFactory = Callable[..., Awaitable[ChatServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers in-process on port 0; shut them all down after the test."""
    servers: list[ChatServer] = []

    async def start(config: Config | None = None, **kw: Any) -> ChatServer:
        """`clock`, `monotonic` and `store` go to ChatServer; the rest are settings."""
        objects = {k: kw.pop(k, None) for k in ("clock", "monotonic", "store")}
        extra = {k: v for k, v in objects.items() if v is not None}
        server = ChatServer(config or test_config(**kw), **extra)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


@pytest.fixture
async def server(make_server: ServerFactory) -> ChatServer:
    return await make_server()


@pytest.fixture
async def connect(server: ChatServer) -> AsyncIterator[Callable[..., Awaitable[ChatClient]]]:
    """Open clients to the default test server; all are closed after the test."""
    clients: list[ChatClient] = []

    async def open_client(name: str | None = None, **kw: Any) -> ChatClient:
        client = await ChatClient.connect(server.ports["plain"], **kw)
        clients.append(client)
        if name:
            await client.login(name)
        return client

    yield open_client
    for client in clients:
        await client.close()


def daemon_env(**settings: str) -> dict[str, str]:
    """Environment for `python -m gochat` as a subprocess: the caller's, minus any
    GOCHAT_*, AI key or NO_COLOR, plus loopback, port 0, plain output and fast bcrypt."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOCHAT_", "GEMINI_", "GOOGLE_")) and k != "NO_COLOR"
    }
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(
        GOCHAT_HOST="127.0.0.1",
        GOCHAT_PORT="0",
        GOCHAT_TLS_PORT="0",
        GOCHAT_TLS_CERT="none",  # TLS off, whatever certs/ holds
        GOCHAT_COLOR="never",
        GOCHAT_BCRYPT_ROUNDS="4",
        GOCHAT_LOG_LEVEL="INFO",
        GOCHAT_EVENT_LOOP="asyncio",
        GOCHAT_TIMEZONE="UTC",
        GOCHAT_JSON_PORT="0",
        GOCHAT_JSON_TLS_PORT="0",  # what `pip install .` runs; uvloop where a test asks
    )
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_alias_works(address: str) -> bool:
    """127.0.0.2 and friends route to lo on Linux; check rather than assume."""
    try:
        with socket.socket() as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
_pg_url: list[str] = []


def pg_test_url() -> str:
    """A URL that reaches the test database; fail (never skip) when there is none.

    scripts/test provisions one (and names it in GOCHAT_TEST_PG_URL when it had
    to make a role of its own); a machine made for this project has trust auth.
    """
    if _pg_url:
        return _pg_url[0]
    import psycopg

    env = os.environ.get("GOCHAT_TEST_PG_URL")
    problems = []
    for url in (env,) if env else PG_CANDIDATES:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            problems.append(f"{url}: {str(exc).strip()}")
            continue
        _pg_url.append(url)
        return url
    pytest.fail(
        "PostgreSQL is not reachable (scripts/test provisions it; GOCHAT_TEST_PG_URL "
        "names another): " + "; ".join(problems),
        pytrace=False,
    )


def self_signed(folder: Path, common_name: str = "localhost") -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key in `folder`, made with the openssl CLI."""
    crt, key = folder / "server.crt", folder / "server.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(crt)]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return crt, key


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key (CN=localhost)."""
    return self_signed(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A second pair (CN=renewed): a renewal, or a key that does not match `cert`."""
    return self_signed(tmp_path_factory.mktemp("certs"), "renewed")


def tls_client_context() -> ssl.SSLContext:
    """A client context that accepts the throwaway certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
