"""The SQL both backends speak: schema, migrations, statements and what runs them.

SQLite and PostgreSQL differ here only in what a `Dialect` holds (placeholder
style, three column types, the driver's error class). Everything else, from the
migrations to the write path and pruning, is written once as a *plan*: a
generator that yields `Statement`s and is sent each one's `Result`. A plan does
no I/O of its own, so the same plan runs synchronously on SQLite's worker thread
(`run_sync`) and natively async on psycopg (`run_async`), each inside the
backend's own transaction. The backends keep only connecting, transactions and
error translation.

The upsert is not in the dialect: ``INSERT ... ON CONFLICT (key) DO UPDATE SET
x = excluded.x`` is the same in both (SQLite since 3.24).
"""

from __future__ import annotations

import itertools
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

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

#: (version, description, statements); versions only grow, and a version once
#: released never changes: databases in the field have it applied already.
Migration = tuple[int, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database does differently; the rest of this module is shared."""

    #: how a statement marks a parameter ("?" for sqlite3, "%s" for psycopg)
    placeholder: str
    #: column types the migrations name as {blob}, {real} and {serial}
    blob: str
    real: str
    serial: str  # an auto-numbered primary key
    #: the driver's base error: a probe write failing with it means "read-only"
    error: type[Exception]
    #: an error as one line for the operator
    describe: Callable[[Exception], str] = str

    def q(self, sql: str) -> str:
        """A shared statement (written with ? placeholders) in this dialect's style."""
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def render(self, template: str) -> str:
        """A schema statement with this dialect's column types filled in."""
        return template.format(blob=self.blob, real=self.real, serial=self.serial)


# -- the schema -----------------------------------------------------------------------
# Templates: {blob}, {real} and {serial} are the dialect's types (so a literal brace
# would have to be doubled). Rendered, they are exactly what each backend has always
# created, so existing SQLite files and PostgreSQL databases keep their version.

SCHEMA: tuple[Migration, ...] = (
    (
        1,
        "lobbies, messages and direct messages",
        (
            """CREATE TABLE lobbies (
                key TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                creator TEXT NOT NULL,
                description TEXT NOT NULL,
                password_hash {blob},
                persona TEXT,
                created_at {real} NOT NULL,
                last_active {real} NOT NULL
            )""",
            """CREATE TABLE messages (
                id {serial},
                lobby TEXT NOT NULL,
                sender TEXT NOT NULL,
                picture TEXT NOT NULL,
                body TEXT NOT NULL,
                kind TEXT NOT NULL,
                tagged TEXT,
                ts {real} NOT NULL
            )""",
            "CREATE INDEX messages_lobby_id ON messages (lobby, id)",
            "CREATE INDEX messages_ts ON messages (ts)",
            """CREATE TABLE direct_messages (
                id {serial},
                sender TEXT NOT NULL,
                recipient TEXT NOT NULL,
                picture TEXT NOT NULL,
                body TEXT NOT NULL,
                ts {real} NOT NULL
            )""",
            "CREATE INDEX direct_messages_ts ON direct_messages (ts)",
        ),
    ),
)

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS gochat_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {real} NOT NULL
)"""


def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """SCHEMA in the dialect's column types: what a backend's store applies."""
    return tuple(
        (version, description, tuple(dialect.render(s) for s in statements))
        for version, description, statements in SCHEMA
    )


# -- statements (? placeholders; Dialect.q converts) ---------------------------------

SCHEMA_VERSION = "SELECT MAX(version) FROM gochat_migrations"
RECORD_MIGRATION = """INSERT INTO gochat_migrations (version, description, applied_at)
    VALUES (?, ?, ?)"""
# The write probe: a row in and out again, inside the open's transaction. A read-only
# database fails here instead of at the first chat line.
PROBE_INSERT = """INSERT INTO gochat_migrations (version, description, applied_at)
    VALUES (-1, 'write probe', 0)"""
PROBE_DELETE = "DELETE FROM gochat_migrations WHERE version = -1"

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


# -- rows <-> records -----------------------------------------------------------------


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
        bytes(password_hash) if password_hash is not None else None,  # psycopg: memoryview
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


#: the appended or replaced kinds of Op: their statement and row
APPENDS: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    MessageRecord: (INSERT_MESSAGE, message_row),
    DirectRecord: (INSERT_DIRECT, direct_row),
    LobbyRecord: (UPSERT_LOBBY, lobby_row),
}


# -- plans and what runs them ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement for the backend to execute; `many`: `params` is a list of rows."""

    sql: str
    params: Sequence[Any] | None = None  # None: no parameters at all (DDL is sent as is)
    many: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What a statement gave back: its rows (none for DML) and the driver's rowcount."""

    rows: list[tuple[Any, ...]]
    rowcount: int


Plan = Generator[Statement, Result, T]


def run_sync(plan: Plan[T], execute: Callable[[Statement], Result]) -> T:
    """Run a plan with a blocking driver (SQLite, on its worker thread).

    A statement's error is thrown into the plan, which may translate it (the write
    probe does) or let it through to the backend's transaction, which rolls back.
    """
    try:
        step = next(plan)
        while True:
            try:
                result = execute(step)
            except Exception as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


