"""History that survives restarts: the server on a real store, in-process and as a process.

The subprocess tests run `python -m gochat` the way an operator does, stop it
with SIGTERM or kill -9, start it again on the same database and check what a
new user finds: lobbies, passwords, replay and /history. They run against
SQLite and PostgreSQL (the `db_url` fixture from test_store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gochat.commands import REGISTRY
from gochat.errors import StartupError
from gochat.server import ChatServer
from gochat.store import Store, open_store
from gochat.store.sqlite import SQLiteStore

from .conftest import (
    ChatClient,
    FakeClock,
    ServerFactory,
    daemon_env,
    test_config,
    wait_until,
)
from .test_store import GatedStore, db_url, pg_admin_url  # noqa: F401 - fixtures

START_TIMEOUT = 30.0
LISTENING = re.compile(r"listening \(plain\) on 127\.0\.0\.1:(\d+)")

# -- in-process servers on a store ------------------------------------------------------


@pytest.fixture
def servers(make_server: ServerFactory) -> ServerFactory:
    """In-process servers (optionally on a given store), shut down after the test."""
    return make_server


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[ChatClient]]]:
    opened: list[ChatClient] = []

    async def connect(port: int, name: str) -> ChatClient:
        client = await ChatClient.connect(port)
        opened.append(client)
        await client.login(name)
        return client

    yield connect
    for client in opened:
        await client.close()


async def reader_for(url: str) -> Store:
    """A second connection to the database, to see what the server has committed."""
    store = await open_store(url)
    assert store is not None
    return store


async def stored_bodies(store: Store, lobby: str) -> list[str]:
    return [m.body for m in await store.recent_messages(lobby, 500)]


async def wait_stored(store: Store, lobby: str, body: str, timeout: float = 10.0) -> None:
    """Poll the database (not the server) until `body` is stored in `lobby`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while body not in await stored_bodies(store, lobby):
        if loop.time() > deadline:
            raise AssertionError(f"{body!r} never reached #{lobby} in the store")
        await asyncio.sleep(0.02)


async def test_history_command(servers, clients):
    """/history [n]: default 20, capped at 200, times shown, wrong n gets the usage."""
    server = await servers(rate_messages=0)
    port = server.ports["plain"]
    alice = await clients(port, "alice")
    await alice.send("/history")
    await alice.expect("No messages in #general yet.")
    for i in range(25):
        await alice.send(f"line{i}")
    await alice.expect("line24\r\n")
    await alice.send("/history")
    text = await alice.expect("end of history")
    assert "recent messages in #general" in text
    assert "╰─> line5\r\n" in text and "╰─> line24\r\n" in text
    assert "╰─> line4\r\n" not in text
    assert re.search(r"\[\d\d:\d\d\]\r\n", text)
    await alice.send("/history 3")
    text = await alice.expect("end of history")
    assert text.count("╰─>") == 3 and "╰─> line22\r\n" in text
    await alice.send("/history 5000")
    text = await alice.expect("end of history")
    assert text.count("╰─>") == 25
    for bad in ("0", "-3", "lots"):
        await alice.send(f"/history {bad}")
        await alice.expect("Usage: /history [n]")
    names = [c.name for c in REGISTRY]
    assert names.index("history") == names.index("quit") - 1


async def test_restart_in_process_restores_everything(db_url, servers, clients):  # noqa: F811
    """Lobbies (password, persona, creator, description) and history come back."""
    config = {"db": db_url, "rate_messages": 0, "ai_api_key": "unused-test-key"}
    first = await servers(**config)
    alice = await clients(first.ports["plain"], "alice")
    await alice.send("/create Vault hunter2 Alice's vault")
    await alice.expect("You are now in #Vault")
    await alice.send("/setai You are a grumpy pirate.")
    await alice.expect("gave Rox a new persona")
    await alice.send("gold is here")
    await alice.expect("gold is here")
    await alice.send("/join general")
    await alice.expect("You are now in #general")
    await alice.send("morning all")
    await alice.expect("morning all")
    await alice.close()
    await first.shutdown()

    second = await servers(**config)
    vault = second.core.lobbies.get("vault")
    assert vault is not None
    assert (vault.name, vault.creator, vault.description) == ("Vault", "alice", "Alice's vault")
    assert vault.private and vault.persona == "You are a grumpy pirate."
    assert [m.text for m in vault.history] == ["gold is here"]
    bob = await clients(second.ports["plain"], "bob")
    await bob.expect("morning all")  # replay on login
    await bob.send("/join Vault nope")
    await bob.expect("Wrong password for #Vault.")
    await bob.send("/join vault hunter2")
    await bob.expect("You are now in #Vault")
    await bob.expect("gold is here")


