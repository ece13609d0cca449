"""The store: one suite for every backend (SQLite file, PostgreSQL schema), plus the journal.

PostgreSQL is the server on this machine (127.0.0.1:5432, database `test`,
trust auth; GOCHAT_TEST_PG_URL overrides). Each test gets its own schema,
dropped afterwards. If PostgreSQL is unreachable its tests fail: CI starts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import psycopg
import pytest

from gochat import journal as journal_module
from gochat.config import Config
from gochat.events import ChatMessage, DirectMessage
from gochat.journal import Journal
from gochat.lobbies import Lobby
from gochat.store import (
    DeleteLobby,
    DirectRecord,
    LobbyRecord,
    MessageRecord,
    Op,
    SchemaTooNew,
    Store,
    StoreError,
    open_store,
    store_for,
)
from gochat.store import postgres as pg_backend
from gochat.store import sqlite as sqlite_backend
from gochat.store.postgres import PostgresStore
from gochat.store.sqlite import SQLiteStore

from .conftest import free_port, pg_test_url, test_config, wait_until

T0 = 1_700_000_000.0

# -- PostgreSQL: one schema per test ------------------------------------------------


async def pg_admin_url() -> str:
    """The test database's URL (see conftest.pg_test_url)."""
    return pg_test_url()


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


