"""Local delivery: the sink that turns the core's events into bytes for this process's users.

An audience is resolved here, at the moment of delivery (a lobby's members
now, users by key), and `fanout.deliver` renders the event once per output
mode and shares the bytes. Nothing here awaits: a recipient that cannot keep
up is its own connection's problem (gochat.backlog), never everyone's.

Presence is coalesced. Told one by one, 10,000 people leaving a lobby at
once are 50 million lines (each departure to everyone left) and a loop busy
for a quarter of a minute. Once the server gives this sink its loop
(`later`), arrivals and departures wait for the end of the loop turn (in a
lobby of more than LARGE_LOBBY members, up to WINDOW seconds); then up to
GOCHAT_PRESENCE_BATCH of them go out one by one, and more as one
`PresenceBatch`. Anything else said in the lobby first sends what waits, so
nobody sees a message from someone before they see them arrive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from gochat.changes import Audience, Emitted, InLobby, LobbyDeleted, LobbySaved, LobbyTouched
from gochat.clients import Client, ClientManager
from gochat.events import ChatMessage, Event, Presence, PresenceBatch
from gochat.fanout import deliver
from gochat.lobbies import Lobby, LobbyManager
from gochat.stats import Counters

LARGE_LOBBY = 100  # members past which presence waits up to WINDOW, not just a loop turn
WINDOW = 1.0  # seconds: at most one presence delivery per second in a large lobby

Later = Callable[[float, Callable[[], None]], object]
"""loop.call_later: run a callback after a delay (0: at the end of this loop turn)."""


class LocalDelivery:
    """Delivers events to the users connected to this process (a `changes.Sink`)."""

    __slots__ = ("batch", "clients", "counters", "later", "lobbies", "waiting")

    def __init__(
        self, clients: ClientManager, lobbies: LobbyManager, counters: Counters, batch: int
    ) -> None:
        self.clients = clients
        self.lobbies = lobbies
        self.counters = counters
        self.batch = batch  # GOCHAT_PRESENCE_BATCH
        self.later: Later | None = None  # set by the server; without a loop, nothing waits
        self.waiting: dict[str, list[Presence]] = {}  # presence by lobby key, in order

    def take(self, item: Emitted, audience: Audience) -> None:
        if audience is None or isinstance(item, (LobbySaved, LobbyTouched, LobbyDeleted)):
            return
        if isinstance(audience, InLobby):
            key = audience.key
            if isinstance(item, Presence) and self.later is not None:
                self._hold(key, item)
                return
            if key in self.waiting:
                self.flush(key)
            lobby = self.lobbies.by_key(key)
            if lobby is None:
                return
            count = deliver(item, lobby.members.values())
        else:
            found = (self.clients.by_key(key) for key in audience.keys)
            recipients: list[Client] = [client for client in found if client is not None]
            count = deliver(item, recipients)
        if isinstance(item, ChatMessage):
            self.counters.deliveries += count

    def flush(self, key: str) -> None:
        """Send the presence waiting for the lobby `key`: one by one, or one batch."""
        waiting = self.waiting.pop(key, None)
        lobby = self.lobbies.by_key(key)
        if not waiting or lobby is None:
            return
        if len(waiting) <= self.batch:
            for presence in waiting:
                deliver(presence, _others(lobby, (presence.name,)))
            return
        arrived = tuple(p.name for p in waiting if p.arriving)
        departed = tuple(p.name for p in waiting if not p.arriving)
        batch: Event = PresenceBatch(lobby.name, arrived, departed)
        deliver(batch, _others(lobby, arrived))

    def _hold(self, key: str, presence: Presence) -> None:
        waiting = self.waiting.get(key)
        if waiting is None:
            waiting = self.waiting[key] = []
            lobby = self.lobbies.by_key(key)
            large = lobby is not None and len(lobby.members) > LARGE_LOBBY
            assert self.later is not None
            self.later(WINDOW if large else 0.0, functools.partial(self.flush, key))
        waiting.append(presence)


def _others(lobby: Lobby, names: tuple[str, ...]) -> Iterable[Client]:
    """The lobby's members but the people a presence line is about."""
    if len(names) == 1:
        name = names[0]
        return (client for client in lobby.members.values() if client.name != name)
    skip = set(names)
    return (client for client in lobby.members.values() if client.name not in skip)
