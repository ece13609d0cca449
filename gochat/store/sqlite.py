"""SQLite backend: stdlib sqlite3 in WAL mode, driven by one worker thread.

sqlite3 calls block, so every call runs on a single daemon thread that owns
the connection; the event loop only awaits a future. The thread is a daemon
so a stuck disk can never keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from gochat.store.base import (
    DeleteLobby,
    DirectRecord,
    LobbyRecord,
    MessageRecord,
    Op,
    SchemaTooNew,
    Store,
    StoreError,
)

T = TypeVar("T")

Migration = tuple[int, str, tuple[str, ...]]

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "lobbies, messages and direct messages",
        (
            """CREATE TABLE lobbies (
                key TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                creator TEXT NOT NULL,
                description TEXT NOT NULL,
                password_hash BLOB,
                persona TEXT,
                created_at REAL NOT NULL,
                last_active REAL NOT NULL
            )""",
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                lobby TEXT NOT NULL,
                sender TEXT NOT NULL,
                picture TEXT NOT NULL,
                body TEXT NOT NULL,
                kind TEXT NOT NULL,
                tagged TEXT,
                ts REAL NOT NULL
            )""",
            "CREATE INDEX messages_lobby_id ON messages (lobby, id)",
            "CREATE INDEX messages_ts ON messages (ts)",
            """CREATE TABLE direct_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                sender TEXT NOT NULL,
                recipient TEXT NOT NULL,
                picture TEXT NOT NULL,
                body TEXT NOT NULL,
                ts REAL NOT NULL
            )""",
            "CREATE INDEX direct_messages_ts ON direct_messages (ts)",
        ),
    ),
)

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS gochat_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""
# The write probe (shared with PostgreSQL): a row in and out again, inside the open's
# transaction. A read-only database fails here instead of at the first chat line.
PROBE_INSERT = """INSERT INTO gochat_migrations (version, description, applied_at)
    VALUES (-1, 'write probe', 0)"""
PROBE_DELETE = "DELETE FROM gochat_migrations WHERE version = -1"

# Statements shared with the PostgreSQL backend (which swaps ? for %s).
UPSERT_LOBBY = """INSERT INTO lobbies
    (key, name, creator, description, password_hash, persona, created_at, last_active)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        name = excluded.name, creator = excluded.creator, description = excluded.description,
        password_hash = excluded.password_hash, persona = excluded.persona,
        created_at = excluded.created_at, last_active = excluded.last_active"""