async def pg_execute(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(await pg_admin_url(), autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall() if cursor.description else []


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A postgresql:// URL whose tables live in a fresh schema of their own."""
    admin = await pg_admin_url()
    schema = "t_" + secrets.token_hex(6)
    await pg_execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(admin, schema)
    finally:
        await pg_execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """The GOCHAT_DB of one backend: a temporary SQLite file or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "gochat.db")
        return
    admin = await pg_admin_url()
    schema = "t_" + secrets.token_hex(6)
    await pg_execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(admin, schema)
    finally:
        await pg_execute(f"DROP SCHEMA {schema} CASCADE")


StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture
async def make_store(db_url: str) -> AsyncIterator[StoreFactory]:
    """Open stores on this test's database (optionally with other migrations)."""
    opened: list[Store] = []

    async def make(migrations: Sequence[Any] | None = None) -> Store:
        store = store_for(db_url)
        assert store is not None
        if migrations is not None:
            store.migrations = tuple(migrations)  # type: ignore[attr-defined]
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def lobby(key: str = "den", **kw: Any) -> LobbyRecord:
    values: dict[str, Any] = {
        "key": key,
        "name": key.capitalize(),
        "creator": "alice",
        "description": "a quiet place",
        "password_hash": None,
        "persona": None,
        "created_at": T0,
        "last_active": T0 + 5,
    }
    values.update(kw)
    return LobbyRecord(**values)


def msg(lobby: str, body: str, ts: float = T0, **kw: Any) -> MessageRecord:
    values: dict[str, Any] = {"sender": "alice", "picture": "🙂", "kind": "chat"}
    values.update(kw)
    return MessageRecord(lobby=lobby, body=body, timestamp=ts, **values)


def bodies(records: Sequence[MessageRecord]) -> list[str]:
    return [r.body for r in records]


# -- the shared backend suite --------------------------------------------------------


async def test_fresh_database_is_created_empty_at_the_latest_version(make_store):
    store = await make_store()
    assert await store.schema_version() == 1
    assert await store.load_lobbies() == []
    assert await store.recent_messages("general", 50) == []
    assert await store.recent_direct(50) == []


async def test_lobbies_round_trip_with_password_hash_and_persona(make_store):
    """What was written is what a later process reads, bytes and floats exactly."""
    store = await make_store()
    secret = lobby(
        "secret",
        name="Secret",
        password_hash=b"$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        persona="You are a pirate. Answer in pirate speak. 🏴‍☠️",
        created_at=T0 + 0.123456,
        last_active=T0 + 99.654321,
    )
    public = lobby("open", name="Open", created_at=T0 + 1)
    await store.write([secret, public])
    await store.close()
    again = await make_store()
    assert await again.load_lobbies() == [secret, public]


async def test_saving_a_lobby_again_replaces_it(make_store):
    store = await make_store()
    await store.write([lobby("den")])
    await store.write([lobby("den", persona="terse", description="changed")])
    [record] = await store.load_lobbies()
    assert (record.persona, record.description) == ("terse", "changed")


async def test_messages_round_trip_oldest_first_per_lobby(make_store):
    store = await make_store()
    ops: list[Op] = []
    for i in range(30):
        ops.append(msg("general", f"g{i}", T0 + i))
        if i % 3 == 0:
            ops.append(msg("den", f"d{i}", T0 + i))
    special = [
        msg("den", "@bob look", T0 + 40, kind="tag", tagged="bob"),
        msg("den", "Rox says\n  hello *there*", T0 + 41, sender="Rox", picture="🤖", kind="ai"),
        msg("den", "lobby renamed", T0 + 42, sender="server", kind="system"),
        msg("den", "emoji 👩‍💻 and ünïcödé", T0 + 43, picture="🐙"),
    ]
    await store.write(ops + special)
    last = await store.recent_messages("general", 5)
    assert bodies(last) == ["g25", "g26", "g27", "g28", "g29"]
    assert [m.timestamp for m in last] == [T0 + i for i in range(25, 30)]
    ids = [m.id for m in last]
    assert None not in ids and ids == sorted(set(ids))  # type: ignore[type-var]
    den = await store.recent_messages("den", 100)
    assert bodies(den) == [f"d{i}" for i in range(0, 30, 3)] + [m.body for m in special]
    got = {m.body: m for m in den}
    for want in special:
        assert dataclasses.replace(got[want.body], id=None) == want
    assert await store.recent_messages("nowhere", 10) == []


async def test_deleting_a_lobby_deletes_its_history_and_nothing_else(make_store):
    store = await make_store()
    await store.write(
        [lobby("den"), lobby("attic"), msg("den", "d1"), msg("attic", "a1"), msg("general", "g1")]
    )
    await store.write([DeleteLobby("den")])
    assert [r.key for r in await store.load_lobbies()] == ["attic"]
    assert await store.recent_messages("den", 10) == []
    assert bodies(await store.recent_messages("attic", 10)) == ["a1"]
    assert bodies(await store.recent_messages("general", 10)) == ["g1"]


async def test_a_batch_is_applied_in_order(make_store):
    """Delete then re-create in one batch: the new lobby keeps only what came after."""
    store = await make_store()
    await store.write(
        [
            lobby("den", description="first"),
            msg("den", "old"),
            DeleteLobby("den"),
            lobby("den", description="second"),
            msg("den", "new"),
        ]
    )
    [record] = await store.load_lobbies()
    assert record.description == "second"
    assert bodies(await store.recent_messages("den", 10)) == ["new"]


async def test_a_failed_batch_writes_nothing(make_store):
    store = await make_store()
    # Each driver raises its own error for the NOT NULL column the third record breaks.
    if isinstance(store, PostgresStore):
        error, message = psycopg.errors.NotNullViolation, 'null value in column "body"'
    else:
        error, message = sqlite3.IntegrityError, "NOT NULL constraint failed: messages.body"
    with pytest.raises(error, match=re.escape(message)):
        await store.write([lobby("den"), msg("den", "ok"), msg("den", None)])  # type: ignore[arg-type]
    assert await store.load_lobbies() == []
    assert await store.recent_messages("den", 10) == []
    await store.write([msg("den", "after")])  # the connection is still usable
    assert bodies(await store.recent_messages("den", 10)) == ["after"]


async def test_touch_only_moves_last_active_forward(make_store):
    store = await make_store()
    await store.write([lobby("den", last_active=T0 + 10)])
    await store.write([], {"den": T0 + 50, "ghost": T0 + 60})
    [record] = await store.load_lobbies()
    assert record.last_active == T0 + 50
    await store.write([], {"den": T0 + 20})
    [record] = await store.load_lobbies()
    assert record.last_active == T0 + 50


async def test_direct_messages_round_trip(make_store):
    store = await make_store()
    dms = [DirectRecord("alice", "bob", "🙂", f"psst {i}", T0 + i) for i in range(3)]
    await store.write(dms)
    got = await store.recent_direct(2)
    assert [dataclasses.replace(d, id=None) for d in got] == dms[1:]


async def test_prune_keeps_the_newest_per_lobby(make_store):
    store = await make_store()
    ops: list[Op] = [msg("general", f"g{i}", T0 + i) for i in range(25)]
    ops += [msg("den", f"d{i}", T0 + i) for i in range(8)]
    ops += [msg("attic", f"a{i}", T0 + i) for i in range(3)]
    await store.write(ops)
    deleted = await store.prune(max_per_lobby=5, before=None)
    assert deleted == 20 + 3
    assert bodies(await store.recent_messages("general", 100)) == [f"g{i}" for i in range(20, 25)]
    assert bodies(await store.recent_messages("den", 100)) == [f"d{i}" for i in range(3, 8)]
    assert bodies(await store.recent_messages("attic", 100)) == ["a0", "a1", "a2"]
    assert await store.prune(max_per_lobby=5, before=None) == 0


async def test_prune_by_age_covers_messages_and_dms(make_store):
    store = await make_store()
    await store.write(
        [msg("general", f"g{i}", T0 + i) for i in range(10)]
        + [DirectRecord("alice", "bob", "🙂", f"dm{i}", T0 + i) for i in range(10)]
    )
    deleted = await store.prune(max_per_lobby=0, before=T0 + 7)
    assert deleted == 14
    assert bodies(await store.recent_messages("general", 100)) == ["g7", "g8", "g9"]
    assert [d.body for d in await store.recent_direct(100)] == ["dm7", "dm8", "dm9"]


def next_version(migrations: Sequence[Any]) -> tuple[Any, ...]:
    """The schema as a later gochat might have it: one more migration."""
    return (*migrations, (2, "lobby topics", ("ALTER TABLE lobbies ADD COLUMN topic TEXT",)))


def migrations_of(store: Store) -> tuple[Any, ...]:
    return store.migrations  # type: ignore[attr-defined,no-any-return]


async def test_an_older_database_is_migrated_on_start(make_store):
    """A database from the previous schema gets the new migration; its data stays."""
    old = await make_store()
    current = migrations_of(old)
    await old.write([lobby("den"), msg("den", "kept")])
    await old.close()
    new = await make_store(next_version(current))
    assert await new.schema_version() == 2
    assert [r.key for r in await new.load_lobbies()] == ["den"]
    assert bodies(await new.recent_messages("den", 10)) == ["kept"]
    await new.close()
    again = await make_store(next_version(current))  # nothing left to do: opens as it is
    assert await again.schema_version() == 2


async def test_a_newer_database_is_refused_with_a_clear_message(make_store):
    newer = await make_store()
    current = migrations_of(newer)
    await newer.close()
    await make_store(next_version(current))
    with pytest.raises(SchemaTooNew) as caught:
        await make_store(current)
    text = str(caught.value)
    assert "schema version 2" in text
    assert "up to 1" in text
    assert "upgrade gochat" in text


# -- choosing and opening a backend ---------------------------------------------------


def test_gochat_db_chooses_the_backend():
    assert store_for("none") is None
    assert store_for(" OFF ") is None
    default = store_for("gochat.db")
    assert isinstance(default, SQLiteStore) and default.path == "gochat.db"
    relative = store_for("sqlite:///data/chat.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "data/chat.db"
    absolute = store_for("sqlite:////var/lib/gochat/chat.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == "/var/lib/gochat/chat.db"
    memory = store_for(":memory:")
    assert isinstance(memory, SQLiteStore) and memory.path == ":memory:"
    postgres = store_for("postgresql://gochat:hunter2@db.example:5432/chat")
    assert isinstance(postgres, PostgresStore)
    assert "hunter2" not in postgres.description
    assert "gochat:***@db.example" in postgres.description
    assert isinstance(store_for("postgres://localhost/chat"), PostgresStore)
    with pytest.raises(StoreError, match="unknown kind of database 'mysql'"):
        store_for("mysql://localhost/chat")
    with pytest.raises(StoreError, match="no file"):
        store_for("sqlite:///")


def test_default_setting_is_a_sqlite_file_in_the_working_directory():
    store = store_for(Config().db)
    assert isinstance(store, SQLiteStore)
    assert store.path == "gochat.db"
    assert Config.from_env({"GOCHAT_DB": "none"}).db == "none"


async def test_sqlite_in_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=r"directory .* does not exist"):
        await open_store(str(tmp_path / "nowhere" / "chat.db"))


async def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        await open_store(str(path))


async def test_sqlite_uses_wal_mode(tmp_path):
    import sqlite3

    store = await open_store(str(tmp_path / "chat.db"))
    assert store is not None
    await store.write([msg("general", "hi")])
    with sqlite3.connect(tmp_path / "chat.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await store.close()


async def test_sqlite_in_memory_works(tmp_path):
    store = await open_store(":memory:")
    assert store is not None
    await store.write([msg("general", "hi")])
    assert bodies(await store.recent_messages("general", 5)) == ["hi"]
    await store.close()


async def test_unreachable_postgres_is_a_clear_error():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with pytest.raises(StoreError, match="cannot open PostgreSQL database"):
        await open_store(url)


def test_backends_share_one_schema_version():
    assert sqlite_backend.MIGRATIONS[-1][0] == pg_backend.MIGRATIONS[-1][0]


# -- the journal ----------------------------------------------------------------------


def journal_config(**kw: Any) -> Any:
    return test_config(**kw)


def chat(lobby: str, text: str, ts: float = T0, **kw: Any) -> ChatMessage:
    return ChatMessage(lobby, kw.pop("sender", "alice"), "🙂", text, ts, **kw)


def live_lobby(name: str, **kw: Any) -> Lobby:
    """A real Lobby as the journal reads it when it is saved."""
    room = Lobby(
        name,
        creator=kw.get("creator", "alice"),
        description=kw.get("description", "desc"),
        password_hash=kw.get("password_hash"),
        now=kw.get("created_at", T0),
        history_size=10,
    )
    room.persona = kw.get("persona")
    room.last_active = kw.get("last_active", T0)
    return room


class GatedStore(Store):
    """Wraps a real store; writes wait at a gate (a slow store) or fail (a store that is down)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = "gated " + inner.description
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = 0
        self.writes = 0
        self.prune_gate = asyncio.Event()  # prunes wait here, like writes at `gate`
        self.prune_gate.set()
        self.prunes_started = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def schema_version(self) -> int:
        return await self.inner.schema_version()

    async def load_lobbies(self) -> list[LobbyRecord]:
        return await self.inner.load_lobbies()

    async def recent_messages(self, lobby: str, limit: int) -> list[MessageRecord]:
        return await self.inner.recent_messages(lobby, limit)

    async def recent_direct(self, limit: int) -> list[DirectRecord]:
        return await self.inner.recent_direct(limit)

    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("store unreachable (test)")
        await self.inner.write(ops, touched)
        self.writes += 1

    async def prune(self, *, max_per_lobby: int, before: float | None) -> int:
        self.prunes_started += 1
        await self.prune_gate.wait()
        return await self.inner.prune(max_per_lobby=max_per_lobby, before=before)


@pytest.fixture
async def sqlite_path(tmp_path: Any) -> str:
    return str(tmp_path / "journal.db")


async def open_sqlite(path: str) -> Store:
    store = await open_store(path)
    assert store is not None
    return store


async def test_journal_commits_in_the_background(sqlite_path):
    store = await open_sqlite(sqlite_path)
    journal = Journal(store, journal_config(flush_ms=20))
    journal.start()
    journal.lobby_saved(live_lobby("Den", password_hash=b"hash"))
    for i in range(10):
        journal.message(chat("Den", f"m{i}", T0 + i))
    reader = await open_sqlite(sqlite_path)
    try:
        await wait_until(lambda: journal.pending == 0, what="the journal to drain")
        assert bodies(await reader.recent_messages("den", 50)) == [f"m{i}" for i in range(10)]
        [record] = await reader.load_lobbies()
        assert (record.name, record.password_hash) == ("Den", b"hash")
    finally:
        await journal.close()
        await reader.close()


async def test_closing_the_journal_flushes_everything_at_once(sqlite_path):
    """A long flush window does not delay shutdown: close writes what is queued."""
    store = await open_sqlite(sqlite_path)
    journal = Journal(store, journal_config(flush_ms=600_000))
    journal.start()
    for i in range(3):
        journal.message(chat("general", f"first{i}"))
    await wait_until(lambda: journal.written == 3, what="the first commit")
    journal.message(chat("general", "last words"))
    await asyncio.wait_for(journal.close(), 5)
    reader = await open_sqlite(sqlite_path)
    assert bodies(await reader.recent_messages("general", 10))[-1] == "last words"
    await reader.close()


async def test_journal_retries_a_failing_store_and_says_so(sqlite_path, caplog):
    caplog.set_level(logging.INFO, logger="gochat.store")
    gated = GatedStore(await open_sqlite(sqlite_path))
    gated.fail_next = 3
    journal = Journal(gated, journal_config(flush_ms=1))
    journal.start()
    for i in range(5):
        journal.message(chat("general", f"m{i}", T0 + i))
    try:
        await wait_until(lambda: journal.pending == 0, timeout=10, what="the five to be saved")
        assert gated.writes == 1  # one batch, taken on the fourth attempt
        assert bodies(await gated.recent_messages("general", 10)) == [f"m{i}" for i in range(5)]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 3
        assert "store unreachable (test)" in errors[0]
        assert "5 writes waiting" in errors[0]
        assert any("work again after 3 failed attempts" in r.getMessage() for r in caplog.records)
        assert journal.failures == 0
    finally:
        await journal.close()


async def test_full_queue_drops_oldest_messages_but_keeps_lobby_changes(sqlite_path, caplog):
    caplog.set_level(logging.WARNING, logger="gochat.store")
    gated = GatedStore(await open_sqlite(sqlite_path))
    gated.gate.clear()
    journal = Journal(gated, journal_config(flush_ms=1, store_queue_max=100))
    journal.start()
    journal.lobby_saved(live_lobby("Den"))
    journal.message(chat("Den", "first"))
    await wait_until(lambda: journal._inflight == 2, what="the first batch to be stuck")
    journal.lobby_saved(live_lobby("Attic"))
    for i in range(250):
        journal.message(chat("Den", f"m{i}", T0 + i))
    journal.lobby_deleted("attic")
    assert journal.dropped == 151  # Attic's save was older than them all, yet kept
    warnings = [r.getMessage() for r in caplog.records if "write queue full" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert "dropped 1 oldest messages (1 in all)" in warnings[0]
    assert "slow or down" in warnings[0]
    gated.gate.set()
    try:
        await wait_until(lambda: journal.pending == 0, what="the queue to drain")
        stored = bodies(await gated.recent_messages("den", 500))
        assert stored == ["first"] + [f"m{i}" for i in range(151, 250)]
        assert [r.key for r in await gated.load_lobbies()] == ["den"]  # attic: saved, deleted
        warnings = [r.getMessage() for r in caplog.records if "write queue full" in r.getMessage()]
        assert "dropped 150 oldest messages (151 in all)" in warnings[-1]  # told once it is over
    finally:
        await journal.close()


async def test_close_during_the_first_prune_does_not_wait_for_the_next_one(sqlite_path, caplog):
    """close() lands while the start-up prune is awaited: the writer must still see it.

    The writer once judged "closing?" before the prune and then cleared the wake-up
    that close() had set, sleeping until the next prune (minutes) while shutdown
    waited out GOCHAT_STORE_CLOSE_TIMEOUT and reported writes lost.
    """
    caplog.set_level(logging.INFO, logger="gochat.store")
    gated = GatedStore(await open_sqlite(sqlite_path))
    gated.prune_gate.clear()
    journal = Journal(gated, journal_config(history_max=10, store_close_timeout=60))
    journal.start()
    await wait_until(lambda: gated.prunes_started == 1, what="the first prune to start")
    closing = asyncio.ensure_future(journal.close())
    await wait_until(
        lambda: journal._closing.is_set() and journal._wake.is_set(),
        what="close() to set the flag and the wake-up",
    )
    gated.prune_gate.set()
    await asyncio.wait_for(closing, 10)  # well inside the 60 s close timeout
    assert not [r for r in caplog.records if "writes lost" in r.getMessage()]
    assert any("all writes saved" in r.getMessage() for r in caplog.records)


async def test_closing_twice_after_a_timed_out_close_is_harmless(sqlite_path, caplog):
    """A close that gave up cancels the writer; the next close must not raise CancelledError."""
    caplog.set_level(logging.ERROR, logger="gochat.store")
    gated = GatedStore(await open_sqlite(sqlite_path))
    gated.gate.clear()  # the store never takes the write
    journal = Journal(gated, journal_config(flush_ms=1, store_close_timeout=0.05))
    journal.start()
    journal.message(chat("general", "stuck"))
    await wait_until(lambda: journal._inflight == 1, what="the write to be stuck")
    await journal.close()
    assert any("1 writes lost" in r.getMessage() for r in caplog.records)
    await journal.close()  # the server's shutdown may run twice (a test, then its fixture)


async def test_direct_messages_are_kept_only_when_asked(sqlite_path, tmp_path):
    dm = DirectMessage("alice", "🙂", "bob", "psst", T0)
    for flag, path in ((False, sqlite_path), (True, str(tmp_path / "dms.db"))):
        store = await open_sqlite(path)
        journal = Journal(store, journal_config(store_dms=flag))
        journal.start()
        journal.direct(dm)
        journal.message(chat("general", "public"))
        await journal.close()
        reader = await open_sqlite(path)
        got = await reader.recent_direct(10)
        assert [d.body for d in got] == (["psst"] if flag else [])
        await reader.close()


async def test_journal_prunes_in_the_background(sqlite_path):
    store = await open_sqlite(sqlite_path)
    await store.write([msg("general", f"old{i}", T0 - 10 * 86400 + i) for i in range(5)])
    await store.write([msg("general", f"new{i}", T0 + i) for i in range(5)])
    journal = Journal(store, journal_config(history_max=3, history_days=1), clock=lambda: T0 + 10)
    journal.start()
    reader = await open_sqlite(sqlite_path)
    try:

        async def remaining() -> list[str]:
            return bodies(await reader.recent_messages("general", 50))

        for _ in range(500):
            if await remaining() == ["new2", "new3", "new4"]:
                break
            await asyncio.sleep(0.01)
        assert await remaining() == ["new2", "new3", "new4"]
    finally:
        await journal.close()
        await reader.close()


async def test_postgres_connection_cut_is_survived(pg_url, caplog):
    """The server's connection is killed mid-chat: writes fail, reconnect, nothing is lost."""
    caplog.set_level(logging.INFO, logger="gochat.store")
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    journal = Journal(store, journal_config(flush_ms=10))
    journal.start()
    reader = await open_store(pg_url)
    assert reader is not None
    try:
        journal.message(chat("general", "before"))
        await wait_until(lambda: journal.written == 1, what="the first commit")
        assert store._conn is not None
        pid = store._conn.info.backend_pid
        await pg_execute("SELECT pg_terminate_backend(%s)", (pid,))
        for i in range(20):
            journal.message(chat("general", f"after{i}", T0 + i))
        await wait_until(lambda: journal.pending == 0, timeout=15, what="writes after the cut")
        stored = bodies(await reader.recent_messages("general", 50))
        assert stored == ["before"] + [f"after{i}" for i in range(20)]
        assert store._conn is not None and store._conn.info.backend_pid != pid
    finally:
        await journal.close()
        await reader.close()


async def test_journal_waits_the_flush_interval_between_commits(sqlite_path, monkeypatch):
    """After a commit, the next one waits GOCHAT_FLUSH_MS: batches, not a write per line.

    The wait is recorded instead of slept, so the test takes no time and reads no clock.
    """
    store = await open_sqlite(sqlite_path)
    journal = Journal(store, journal_config(flush_ms=10_000))
    batch_waits: list[float] = []
    real_wait = journal_module._wait

    async def record(event: asyncio.Event, seconds: float) -> None:
        if event is journal._closing:  # the wait between two commits
            batch_waits.append(seconds)
            return
        await real_wait(event, seconds)  # the idle wait for work

    monkeypatch.setattr(journal_module, "_wait", record)
    journal.start()
    try:
        journal.message(chat("general", "first"))
        await wait_until(lambda: journal.written == 1, what="the first commit")
        journal.message(chat("general", "second"))
        await wait_until(lambda: journal.written == 2, what="the second commit")
        assert 5.0 < batch_waits[-1] <= 10.0
    finally:
        await journal.close()
