"""What the core emits, and to whom: the one stream every sink subscribes to.

The core neither writes to sockets nor calls the store's writer (nor, later,
a Redis link): each thing that happens is handed, with its audience, to every
sink in `ChatCore.sinks`. Local delivery renders events for the users of this
process; the journal keeps messages and lobby changes; a link to other
processes would forward both. A sink is added without an `if` in any rule.

Audiences name people and lobbies by key, not by object, so a sink in another
process could resolve them too; they are resolved when the sink takes the
item, so "everyone in the lobby" means those in it at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gochat.events import Event
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


Change = LobbySaved | LobbyTouched | LobbyDeleted
"""A lobby's own change: no one is told, but it outlives the process."""


@dataclass(frozen=True, slots=True)
class InLobby:
    """Everyone in the lobby with this key."""

    key: str


@dataclass(frozen=True, slots=True)
class ToUsers:
    """The users with these keys (case-folded names), wherever they are."""

    keys: tuple[str, ...]


Audience = InLobby | ToUsers | None
"""Who is told; None: nobody (a record for the store, a lobby's change)."""

Emitted = Event | Change


class Sink(Protocol):
    """A subscriber to the core's stream (local delivery, the journal; later a Redis link).

    `take` must not block or await: it delivers without waiting or it queues.
    """

    def take(self, item: Emitted, audience: Audience) -> None: ...
