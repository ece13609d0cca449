"""What the core announces to its sinks: changes to state that outlives a connection.

The core does not call the store's writer (or, later, a Redis link): it hands
each change to every sink in `ChatCore.sinks`, so a sink can be added without
an `if` in every rule. A sink's `take` must not block or await: it queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gochat.events import ChatMessage, DirectMessage
from gochat.lobbies import Lobby


@dataclass(frozen=True, slots=True)
class LobbySaved:
    """A lobby was created or changed (persona, password): keep it as it is now."""

    lobby: Lobby


@dataclass(frozen=True, slots=True)
class LobbyTouched:
    """Someone came or went: the lobby's last activity moved (sinks may coalesce these)."""

    lobby: Lobby


@dataclass(frozen=True, slots=True)
class LobbyDeleted:
    """A lobby is gone, with its history."""

    name: str


Change = ChatMessage | DirectMessage | LobbySaved | LobbyTouched | LobbyDeleted
"""A line said in a lobby (chat, tag, ai), a DM, or a lobby's own change."""


class Sink(Protocol):
    """A subscriber to the core's changes (the journal; later the Redis link)."""

    def take(self, change: Change) -> None: ...