async def test_shutdown_flushes_a_long_flush_window(db_url, servers, clients):  # noqa: F811
    """With a 10-minute flush window, shutdown still writes every queued line."""
    server = await servers(db=db_url, flush_ms=600_000, rate_messages=0)
    alice = await clients(server.ports["plain"], "alice")
    assert server.journal is not None
    await wait_until(lambda: server.journal.commits > 0, what="the first commit")
    for i in range(30):
        await alice.send(f"queued{i}")
    await alice.expect("queued29\r\n")
    assert server.journal.pending >= 30
    await server.shutdown()
    reader = await reader_for(db_url)
    try:
        assert await stored_bodies(reader, "general") == [f"queued{i}" for i in range(30)]
    finally:
        await reader.close()


async def test_idle_lobby_cleanup_deletes_it_from_the_store(db_url, servers, clients):  # noqa: F811
    clock = FakeClock()
    config = {"db": db_url, "clock": clock, "lobby_idle_minutes": 5}
    server = await servers(**config)
    alice = await clients(server.ports["plain"], "alice")
    await alice.send("/create attic no-pass dusty")
    await alice.expect("You are now in #attic")
    await alice.send("anyone?")
    await alice.expect("anyone?")
    await alice.send("/join general")
    await alice.expect("You are now in #general")
    reader = await reader_for(db_url)
    try:
        await wait_stored(reader, "attic", "anyone?")
        clock.advance(5 * 60 + 1)
        assert [lobby.name for lobby in server.core.prune_lobbies()] == ["attic"]
        assert server.journal is not None
        await asyncio.wait_for(server.journal.flushed(), 10)
        assert await reader.load_lobbies() == []
        assert await stored_bodies(reader, "attic") == []
    finally:
        await reader.close()
    await alice.close()
    await server.shutdown()
    again = await servers(**config)
    assert again.core.lobbies.get("attic") is None


async def test_a_lobby_in_use_at_shutdown_is_not_idle_after_restart(tmp_path, servers, clients):
    """Someone sat in #den without a word for hours; the restart must not prune #den."""
    clock = FakeClock()
    config = {"db": str(tmp_path / "den.db"), "clock": clock, "lobby_idle_minutes": 60}
    server = await servers(**config)
    bob = await clients(server.ports["plain"], "bob")
    await bob.send("/create den no-pass quiet")
    await bob.expect("You are now in #den")
    clock.advance(3 * 3600)
    await server.shutdown()
    again = await servers(**config)
    clock.advance(60)
    assert again.core.prune_lobbies() == []
    den = again.core.lobbies.get("den")
    assert den is not None and den.last_active == clock.now - 60


async def test_slow_store_does_not_delay_delivery(tmp_path, servers, clients, caplog):
    """Writes stuck in a store that never answers: every line is still delivered."""
    path = str(tmp_path / "slow.db")
    gated = GatedStore(SQLiteStore(path))
    server = await servers(store=gated, db=path, rate_messages=0, flush_ms=1)
    gated.gate.clear()  # from now on every write blocks
    port = server.ports["plain"]
    alice = await clients(port, "alice")
    bob = await clients(port, "bob")
    for i in range(60):
        await alice.send(f"slow{i}")
        await bob.expect(f"slow{i}\r\n")
    await alice.send("/create hideout no-pass while the store is stuck")
    await alice.expect("You are now in #hideout")
    await alice.send("/history 2")
    await alice.expect("No messages in #hideout yet.")
    assert server.journal is not None and server.journal.pending >= 60
    reader = await reader_for(path)
    try:
        assert await stored_bodies(reader, "general") == []
        gated.gate.set()
        await wait_stored(reader, "general", "slow59")
        assert await stored_bodies(reader, "general") == [f"slow{i}" for i in range(60)]
        assert [r.key for r in await reader.load_lobbies()] == ["hideout"]
    finally:
        await reader.close()


