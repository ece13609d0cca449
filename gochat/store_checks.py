"""The store's part of `gochat --check-config`: can the database be opened and written?

It is the longest check and the only one that talks to another server, with
drivers that may be missing from a build (psycopg, or gochat.store itself);
kept apart, `gochat.checks` reads as the list of what is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import os
import socket
import sqlite3
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gochat.config import Config


class Report(Protocol):
    """Where findings go (gochat.checks.Report): a line of what was found, or a problem."""

    def info(self, what: str, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...


DB_TIMEOUT = 5.0
"""Seconds the database may take to answer."""


def db_setting(config: Config) -> tuple[str, str] | None:
    """(variable, value) of the database setting, or None in a build without a store."""
    for f in dataclasses.fields(config):
        if f.metadata.get("env") == "GOCHAT_DB":
            return "GOCHAT_DB", str(getattr(config, f.name))
    return None


def check_store(config: Config, report: Report) -> None:
    setting = db_setting(config)
    try:
        store = _store_module()
    except Exception as exc:
        report.info("store", "cannot be loaded")
        report.error(f"the store module failed to load: {_one_line(exc)}")
        return
    if store is not None:
        _open_store(config, store, report)
        return
    if setting is None:
        report.info("store", "none in this build (history is kept in memory)")
        return
    env, value = setting
    off = getattr(store, "NO_STORE", frozenset({"none", "off"}))
    if not value.strip() or value.strip().lower() in off:
        report.info("store", f"off ({env}={value.strip()!r}; history is kept in memory)")
        return
    store_for = getattr(store, "store_for", None)
    if callable(store_for):
        try:
            store_for(value)  # the URL's kind and the driver; nothing is opened
        except Exception as exc:
            report.info("store", _mask_password(value))
            report.error(_one_line(exc))
            return
    check_database(value, report)


def _open_store(config: Config, module: Any, report: Report) -> None:
    """Open the store as start-up does (migrations and write probe), rolled back."""
    try:
        store = module.store_for(config.db)
    except module.StoreError as exc:
        report.info("store", _mask_password(config.db))
        report.error(str(exc))
        return
    if store is None:
        report.info("store", f"off (GOCHAT_DB={config.db.strip()!r}; history is kept in memory)")
        return

    async def open_and_close() -> None:
        try:
            await store.open(check=True)
        finally:
            await store.close()

    try:
        asyncio.run(_bounded(open_and_close()))
    except module.StoreError as exc:
        report.info("store", store.description)
        report.error(str(exc))
        return
    except TimeoutError:
        report.info("store", store.description)
        report.error(f"{store.description} did not answer within {DB_TIMEOUT:g} s")
        return
    report.info("store", f"{store.description} (opened, writable)")


def _store_module() -> Any:
    """gochat.store when this build has it (it may offer `check(config)`), else None."""
    if importlib.util.find_spec("gochat.store") is None:
        return None
    return importlib.import_module("gochat.store")


def check_database(value: str, report: Report) -> None:
    """Read-only reachability: a SQLite file opens (or can be created); PostgreSQL answers.

    Nothing is created or migrated here: that is the daemon's job at start.
    """
    if value.startswith(("postgres://", "postgresql://")):
        _check_postgres(value, report)
    else:
        _check_sqlite(value, report)


async def _bounded(awaitable: Any) -> Any:
    async with asyncio.timeout(DB_TIMEOUT):
        return await awaitable


def _check_sqlite(value: str, report: Report) -> None:
    path = value.removeprefix("sqlite:///") if value.startswith("sqlite:///") else value
    if path == ":memory:":
        report.info("store", "SQLite in memory (nothing survives a restart)")
        return
    absolute = os.path.abspath(path)
    if os.path.exists(absolute):
        uri = f"file:{absolute}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=DB_TIMEOUT)) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            report.info("store", f"SQLite {absolute}")
            report.error(f"cannot read the database {absolute}: {exc}")
            return
        if not os.access(absolute, os.W_OK):
            report.error(f"the database {absolute} is not writable by this user")
        report.info("store", f"SQLite {absolute}")
        return
    directory = os.path.dirname(absolute)
    if not os.path.isdir(directory):
        report.error(f"the database directory {directory} does not exist")
    elif not os.access(directory, os.W_OK | os.X_OK):
        report.error(f"cannot create {absolute}: {directory} is not writable by this user")
    report.info("store", f"SQLite {absolute} (created on first start)")


def _check_postgres(url: str, report: Report) -> None:
    shown = _mask_password(url)
    try:
        import psycopg
    except ImportError:
        _check_postgres_port(url, report)
        return
    try:
        with psycopg.connect(
            url, connect_timeout=int(DB_TIMEOUT), application_name="gochat --check-config"
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        report.info("store", f"PostgreSQL {shown}")
        detail = _one_line(exc)
        password = urlsplit(url).password
        if password:
            detail = detail.replace(password, "***")
        report.error(f"cannot connect to PostgreSQL {shown}: {detail}")
        return
    report.info("store", f"PostgreSQL {shown} (connected)")


def _check_postgres_port(url: str, report: Report) -> None:
    """Without psycopg the daemon cannot use PostgreSQL at all; still say if the port answers."""
    parts = urlsplit(url)
    shown = _mask_password(url)
    report.warn("psycopg is not installed: pip install 'gochat[postgres]'")
    host = parts.hostname or ""
    try:
        port = parts.port or 5432
    except ValueError:
        report.info("store", f"PostgreSQL {shown}")
        report.error("GOCHAT_DB has an invalid port")
        return
    if not host or host.startswith("/"):
        report.info("store", f"PostgreSQL {shown} (Unix socket; not checked here)")
        return
    try:
        with socket.create_connection((host, port), timeout=DB_TIMEOUT):
            pass
    except OSError as exc:
        report.info("store", f"PostgreSQL {shown}")
        report.error(f"cannot reach PostgreSQL at {host}:{port}: {exc.strerror or exc}")
        return
    report.info("store", f"PostgreSQL {shown} (port reachable)")


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
