"""Lobbies: membership, password hash, persona and a ring of recent history."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from gochat.clients import Client
from gochat.events import ChatMessage
from gochat.names import name_key

GENERAL = "general"


class Lobby:
    """One room. Members are keyed by case-folded name, in join order."""

    __slots__ = (
        "created_at",
        "creator",
        "description",
        "history",
        "key",
        "last_active",
        "members",
        "name",
        "password_hash",
        "persona",
    )

    def __init__(
        self,
        name: str,
        *,
        creator: str,
        description: str,
        password_hash: bytes | None,
        now: float,
        history_size: int,
    ) -> None:
        self.name = name
        self.key = name_key(name)
        self.creator = creator
        self.description = description
        self.password_hash = password_hash
        self.persona: str | None = None
        self.members: dict[str, Client] = {}
        self.history: deque[ChatMessage] = deque(maxlen=history_size)
        self.created_at = now
        self.last_active = now

    @property
    def private(self) -> bool:
        return self.password_hash is not None

    def recent(self, now: float, max_age: float, limit: int) -> tuple[ChatMessage, ...]:
        """The last `limit` messages no older than `max_age` seconds."""
        if limit <= 0:
            return ()
        picked: list[ChatMessage] = []
        oldest = now - max_age
        for message in reversed(self.history):
            if message.timestamp < oldest or len(picked) >= limit:
                break
            picked.append(message)
        picked.reverse()
        return tuple(picked)


class LobbyManager:
    """All lobbies by case-folded name; `general` always exists."""

    __slots__ = ("_by_key", "general", "history_size")

    def __init__(self, *, now: float, history_size: int) -> None:
        self.history_size = history_size
        self._by_key: dict[str, Lobby] = {}
        self.general = self.add(
            GENERAL,
            creator="server",
            description="Where everyone starts",
            password_hash=None,
            now=now,
        )

    def add(
        self,
        name: str,
        *,
        creator: str,
        description: str,
        password_hash: bytes | None,
        now: float,
    ) -> Lobby:
        lobby = Lobby(
            name,
            creator=creator,
            description=description,
            password_hash=password_hash,
            now=now,
            history_size=self.history_size,
        )
        self._by_key[lobby.key] = lobby
        return lobby

    def get(self, name: str) -> Lobby | None:
        return self._by_key.get(name_key(name))

    def by_key(self, key: str) -> Lobby | None:
        """The lobby whose case-folded name is `key` (no folding: the hot path)."""
        return self._by_key.get(key)

    def __contains__(self, name: str) -> bool:
        return name_key(name) in self._by_key

    def __iter__(self) -> Iterator[Lobby]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def restore(
        self,
        name: str,
        *,
        creator: str,
        description: str,
        password_hash: bytes | None,
        persona: str | None,
        created_at: float,
        last_active: float,
        history: Iterable[ChatMessage],
    ) -> Lobby:
        """Put back a lobby read from the store; `general` keeps its own name and access."""
        lobby = self.get(name)
        if lobby is not self.general:
            lobby = self.add(
                name,
                creator=creator,
                description=description,
                password_hash=password_hash,
                now=created_at,
            )
        lobby.persona = persona
        lobby.created_at = created_at
        lobby.last_active = last_active
        lobby.history.extend(history)
        return lobby

    def remove_idle(self, now: float, idle_seconds: float) -> list[Lobby]:
        """Remove empty lobbies (never `general`) idle for `idle_seconds`; return them."""
        removed = [
            lobby
            for lobby in self._by_key.values()
            if lobby is not self.general
            and not lobby.members
            and now - lobby.last_active >= idle_seconds
        ]
        for lobby in removed:
            del self._by_key[lobby.key]
        return removed