async def test_store_down_chat_goes_on_and_catches_up(tmp_path, servers, clients, caplog):
    caplog.set_level(logging.INFO, logger="gochat.store")
    path = str(tmp_path / "down.db")
    gated = GatedStore(SQLiteStore(path))
    server = await servers(store=gated, db=path, rate_messages=0, flush_ms=1)
    gated.fail_next = 10**9
    port = server.ports["plain"]
    alice = await clients(port, "alice")
    bob = await clients(port, "bob")
    await wait_until(lambda: server.journal is not None and server.journal.failures >= 1)
    for i in range(20):
        await bob.send(f"down{i}")
        await alice.expect(f"down{i}\r\n")
    assert any("store unreachable (test)" in r.getMessage() for r in caplog.records)
    gated.fail_next = 0
    reader = await reader_for(path)
    try:
        await wait_stored(reader, "general", "down19", timeout=20)
        assert await stored_bodies(reader, "general") == [f"down{i}" for i in range(20)]
    finally:
        await reader.close()
    assert any("work again" in r.getMessage() for r in caplog.records)


async def test_database_newer_than_the_code_is_refused(tmp_path, servers):
    path = str(tmp_path / "future.db")
    first = await servers(db=path)
    await first.shutdown()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO gochat_migrations VALUES (99, 'from the future', 0)")
    server = ChatServer(test_config(db=path))
    with pytest.raises(StartupError, match="schema version 99, newer than this gochat"):
        await server.start()
    assert server.ports == {}  # refused before listening


# -- the daemon as a process ------------------------------------------------------------


class Daemon:
    """`python -m gochat` in a subprocess; its stderr is kept for failure messages."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port_found: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, cwd: str, db: str | None, **env: str) -> Daemon:
        clean = daemon_env(GOCHAT_RATE_MESSAGES="0")
        if db is not None:
            clean["GOCHAT_DB"] = db
        clean.update(env)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gochat",
            cwd=cwd,
            env=clean,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = cls(proc)
        try:
            await asyncio.wait_for(asyncio.shield(daemon.port_found), START_TIMEOUT)
        except (TimeoutError, RuntimeError):
            await daemon.kill()
            raise AssertionError("gochat did not start:\n" + daemon.stderr) from None
        return daemon

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and not self.port_found.done():
                self.port_found.set_result(int(match.group(1)))
        if not self.port_found.done():
            self.port_found.set_exception(RuntimeError("exited before listening"))

    @property
    def port(self) -> int:
        return self.port_found.result()

    async def wait_for(self, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match[str]:
        """The first stderr line from index `after` on that matches `pattern` (bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for line in self.lines[after:]:
                match = re.search(pattern, line)
                if match:
                    return match
            if self.reader.done() or loop.time() > deadline:
                raise AssertionError(f"no {pattern!r} in gochat's log:\n" + self.stderr)
            await asyncio.sleep(0.01)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        try:
            code = await asyncio.wait_for(self.proc.wait(), START_TIMEOUT)
        except TimeoutError:
            await self.kill()
            raise AssertionError("gochat did not exit:\n" + self.stderr) from None
        await asyncio.wait_for(self.reader, 5)
        return code

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader, 5)


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    running: list[Daemon] = []
    yield running
    for daemon in running:
        if daemon.proc.returncode is None:
            await daemon.kill()


