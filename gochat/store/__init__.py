"""Persistence: lobbies and their history, in SQLite (default) or PostgreSQL.

GOCHAT_DB chooses the backend:

- a file path, or ``sqlite:///relative/path`` / ``sqlite:////absolute/path``: SQLite
  (default ``gochat.db`` in the working directory); ``:memory:`` keeps it in memory;
- ``postgresql://user@host:5432/db`` (or ``postgres://``): PostgreSQL, which needs
  ``pip install 'gochat[postgres]'``;
- ``none`` (or ``off``): no store at all; history lives only in memory.
"""

from __future__ import annotations

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

NO_STORE = frozenset({"none", "off", "no", "false", "0", "disabled"})

__all__ = [
    "NO_STORE",
    "DeleteLobby",
    "DirectRecord",
    "LobbyRecord",
    "MessageRecord",
    "Op",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "open_store",
    "store_for",
]


def store_for(url: str) -> Store | None:
    """The (unopened) store GOCHAT_DB names, or None for no store; StoreError if unknown."""
    url = url.strip()
    if url.lower() in NO_STORE:
        return None
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in ("postgresql", "postgres"):
        try:
            from gochat.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "GOCHAT_DB is a PostgreSQL URL but psycopg is not installed: "
                "pip install 'gochat[postgres]'"
            ) from None
        return PostgresStore(url)
    from gochat.store.sqlite import SQLiteStore

    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise StoreError(f"GOCHAT_DB={url!r}: no file after sqlite:///")
        return SQLiteStore(path)
    if scheme:
        raise StoreError(
            f"GOCHAT_DB={url!r}: unknown kind of database {scheme!r}; use a file path, "
            "sqlite:///path, postgresql://... or none"
        )
    return SQLiteStore(url)


async def open_store(url: str) -> Store | None:
    """The store GOCHAT_DB names, connected and migrated; None for no store."""
    store = store_for(url)
    if store is not None:
        await store.open()
    return store