DELETE_LOBBY_MESSAGES = "DELETE FROM messages WHERE lobby = ?"
DELETE_LOBBY = "DELETE FROM lobbies WHERE key = ?"
INSERT_MESSAGE = """INSERT INTO messages (lobby, sender, picture, body, kind, tagged, ts)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""
INSERT_DIRECT = """INSERT INTO direct_messages (sender, recipient, picture, body, ts)
    VALUES (?, ?, ?, ?, ?)"""
TOUCH_LOBBY = "UPDATE lobbies SET last_active = ? WHERE key = ? AND last_active < ?"
SELECT_LOBBIES = """SELECT key, name, creator, description, password_hash, persona,
    created_at, last_active FROM lobbies ORDER BY created_at, key"""
SELECT_RECENT = """SELECT id, lobby, sender, picture, body, kind, tagged, ts FROM messages
    WHERE lobby = ? ORDER BY id DESC LIMIT ?"""
SELECT_DIRECT = """SELECT id, sender, recipient, picture, body, ts FROM direct_messages
    ORDER BY id DESC LIMIT ?"""
CROWDED_LOBBIES = "SELECT lobby FROM messages GROUP BY lobby HAVING COUNT(*) > ?"
TRIM_LOBBY = """DELETE FROM messages WHERE lobby = ? AND id <= (
    SELECT id FROM messages WHERE lobby = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"""
EXPIRE_MESSAGES = "DELETE FROM messages WHERE ts < ?"
EXPIRE_DIRECT = "DELETE FROM direct_messages WHERE ts < ?"


def too_new(description: str, version: int, latest: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{description} has schema version {version}, newer than this gochat understands "
        f"(up to {latest}); upgrade gochat, or set GOCHAT_DB to another database"
    )


def lobby_row(r: LobbyRecord) -> tuple[Any, ...]:
    return (
        r.key,
        r.name,
        r.creator,
        r.description,
        r.password_hash,
        r.persona,
        r.created_at,
        r.last_active,
    )


def message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (m.lobby, m.sender, m.picture, m.body, m.kind, m.tagged, m.timestamp)


def direct_row(d: DirectRecord) -> tuple[Any, ...]:
    return (d.sender, d.recipient, d.picture, d.body, d.timestamp)


def lobby_record(row: Sequence[Any]) -> LobbyRecord:
    key, name, creator, description, password_hash, persona, created_at, last_active = row
    return LobbyRecord(
        key,
        name,
        creator,
        description,
        bytes(password_hash) if password_hash is not None else None,
        persona,
        float(created_at),
        float(last_active),
    )


def message_record(row: Sequence[Any]) -> MessageRecord:
    id_, lobby, sender, picture, body, kind, tagged, ts = row
    return MessageRecord(lobby, sender, picture, body, kind, float(ts), tagged, int(id_))


def direct_record(row: Sequence[Any]) -> DirectRecord:
    id_, sender, recipient, picture, body, ts = row
    return DirectRecord(sender, recipient, picture, body, float(ts), int(id_))


class _Worker:
    """One daemon thread that runs calls in order and reports back to the loop."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            call, future, loop = job
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting coroutine
                _report(loop, future, None, exc)
            else:
                _report(loop, future, result, None)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((lambda: fn(*args), future, loop))
        return await future

    def stop(self) -> None:
        self._jobs.put(None)


def _report(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


class SQLiteStore(Store):
    """A SQLite file (or ":memory:") in WAL mode."""

    backend = "sqlite"

    def __init__(self, path: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = path
        self.description = f"SQLite database {path}"
        self.migrations = tuple(migrations)
        self._db: sqlite3.Connection | None = None
        self._worker: _Worker | None = None
        self._created_by_check = False  # remove the file again at close

    # -- lifecycle ----------------------------------------------------------------

    async def open(self, *, check: bool = False) -> None:
        if self._worker is None:
            self._worker = _Worker("gochat-sqlite")
        try:
            await self._worker.call(self._open, check)
        except StoreError:
            await self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreError(f"cannot open {self.description}: {exc}") from None

    def _open(self, check: bool) -> None:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StoreError(
                    f"cannot open {self.description}: directory {parent} does not exist"
                )
            self._created_by_check = check and not os.path.exists(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL: durable across crashes of the process
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.description}: {exc}") from None
        try:
            db.execute(MIGRATIONS_TABLE)
            current = db.execute("SELECT MAX(version) FROM gochat_migrations").fetchone()[0] or 0
            latest = self.migrations[-1][0] if self.migrations else 0
            if current > latest:
                raise too_new(self.description, current, latest)
            for version, description, statements in self.migrations:
                if version <= current:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO gochat_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (version, description, time.time()),
                )
            try:
                db.execute(PROBE_INSERT)
                db.execute(PROBE_DELETE)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to {self.description}: {exc}") from None
            db.execute("ROLLBACK" if check else "COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.call(self._close), 5.0)
        worker.stop()

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        if self._created_by_check:  # --check-config leaves no new file behind
            self._created_by_check = False
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path + suffix)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            raise StoreError(f"{self.description} is not open")
        return await self._worker.call(fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.description} is not open")
        return self._db

    # -- reads ----------------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._call(
            lambda: (
                self._conn().execute("SELECT MAX(version) FROM gochat_migrations").fetchone()[0]
                or 0
            )
        )

    async def load_lobbies(self) -> list[LobbyRecord]:
        rows = await self._call(lambda: self._conn().execute(SELECT_LOBBIES).fetchall())
        return [lobby_record(row) for row in rows]

    async def recent_messages(self, lobby: str, limit: int) -> list[MessageRecord]:
        rows = await self._call(
            lambda: self._conn().execute(SELECT_RECENT, (lobby, limit)).fetchall()
        )
        return [message_record(row) for row in reversed(rows)]

    async def recent_direct(self, limit: int) -> list[DirectRecord]:
        rows = await self._call(lambda: self._conn().execute(SELECT_DIRECT, (limit,)).fetchall())
        return [direct_record(row) for row in reversed(rows)]

    # -- writes ---------------------------------------------------------------------

    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        if ops or touched:
            await self._call(self._write, list(ops), dict(touched or {}))

    def _write(self, ops: list[Op], touched: dict[str, float]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, group in itertools.groupby(ops, type):
                if kind is MessageRecord:
                    db.executemany(INSERT_MESSAGE, map(message_row, group))  # type: ignore[arg-type]
                elif kind is DirectRecord:
                    db.executemany(INSERT_DIRECT, map(direct_row, group))  # type: ignore[arg-type]
                elif kind is LobbyRecord:
                    db.executemany(UPSERT_LOBBY, map(lobby_row, group))  # type: ignore[arg-type]
                elif kind is DeleteLobby:
                    for op in group:
                        assert isinstance(op, DeleteLobby)
                        db.execute(DELETE_LOBBY_MESSAGES, (op.key,))
                        db.execute(DELETE_LOBBY, (op.key,))
                else:
                    raise TypeError(f"not a store operation: {kind.__name__}")
            if touched:
                db.executemany(TOUCH_LOBBY, ((t, k, t) for k, t in touched.items()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def prune(self, *, max_per_lobby: int, before: float | None) -> int:
        return await self._call(self._prune, max_per_lobby, before)

    def _prune(self, max_per_lobby: int, before: float | None) -> int:
        db = self._conn()
        deleted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if before is not None:
                deleted += db.execute(EXPIRE_MESSAGES, (before,)).rowcount
                deleted += db.execute(EXPIRE_DIRECT, (before,)).rowcount
            if max_per_lobby > 0:
                crowded = [row[0] for row in db.execute(CROWDED_LOBBIES, (max_per_lobby,))]
                for lobby in crowded:
                    deleted += db.execute(TRIM_LOBBY, (lobby, lobby, max_per_lobby)).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return deleted