async def chat_before_restart(port: int) -> None:
    """Alice makes a private and a public lobby and talks in them and in general; so does bob."""
    alice = await ChatClient.connect(port)
    bob = await ChatClient.connect(port)
    try:
        await alice.login("alice")
        await alice.send("/create secret s3cret Alice's hideout")
        await alice.expect("You are now in #secret")
        await alice.send("whispered in the hideout")
        await alice.expect("whispered in the hideout")
        await alice.send("/create open no-pass Everyone welcome")
        await alice.expect("You are now in #open")
        await alice.send("said in the open")
        await alice.expect("said in the open")
        await alice.send("/join general")
        await alice.expect("You are now in #general")
        await bob.login("bob")
        await alice.send("hello general")
        await bob.expect("hello general")
        await bob.send("bob was here")
        await alice.expect("bob was here")
    finally:
        await alice.close()
        await bob.close()


async def check_after_restart(port: int) -> None:
    """A new user finds the lobbies, the password still guards #secret, history replays."""
    carol = await ChatClient.connect(port)
    try:
        await carol.login("carol")
        replay = await carol.expect("end of history")
        assert "hello general" in replay and "bob was here" in replay
        await carol.send("/history")
        history = await carol.expect("end of history")
        assert history.index("hello general") < history.index("bob was here")
        await carol.send("/lobbies")
        listing = await carol.expect("Everyone welcome")
        assert re.search(r"#secret +private .* by alice +Alice's hideout", listing)
        assert re.search(r"#open +public", listing)
        await carol.send("/join secret guess")
        await carol.expect("Wrong password for #secret.")
        await carol.send("/join secret s3cret")
        await carol.expect("You are now in #secret: Alice's hideout")
        await carol.expect("whispered in the hideout")
        await carol.expect("end of history")
        await carol.send("/join open")
        await carol.expect("said in the open")
        await carol.expect("end of history")
        await carol.send("/history 1")
        one = await carol.expect("end of history")
        assert "said in the open" in one
    finally:
        await carol.close()


async def test_sigterm_then_restart_keeps_lobbies_and_history(db_url, tmp_path, daemons):  # noqa: F811
    """SIGTERM writes everything (here the flush window is 10 minutes), restart reads it back."""
    first = await Daemon.start(str(tmp_path), db_url, GOCHAT_FLUSH_MS="600000")
    daemons.append(first)
    await chat_before_restart(first.port)
    assert await first.stop(signal.SIGTERM) == 0, first.stderr
    assert "all writes saved" in first.stderr

    second = await Daemon.start(str(tmp_path), db_url)
    daemons.append(second)
    assert "3 lobbies" not in second.stderr  # general is not a stored lobby
    assert "2 lobbies and" in second.stderr, second.stderr
    await check_after_restart(second.port)
    assert await second.stop(signal.SIGTERM) == 0


async def test_kill_9_after_a_flush_keeps_lobbies_and_history(db_url, tmp_path, daemons):  # noqa: F811
    """kill -9 once the rows are in the database (watched from another connection)."""
    first = await Daemon.start(str(tmp_path), db_url)
    daemons.append(first)
    await chat_before_restart(first.port)
    reader = await reader_for(db_url)
    try:
        await wait_stored(reader, "general", "bob was here")
        await wait_stored(reader, "secret", "whispered in the hideout")
        await wait_stored(reader, "open", "said in the open")
        assert {r.key for r in await reader.load_lobbies()} == {"secret", "open"}
    finally:
        await reader.close()
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = await Daemon.start(str(tmp_path), db_url)
    daemons.append(second)
    await check_after_restart(second.port)
    assert await second.stop(signal.SIGTERM) == 0


async def test_default_store_is_gochat_db_in_the_working_directory(tmp_path, daemons):
    """A fresh machine, no settings: history goes to ./gochat.db."""
    daemon = await Daemon.start(str(tmp_path), None)
    daemons.append(daemon)
    client = await ChatClient.connect(daemon.port)
    await client.login("alice")
    await client.send("first words")
    await client.expect("first words")
    await client.close()
    assert await daemon.stop() == 0
    with sqlite3.connect(tmp_path / "gochat.db") as db:
        rows = db.execute("SELECT sender, body, kind FROM messages").fetchall()
    assert rows == [("alice", "first words", "chat")]
