"""Local delivery: the sink that turns the core's events into bytes for this process's users.

An audience is resolved here, at the moment of delivery (a lobby's members
now, users by key), and `fanout.deliver` renders the event once per output
mode and shares the bytes. Nothing here awaits: a recipient that cannot keep
up is its own connection's problem (its send-queue cap), never everyone's.
"""

from __future__ import annotations

from gochat.changes import Audience, Emitted, InLobby, LobbyDeleted, LobbySaved, LobbyTouched
from gochat.clients import Client, ClientManager
from gochat.events import ChatMessage
from gochat.fanout import deliver
from gochat.lobbies import LobbyManager
from gochat.stats import Counters


class LocalDelivery:
    """Delivers events to the users connected to this process (a `changes.Sink`)."""

    __slots__ = ("clients", "counters", "lobbies")

    def __init__(self, clients: ClientManager, lobbies: LobbyManager, counters: Counters) -> None:
        self.clients = clients
        self.lobbies = lobbies
        self.counters = counters

    def take(self, item: Emitted, audience: Audience) -> None:
        if audience is None or isinstance(item, (LobbySaved, LobbyTouched, LobbyDeleted)):
            return
        if isinstance(audience, InLobby):
            lobby = self.lobbies.by_key(audience.key)
            if lobby is None:
                return
            count = deliver(item, lobby.members.values())
        else:
            found = (self.clients.by_key(key) for key in audience.keys)
            recipients: list[Client] = [client for client in found if client is not None]
            count = deliver(item, recipients)
        if isinstance(item, ChatMessage):
            self.counters.deliveries += count
