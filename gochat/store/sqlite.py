"""SQLite backend: stdlib sqlite3 in WAL mode, driven by one worker thread.

sqlite3 calls block, so every call runs on a single daemon thread that owns
the connection; the event loop only awaits a future. The thread is a daemon
so a stuck disk can never keep the process from exiting. A whole plan (see
gochat.store.sql) runs in one call on that thread, inside BEGIN IMMEDIATE, so
no other call's statements land in the middle of its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gochat.store.base import StoreError
from gochat.store.sql import (
    Dialect,
    Migration,
    Plan,
    Result,
    SQLStore,
    Statement,
    migrations,
    plan_migrate,
    run_sync,
)

T = TypeVar("T")

SQLITE = Dialect(
    placeholder="?",
    blob="BLOB",
    real="REAL",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    error=sqlite3.Error,
)
MIGRATIONS: tuple[Migration, ...] = migrations(SQLITE)


def _execute(db: sqlite3.Connection, step: Statement) -> Result:
    params = step.params if step.params is not None else ()
    cursor = db.executemany(step.sql, params) if step.many else db.execute(step.sql, params)
    return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)


def _finish(db: sqlite3.Connection, plan: Plan[T], *, commit: bool = True) -> T:
    """Run `plan` in the transaction the caller began; commit (or not), roll back on error."""
    try:
        result = run_sync(plan, lambda step: _execute(db, step))
        db.execute("COMMIT" if commit else "ROLLBACK")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


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


class SQLiteStore(SQLStore):
    """A SQLite file (or ":memory:") in WAL mode."""

    backend = "sqlite"
    dialect = SQLITE

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
        _finish(db, plan_migrate(SQLITE, self.description, self.migrations), commit=not check)

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

    # -- running plans ----------------------------------------------------------------

    async def _run(self, plan: Plan[T], *, transaction: bool = True) -> T:
        if self._worker is None:
            raise StoreError(f"{self.description} is not open")
        return await self._worker.call(self._run_here, plan, transaction)

    def _run_here(self, plan: Plan[T], transaction: bool) -> T:
        """On the worker thread: the whole plan, in BEGIN IMMEDIATE ... COMMIT if asked."""
        db = self._db
        if db is None:
            raise StoreError(f"{self.description} is not open")
        if not transaction:
            return run_sync(plan, lambda step: _execute(db, step))
        db.execute("BEGIN IMMEDIATE")
        return _finish(db, plan)
