"""The store interface every backend implements, and the records it speaks in.

A store is opened once at start (connect, create or migrate the schema), read
once to fill the lobbies' history rings, and then only written to, in batches,
by the journal's writer task. Nothing here knows about sockets or the chat core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says why and what to fix."""


class SchemaTooNew(StoreError):
    """The database was written by a newer gochat than this one."""


@dataclass(frozen=True, slots=True)
class LobbyRecord:
    """A lobby as stored: `key` is the case-folded name, `name` the one shown."""

    key: str
    name: str
    creator: str
    description: str
    password_hash: bytes | None
    persona: str | None
    created_at: float
    last_active: float


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A line said in a lobby; `lobby` is the lobby's key. `id` is set by the store."""

    lobby: str
    sender: str
    picture: str
    body: str
    kind: str
    timestamp: float
    tagged: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class DirectRecord:
    """A private message (stored only when GOCHAT_STORE_DMS=1)."""

    sender: str
    recipient: str
    picture: str
    body: str
    timestamp: float
    id: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteLobby:
    """Remove the lobby with this key and all its messages."""

    key: str


Op = LobbyRecord | MessageRecord | DirectRecord | DeleteLobby


class Store(ABC):
    """One small interface for SQLite and PostgreSQL."""

    #: where the data lives, safe for logs (no password)
    description: str = "store"
    #: the kind of database, as /healthz names it ("sqlite", "postgres")
    backend: str = "store"

    @abstractmethod
    async def open(self, *, check: bool = False) -> None:
        """Connect, create or migrate the schema and probe a write; raise StoreError.

        The probe is there because a database can open and then refuse every
        write (an immutable or read-only file): the daemon must not start on it.
        `check` (for --check-config) does all of it in a transaction that is
        rolled back, so the check leaves the database as it found it.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the connection; safe to call twice."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The newest migration applied to the database."""

    @abstractmethod
    async def load_lobbies(self) -> list[LobbyRecord]:
        """Every stored lobby, oldest first."""

    @abstractmethod
    async def recent_messages(self, lobby: str, limit: int) -> list[MessageRecord]:
        """The last `limit` messages of the lobby with key `lobby`, oldest first."""

    @abstractmethod
    async def recent_direct(self, limit: int) -> list[DirectRecord]:
        """The last `limit` direct messages, oldest first."""

    @abstractmethod
    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        """Apply `ops` in order, then raise lobbies' last_active to `touched`; one transaction.

        A LobbyRecord inserts or replaces the lobby; a DeleteLobby removes it and
        its messages; a MessageRecord or DirectRecord is appended (its id ignored).
        """

    @abstractmethod
    async def prune(self, *, max_per_lobby: int, before: float | None) -> int:
        """Keep at most `max_per_lobby` messages per lobby (0 = no cap) and none older
        than `before` (None = no age limit); return how many rows were deleted."""