async def run_async(plan: Plan[T], execute: Callable[[Statement], Awaitable[Result]]) -> T:
    """`run_sync` for a natively async driver (psycopg)."""
    try:
        step = next(plan)
        while True:
            try:
                result = await execute(step)
            except Exception as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


def too_new(description: str, version: int, latest: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{description} has schema version {version}, newer than this gochat understands "
        f"(up to {latest}); upgrade gochat, or set GOCHAT_DB to another database"
    )


def plan_migrate(d: Dialect, description: str, steps: Sequence[Migration]) -> Plan[None]:
    """Create or migrate the schema up to `steps`, then probe a write; one transaction.

    The caller holds the transaction (and, on PostgreSQL, the lock that keeps two
    servers from migrating at once) and decides whether it commits.
    """
    yield Statement(d.render(MIGRATIONS_TABLE))
    current = (yield Statement(SCHEMA_VERSION)).rows[0][0] or 0
    latest = steps[-1][0] if steps else 0
    if current > latest:
        raise too_new(description, current, latest)
    for version, what, statements in steps:
        if version <= current:
            continue
        for statement in statements:
            yield Statement(statement)
        yield Statement(d.q(RECORD_MIGRATION), (version, what, time.time()))
    try:
        yield Statement(PROBE_INSERT)
        yield Statement(PROBE_DELETE)
    except d.error as exc:
        raise StoreError(f"cannot write to {description}: {d.describe(exc)}") from None


def plan_schema_version() -> Plan[int]:
    return int((yield Statement(SCHEMA_VERSION)).rows[0][0] or 0)


def plan_select(sql: str, params: Sequence[Any] | None = None) -> Plan[list[tuple[Any, ...]]]:
    return (yield Statement(sql, params)).rows


def plan_write(d: Dialect, ops: Sequence[Op], touched: Mapping[str, float]) -> Plan[None]:
    """Apply `ops` in order (runs of one kind as one executemany), then the touches."""
    for kind, group in itertools.groupby(ops, type):
        if kind is DeleteLobby:
            for op in group:
                assert isinstance(op, DeleteLobby)
                yield Statement(d.q(DELETE_LOBBY_MESSAGES), (op.key,))
                yield Statement(d.q(DELETE_LOBBY), (op.key,))
            continue
        if kind not in APPENDS:
            raise TypeError(f"not a store operation: {kind.__name__}")
        sql, row = APPENDS[kind]
        yield Statement(d.q(sql), [row(op) for op in group], many=True)
    if touched:
        rows = [(t, k, t) for k, t in touched.items()]
        yield Statement(d.q(TOUCH_LOBBY), rows, many=True)


def plan_prune(d: Dialect, max_per_lobby: int, before: float | None) -> Plan[int]:
    """Delete by age, then trim each crowded lobby to its newest rows; how many went."""
    deleted = 0
    if before is not None:
        for sql in (EXPIRE_MESSAGES, EXPIRE_DIRECT):
            deleted += max((yield Statement(d.q(sql), (before,))).rowcount, 0)
    if max_per_lobby > 0:
        crowded = (yield Statement(d.q(CROWDED_LOBBIES), (max_per_lobby,))).rows
        for (lobby,) in crowded:
            trimmed = yield Statement(d.q(TRIM_LOBBY), (lobby, lobby, max_per_lobby))
            deleted += max(trimmed.rowcount, 0)
    return deleted


class SQLStore(Store):
    """The Store API, once, over a backend that can run a plan (`_run`) and open itself."""

    dialect: ClassVar[Dialect]
    #: the migrations this store applies (a test may give it later ones)
    migrations: tuple[Migration, ...]

    @abstractmethod
    async def _run(self, plan: Plan[T], *, transaction: bool = True) -> T:
        """Run `plan` on the connection: in one transaction, or (reads) as it comes."""

    async def schema_version(self) -> int:
        return await self._run(plan_schema_version(), transaction=False)

    async def load_lobbies(self) -> list[LobbyRecord]:
        rows = await self._run(plan_select(SELECT_LOBBIES), transaction=False)
        return [lobby_record(row) for row in rows]

    async def recent_messages(self, lobby: str, limit: int) -> list[MessageRecord]:
        plan = plan_select(self.dialect.q(SELECT_RECENT), (lobby, limit))
        rows = await self._run(plan, transaction=False)
        return [message_record(row) for row in reversed(rows)]

    async def recent_direct(self, limit: int) -> list[DirectRecord]:
        rows = await self._run(
            plan_select(self.dialect.q(SELECT_DIRECT), (limit,)), transaction=False
        )
        return [direct_record(row) for row in reversed(rows)]

    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        if ops or touched:
            # Copies: on SQLite the plan runs later, on another thread.
            await self._run(plan_write(self.dialect, list(ops), dict(touched or {})))

    async def prune(self, *, max_per_lobby: int, before: float | None) -> int:
        return await self._run(plan_prune(self.dialect, max_per_lobby, before))
